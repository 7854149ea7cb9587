// Converted bundles in a KeyValueStore (IndexedDB in the browser): one record per model, the
// manifest and chunk files of each *generation* of its bundle. A generation is written under
// its own keys and becomes the model's bundle only when the record is rewritten to name it, in
// one write after every chunk and the manifest are stored; so a conversion or download cut off
// half-way is never taken as complete, and whatever it left is found by its generation and
// removed (collectGarbage) or resumed (bundle downloads keep their generation).
import { ModelFileError } from '../base/errors.ts';
import { MANIFEST_FILE, chunkFileName, type BundleSink } from '../bundle/index.ts';
import type { ByteSource, FileFolder } from '../formats/byte-source.ts';
import type { LmWeightFormat } from '../model/quantize.ts';
import type { ModelSource } from './types.ts';
import { isQuotaError, type KeyValueStore } from './kv.ts';

export interface ModelRecord {
  modelId: string;
  name: string;
  source: ModelSource;
  weights: LmWeightFormat;
  decoderDtype?: 'f16' | 'f32';
  createdAt: string;
  lastUsedAt?: string;
  /** The committed generation's bundle is complete (its chunks are checked on load). */
  complete: boolean;
  /** The committed generation, or null before the first commit. */
  generation: string | null;
  /** Bytes of the committed bundle (chunks + manifest). */
  bundleBytes: number;
  /** Original files downloaded for this model (original sources); dropped after conversion. */
  downloads: string[];
  /** Bundle size the plan estimated (original sources), kept so a resumed plan needs no header reads. */
  estimatedBundleBytes?: number;
  /** Bundle sources: the generation (hash of the remote manifest) being downloaded. */
  staging?: string;
}

const recordKey = (id: string) => `m|${id}`;
const genPrefix = (id: string) => `g|${id}|`;
const fileKey = (id: string, gen: string, file: string) => `${genPrefix(id)}${gen}|${file}`;

export const newGeneration = (): string => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

export class BundleStore {
  constructor(
    private readonly kv: KeyValueStore,
    private readonly onQuotaError?: (e: unknown) => Promise<Error>,
  ) {}

  record(id: string): Promise<ModelRecord | undefined> {
    return this.kv.get<ModelRecord>(recordKey(id));
  }

  async putRecord(record: ModelRecord): Promise<void> {
    await this.write([[recordKey(record.modelId), record]]);
  }

  async records(): Promise<ModelRecord[]> {
    const keys = await this.kv.keys('m|');
    const out: ModelRecord[] = [];
    for (const k of keys) {
      const r = await this.kv.get<ModelRecord>(k);
      if (r) out.push(r);
    }
    return out;
  }

  /** Stores one file (manifest.json or a chunk) of generation `gen`. */
  async putFile(id: string, gen: string, file: string, bytes: Uint8Array): Promise<void> {
    await this.write([[fileKey(id, gen, file), bytes]]);
  }

  /** Names of the files stored for generation `gen`. */
  async files(id: string, gen: string): Promise<Set<string>> {
    const prefix = `${genPrefix(id)}${gen}|`;
    return new Set((await this.kv.keys(prefix)).map((k) => k.slice(prefix.length)));
  }

  async dropFile(id: string, gen: string, file: string): Promise<void> {
    await this.kv.delMany([fileKey(id, gen, file)]);
  }

  /** Makes `gen` the model's bundle in one write, then removes every other generation. */
  async commit(id: string, gen: string, bundleBytes: number): Promise<void> {
    const record = await this.record(id);
    if (!record) throw new ModelFileError(`model ${id}`, 'its record vanished while it was being stored', undefined, 'ModelFileMissing');
    const { staging: _staging, ...rest } = record;
    await this.putRecord({ ...rest, complete: true, generation: gen, bundleBytes });
    await this.collectGarbage(id, [gen]);
  }

