// Opens a converted bundle from any FileFolder (local directory, base URL, or another store
// that implements FileFolder) and reads tensors and embedded files by name.
import { HttpError, ModelFileError } from '../base/errors.ts';
import type { NamedTensor } from '../base/model-spec.ts';
import { readJson, type ByteSource, type FileFolder } from '../formats/byte-source.ts';
import { TextTokenizer } from '../formats/tokenizer.ts';
import {
  BundleError,
  MANIFEST_FILE,
  parseManifest,
  sha256Hex,
  type BundleChunk,
  type BundleFileEntry,
  type BundleLocation,
  type BundleManifest,
  type BundleTensorEntry,
} from './manifest.ts';

export interface OpenBundleOptions {
  /**
   * 'on-read' (default): the first time a chunk is touched it is read whole and its SHA-256
   * checked; a mismatch throws BundleInvalid naming the chunk. 'none': byte ranges are read
   * directly with no hashing (for stores that verified on write; call verify() to check).
   */
  verify?: 'on-read' | 'none';
  /** Verified chunks kept in memory for the following reads (default 2; 0 = none). */
  cacheChunks?: number;
  signal?: AbortSignal;
}

export interface VerifyProgress {
  chunksDone: number;
  chunksTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export class BundleReader {
  private readonly tensorIndex: Map<string, BundleTensorEntry>;
  private readonly fileIndex: Map<string, BundleFileEntry>;
  private readonly sources = new Map<number, ByteSource>();
  /** Verified whole chunks, most recently used last. */
  private readonly cache = new Map<number, Promise<Uint8Array>>();
  /** While a readMany runs: every chunk loaded meanwhile, so other reads (the tokenizer) share them. */
  private pinned: Map<number, Promise<Uint8Array>> | undefined;
  private pinDepth = 0;
  private readonly verifyMode: 'on-read' | 'none';
  private readonly cacheChunks: number;

  constructor(
    readonly folder: FileFolder,
    readonly manifest: BundleManifest,
    options: OpenBundleOptions = {},
  ) {
    this.tensorIndex = new Map(manifest.tensors.map((t) => [t.name, t]));
    this.fileIndex = new Map(manifest.files.map((f) => [f.name, f]));
    this.verifyMode = options.verify ?? 'on-read';
    this.cacheChunks = options.cacheChunks ?? 2;
  }

  list(): BundleTensorEntry[] {
    return [...this.manifest.tensors];
  }

  has(name: string): boolean {
    return this.tensorIndex.has(name);
  }

  entry(name: string): BundleTensorEntry {
    const e = this.tensorIndex.get(name);
    if (!e) throw new ModelFileError(this.where(MANIFEST_FILE), 'tensor not in the bundle', name, 'ModelFileMissing');
    return e;
  }

  /** A whole tensor (a fresh copy: it does not keep chunk buffers alive). */
  async read(name: string, signal?: AbortSignal): Promise<NamedTensor> {
    const e = this.entry(name);
    const raw = await this.readLocation(e, signal, { tensor: name });
    return { name, type: e.type, dims: [...e.dims], raw };
  }

  /**
   * Many tensors at once (default: all), for loading a whole model: every chunk they touch is
   * read once and SHA-256-checked ('on-read'), up to `parallel` chunks in flight so that reading
   * one overlaps hashing another. A tensor inside one chunk is a view of that chunk's bytes (no
   * copy; the chunk stays alive while any of its tensors does), one that spans chunks is copied.
   * `onChunk(done, total)`: once at the start (0), then after each chunk is read and checked.
   */
  async readMany(names: readonly string[] = this.manifest.tensors.map((t) => t.name), options: { signal?: AbortSignal; parallel?: number; onChunk?: (done: number, total: number) => void } = {}): Promise<Map<string, NamedTensor>> {
    const { signal } = options;
    const entries = names.map((n) => this.entry(n));
    if (this.verifyMode !== 'on-read') {
      const out = new Map<string, NamedTensor>();
      for (const e of entries) out.set(e.name, await this.read(e.name, signal));
      return out;
    }
    const chunks = [...new Set(entries.flatMap((e) => this.chunksOf(e)))].sort((a, b) => a - b);
    const loaded = new Map<number, Uint8Array>();
    options.onChunk?.(0, chunks.length);
    let next = 0;
    const worker = async () => {
      while (next < chunks.length) {
        const index = chunks[next++]!;
        signal?.throwIfAborted();
        loaded.set(index, await this.loadVerified(index, signal, true));
        options.onChunk?.(loaded.size, chunks.length);
      }
    };
    // Chunks already on their way (an embedded file being read) are shared too.
    this.pinned ??= new Map(this.cache);
    this.pinDepth++;
    try {
      await Promise.all(Array.from({ length: Math.max(1, options.parallel ?? 3) }, worker));
    } finally {
      if (--this.pinDepth === 0) this.pinned = undefined;
    }
    const out = new Map<string, NamedTensor>();
    for (const e of entries) {
      const first = loaded.get(e.chunk)!;
      const raw =
        e.offset + e.byteLength <= first.byteLength
          ? first.subarray(e.offset, e.offset + e.byteLength)
          : this.gather(e, loaded);
      out.set(e.name, { name: e.name, type: e.type, dims: [...e.dims], raw });
    }
    return out;
  }

  /** The chunks a location's bytes lie in. */
  private chunksOf(loc: BundleLocation): number[] {
    const out = [];
    let left = loc.byteLength;
    let offset = loc.offset;
    for (let c = loc.chunk; ; c++) {
      out.push(c);
      const chunk = this.manifest.chunks[c];
      if (!chunk) throw new BundleError(this.where(MANIFEST_FILE), `data runs past the last chunk`);
      left -= chunk.byteLength - offset;
      offset = 0;
      if (left <= 0) return out;
    }
  }

  /** A location's bytes copied out of several loaded chunks. */
  private gather(loc: BundleLocation, loaded: ReadonlyMap<number, Uint8Array>): Uint8Array {
    const out = new Uint8Array(loc.byteLength);
    let done = 0;
    let offset = loc.offset;
    for (let c = loc.chunk; done < loc.byteLength; c++) {
      const bytes = loaded.get(c)!;
      const n = Math.min(bytes.byteLength - offset, loc.byteLength - done);
      out.set(bytes.subarray(offset, offset + n), done);
      done += n;
      offset = 0;
    }
    return out;
  }

  /** An embedded file's bytes (tokenizer.json, …). */
  async readFile(name: string, signal?: AbortSignal): Promise<Uint8Array> {
    const f = this.fileIndex.get(name);
    if (!f) throw new ModelFileError(this.where(MANIFEST_FILE), `no embedded file ${name}`, undefined, 'ModelFileMissing');
    return this.readLocation(f, signal, { file: name });
  }

  async readJsonFile<T = unknown>(name: string, signal?: AbortSignal): Promise<T> {
    const bytes = await this.readFile(name, signal);
    try {
      return JSON.parse(new TextDecoder().decode(bytes)) as T;
    } catch (e) {
      throw new BundleError(this.where(name), `embedded file is not JSON (${(e as Error).message})`, { file: name });
    }
  }

  /** The tokenizer from the embedded files, checked against the manifest's ids and length. */
  async tokenizer(signal?: AbortSignal): Promise<TextTokenizer> {
    const files = this.manifest.tokenizer.files;
    if (!files.includes('tokenizer.json')) {
      throw new BundleError(this.where(MANIFEST_FILE), 'no embedded tokenizer.json', { file: 'tokenizer.json' });
    }
    const tokenizerJson = await this.readJsonFile('tokenizer.json', signal);
    const tokenizerConfig = files.includes('tokenizer_config.json')
      ? await this.readJsonFile('tokenizer_config.json', signal)
      : {};
    const tok = new TextTokenizer({ tokenizerJson, tokenizerConfig }, this.where('tokenizer.json'));
    const want = this.manifest.tokenizer;
    const same =
      tok.length === want.length &&
      tok.specialIds.t2i === want.specialIds.t2i &&
      tok.specialIds.soi === want.specialIds.soi &&
      tok.specialIds.endOfText === want.specialIds.endOfText;
    if (!same) {
      throw new BundleError(this.where('tokenizer.json'), 'the embedded tokenizer does not match the manifest', {
        file: 'tokenizer.json',
        manifest: want,
        found: { length: tok.length, specialIds: tok.specialIds },
      });
    }
    return tok;
  }

  /** Reads every chunk and checks its size and SHA-256; throws BundleInvalid on the first bad one. */
  async verify(options: { signal?: AbortSignal; onProgress?: (p: VerifyProgress) => void } = {}): Promise<void> {
    const { chunks } = this.manifest;
    const bytesTotal = this.manifest.layout.totalBytes;
    let bytesDone = 0;
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i]!;
      const size = await this.guard(chunk, () => this.source(i).size(options.signal));
      if (size !== chunk.byteLength) {
        throw new BundleError(this.where(chunk.file), `is ${size} bytes, the manifest says ${chunk.byteLength}`, {
          chunk: chunk.file,
        });
      }
      await this.loadVerified(i, options.signal, false);
      bytesDone += chunk.byteLength;
      options.onProgress?.({ chunksDone: i + 1, chunksTotal: chunks.length, bytesDone, bytesTotal });
    }
  }

  private async readLocation(loc: BundleLocation, signal: AbortSignal | undefined, what: object): Promise<Uint8Array> {
    const out = new Uint8Array(loc.byteLength);
    let done = 0;
    let chunk = loc.chunk;
    let offset = loc.offset;
    while (done < loc.byteLength) {
      const c = this.manifest.chunks[chunk];
      if (!c) throw new BundleError(this.where(MANIFEST_FILE), `data runs past the last chunk`, what as Record<string, unknown>);
      const n = Math.min(c.byteLength - offset, loc.byteLength - done);
      if (this.verifyMode === 'on-read') {
        const whole = await this.loadVerified(chunk, signal, true);
        out.set(whole.subarray(offset, offset + n), done);
      } else {
        const bytes = await this.guard(c, () => this.source(chunk).read(offset, n, signal));
        out.set(bytes, done);
      }
      done += n;
      chunk++;
      offset = 0;
    }
    return out;
  }

  /** A whole chunk whose SHA-256 matched, from the cache or freshly read. */
  private loadVerified(index: number, signal: AbortSignal | undefined, useCache: boolean): Promise<Uint8Array> {
    const pinned = useCache ? this.pinned?.get(index) : undefined;
    if (pinned) return pinned;
    const hit = useCache ? this.cache.get(index) : undefined;
    if (hit) {
      this.cache.delete(index);
      this.cache.set(index, hit);
      this.pinned?.set(index, hit);
      return hit;
    }
    const chunk = this.manifest.chunks[index]!;
    const p = (async () => {
      const bytes = await this.guard(chunk, () => this.source(index).read(0, chunk.byteLength, signal));
      const sha = await sha256Hex(bytes);
      if (sha !== chunk.sha256) {
        throw new BundleError(this.where(chunk.file), `SHA-256 mismatch (expected ${chunk.sha256}, got ${sha})`, {
          chunk: chunk.file,
          expected: chunk.sha256,
          actual: sha,
        });
      }
      return bytes;
    })();
    if (useCache) this.pinned?.set(index, p);
    if (useCache && this.cacheChunks > 0) {
      this.cache.set(index, p);
      p.catch(() => this.cache.delete(index));
      while (this.cache.size > this.cacheChunks) this.cache.delete(this.cache.keys().next().value!);
    }
    return p;
  }

  /** Missing or short chunk files are a broken bundle: report them as BundleInvalid. */
  private async guard<T>(chunk: BundleChunk, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof ModelFileError || (e instanceof HttpError && (e.status === 404 || e.status === 416))) {
        throw new BundleError(this.where(chunk.file), `unreadable (${e.message})`, { chunk: chunk.file, cause: e.code });
      }
      throw e;
    }
  }

  private source(index: number): ByteSource {
    let s = this.sources.get(index);
    if (!s) {
      s = this.folder.open(this.manifest.chunks[index]!.file);
      this.sources.set(index, s);
    }
    return s;
  }

  private where(file: string): string {
    return `${this.folder.base.replace(/\/+$/, '')}/${file}`;
  }
}

/** Opens a bundle: reads and checks manifest.json (chunks are read lazily). */
export async function openBundle(folder: FileFolder, options: OpenBundleOptions = {}): Promise<BundleReader> {
  const where = `${folder.base.replace(/\/+$/, '')}/${MANIFEST_FILE}`;
  let json: unknown;
  try {
    json = await readJson<unknown>(folder, MANIFEST_FILE, options.signal);
  } catch (e) {
    if (e instanceof ModelFileError) throw new BundleError(where, e.message);
    throw e;
  }
  if (json === null) throw new ModelFileError(where, 'not a bundle: no manifest', undefined, 'ModelFileMissing');
  return new BundleReader(folder, parseManifest(json, where), options);
}