  /** Deletes every generation of `id` not in `keep` (left by interrupted conversions). */
  async collectGarbage(id: string, keep: (string | null | undefined)[]): Promise<void> {
    const prefix = genPrefix(id);
    const stale = (await this.kv.keys(prefix)).filter((k) => !keep.includes(k.slice(prefix.length).split('|')[0]));
    if (stale.length) await this.kv.delMany(stale);
  }

  /** Deletes the model's record and all its generations. */
  async delete(id: string): Promise<void> {
    await this.kv.delMany([...(await this.kv.keys(genPrefix(id))), recordKey(id)]);
  }

  /** Bytes stored for `id` (all generations; chunk sizes from the manifest where there is one). */
  async bytesHeld(id: string): Promise<number> {
    const prefix = genPrefix(id);
    const keys = await this.kv.keys(prefix);
    const sizes = new Map<string, number>();
    for (const k of keys.filter((k) => k.endsWith(`|${MANIFEST_FILE}`))) {
      const bytes = await this.kv.get<Uint8Array>(k);
      if (!bytes) continue;
      const gen = k.slice(prefix.length).split('|')[0]!;
      sizes.set(k, bytes.byteLength);
      try {
        const m = JSON.parse(new TextDecoder().decode(bytes)) as { chunks?: { file: string; byteLength: number }[] };
        for (const c of m.chunks ?? []) sizes.set(fileKey(id, gen, c.file), c.byteLength);
      } catch {
        // a broken manifest: its chunks are measured one by one below
      }
    }
    let n = 0;
    for (const k of keys) n += sizes.get(k) ?? (await this.kv.get<Uint8Array>(k))?.byteLength ?? 0;
    return n;
  }

  /** A sink writing a new generation of `id`; commit() makes it the model's bundle. */
  sink(id: string, onCommitted?: (bytes: number) => void): BundleSink & { readonly generation: string } {
    const gen = newGeneration();
    let bytes = 0;
    let state: 'open' | 'committed' | 'aborted' = 'open';
    return {
      generation: gen,
      putChunk: async (index, chunk) => {
        await this.putFile(id, gen, chunkFileName(index), chunk);
        bytes += chunk.byteLength;
      },
      putManifest: async (json) => {
        const data = new TextEncoder().encode(json);
        await this.putFile(id, gen, MANIFEST_FILE, data);
        bytes += data.byteLength;
      },
      commit: async () => {
        await this.commit(id, gen, bytes);
        state = 'committed';
        onCommitted?.(bytes);
      },
      abort: async () => {
        if (state !== 'open') return;
        state = 'aborted';
        await this.collectGarbage(id, [(await this.record(id))?.generation]);
      },
    };
  }

  /** Generation `gen` of `id` as a FileFolder (what openModelBundle reads). */
  folder(id: string, gen: string, onRead?: (file: string) => void): FileFolder {
    const base = `idb:${id}/${gen}/`;
    const load = async (file: string): Promise<Uint8Array | undefined> => {
      onRead?.(file);
      return this.kv.get<Uint8Array>(fileKey(id, gen, file));
    };
    return {
      base,
      open(file: string): ByteSource {
        const name = `${base}${file}`;
        const must = async () => {
          const bytes = await load(file);
          if (!bytes) throw new ModelFileError(name, 'missing from the browser storage', undefined, 'ModelFileMissing');
          return bytes;
        };
        return {
          name,
          size: async () => (await must()).byteLength,
          async read(offset, length) {
            const bytes = await must();
            if (offset + length > bytes.byteLength) {
              throw new ModelFileError(name, `truncated: wanted ${length} bytes at ${offset}, stored ${bytes.byteLength}`);
            }
            return offset === 0 && length === bytes.byteLength ? bytes : bytes.slice(offset, offset + length);
          },
        };
      },
      readOptional: async (file) => (await load(file)) ?? null,
    };
  }

  private async write(entries: [string, unknown][]): Promise<void> {
    try {
      await this.kv.setMany(entries);
    } catch (e) {
      if (isQuotaError(e) && this.onQuotaError) throw await this.onQuotaError(e);
      throw e;
    }
  }
}
