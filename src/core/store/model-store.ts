// The model store: from a ModelSource to a complete, verified bundle in the browser's storage.
//   original source: HEAD the files → download missing blocks (block-cache.ts, resumable) →
//     convert in the worker (convertModel) into a new bundle generation → commit → drop the
//     downloaded originals;
//   bundle source: manifest.json → download missing chunks, each checked against the
//     manifest's SHA-256 → commit.
// A model whose bundle is committed is served from storage with no request at all. Storage is
// two KeyValueStores (downloads, bundles) so Node tests run the same logic on a Map.
import { ModelFileError, SimpleARError } from '../base/errors.ts';
import { MANIFEST_FILE, parseManifest, sha256Hex, type BundleError } from '../bundle/index.ts';
import { convertModel, type ConvertProgress } from '../convert/convert-model.ts';
import { estimateLmBytes, type LmWeightFormat } from '../convert/lm-weights.ts';
import { openFolder, readJson, type FileFolder } from '../formats/byte-source.ts';
import { parseLmSpec } from '../formats/model-config.ts';
import { VISUAL_CODES } from '../base/model-spec.ts';
import type { OrtModule } from '../base/ort.ts';
import type { ModelFootprint } from '../engine/capabilities.ts';
import type { CachedModel, LoadModelOptions, ModelPlan, ModelSource, PrepareProgress } from './types.ts';
import { normalizeSource } from './model-source.ts';
import { BlockCache, DEFAULT_BLOCK_BYTES, type FileRecord, type HttpRetryOptions, type RemoteFile } from './block-cache.ts';
import { BundleStore, type ModelRecord } from './bundle-store.ts';
import { quotaExceeded, type KeyValueStore } from './kv.ts';
import { DownloadMeter } from './download-meter.ts';

export interface StorageEstimateLike {
  usage?: number;
  quota?: number;
}

export interface ModelStoreOptions extends HttpRetryOptions {
  downloads: KeyValueStore;
  bundles: KeyValueStore;
  fetch?: typeof fetch;
  /** navigator.storage.estimate, where the platform has it. */
  estimate?: () => Promise<StorageEstimateLike>;
  /** Blocks/chunks fetched at once (default 3). */
  concurrency?: number;
  now?: () => Date;
}

export interface PrepareOptions extends LoadModelOptions {
  signal?: AbortSignal;
  onProgress?: (p: PrepareProgress) => void;
  /** ONNX Runtime for the converter's live-preview fit (without it the bundle has no preview map). */
  ort?: OrtModule;
}

export interface StoredBundle {
  modelId: string;
  record: ModelRecord;
  /** The committed bundle as a FileFolder (openModelBundle reads it). */
  folder: FileFolder;
  /** Nothing was downloaded or converted: the bundle was already stored. */
  fromCache: boolean;
}

/** Files of an original source, as found on the server. */
interface OriginalFiles {
  files: RemoteFile[];
  /** The LM folder (its config.json gives the size estimate). */
  modelBase: string;
}

const MODEL_FILES = ['config.json', 'tokenizer.json'] as const;
const OPTIONAL_MODEL_FILES = ['generation_config.json', 'tokenizer_config.json'] as const;
const DECODER_FILE = 'decoder.jit';
const SAFETENSORS = 'model.safetensors';
const SAFETENSORS_INDEX = 'model.safetensors.index.json';

export class ModelStore {
  readonly cache: BlockCache;
  readonly bundles: BundleStore;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => Date;

  constructor(private readonly options: ModelStoreOptions) {
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const onQuotaError = async (e: unknown) => {
      const storage = await this.storageEstimate();
      return quotaExceeded(
        { needed: this.pendingNeed, available: storage ? storage.quota - storage.usage : null, ...(storage ?? {}) },
        e,
      );
    };
    this.cache = new BlockCache(options.downloads, this.fetchImpl, {
      ...(options.retries !== undefined ? { retries: options.retries } : {}),
      ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
      ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
      onQuotaError,
    });
    this.bundles = new BundleStore(options.bundles, onQuotaError);
    this.now = options.now ?? (() => new Date());
  }

  /** What the running preparation still needs to store (named in QuotaExceeded errors). */
  private pendingNeed = 0;

  /** The store's key for a source and weight format: a hash of their normalized form. */
  async modelId(source: ModelSource, options: LoadModelOptions = {}): Promise<string> {
    const s = normalizeSource(source);
    const key = s.kind === 'bundle' ? { ...s } : { ...s, weights: options.weights ?? 'q4', decoderDtype: decoderDtypeFor(options) };
    return (await sha256Hex(new TextEncoder().encode(JSON.stringify(key)))).slice(0, 16);
  }

  /** Size, storage needed and cache state of `source`. A stored model is answered with no request. */
  async plan(source: ModelSource, options: LoadModelOptions = {}, signal?: AbortSignal): Promise<ModelPlan> {
    source = normalizeSource(source);
    const modelId = await this.modelId(source, options);
    const storage = await this.storageEstimate();
    const record = await this.bundles.record(modelId);
    if (record?.complete) {
      return { modelId, cached: true, downloadBytes: 0, storedBytes: 0, peakStorageBytes: record.bundleBytes, finalStorageBytes: record.bundleBytes, storage };
    }
    if (source.kind === 'bundle') {
      const { manifestBytes, manifest, generation } = await this.remoteManifest(source.url, signal);
      const stored = record?.staging === generation ? await this.bundles.files(modelId, generation) : new Set<string>();
      const total = manifest.layout.totalBytes + manifestBytes.byteLength;
      const storedBytes = manifest.chunks.filter((c) => stored.has(c.file)).reduce((a, c) => a + c.byteLength, 0);
      const footprint: ModelFootprint = {
        lm: manifest.model.lm,
        weights: ((manifest.weights.lm as LmWeightFormat | undefined) ?? manifest.weights.mode) as LmWeightFormat,
        decoderParams: manifest.tensors.filter((t) => t.name.startsWith('vq/')).reduce((a, t) => a + t.dims.reduce((x, y) => x * y, 1), 0),
      };
      return { modelId, cached: false, downloadBytes: total - storedBytes, storedBytes, peakStorageBytes: total, finalStorageBytes: total, storage, footprint };
    }
    const { files, modelBase } = await this.originalFiles(source, signal);
    let storedBytes = 0;
    for (const f of files) {
      const r = await this.cache.record(f.url);
      if (r && r.size === f.size && (r.etag ?? null) === (f.etag ?? null)) storedBytes += BlockCache.storedBytes(r, await this.cache.storedBlocks(f.url));
    }
    const totalBytes = files.reduce((a, f) => a + f.size, 0);
    const bundleBytes = record?.estimatedBundleBytes ?? (await this.estimateBundleBytes(modelBase, files, options, signal));
    return {
      modelId,
      cached: false,
      downloadBytes: totalBytes - storedBytes,
      storedBytes,
      peakStorageBytes: totalBytes + bundleBytes,
      finalStorageBytes: bundleBytes,
      storage,
      footprint: await this.originalFootprint(modelBase, files, options, signal),
    };
  }

  /** The shapes and formats the backend check needs (engine/capabilities.ts), from the stored config.json. */
  private async originalFootprint(modelBase: string, files: RemoteFile[], options: LoadModelOptions, signal?: AbortSignal): Promise<ModelFootprint> {
    const configUrl = new URL('config.json', modelBase).href;
    const config = await readJson<Record<string, unknown>>(this.cache.folder(modelBase), 'config.json', signal);
    if (!config) throw new ModelFileError(configUrl, 'not found', undefined, 'ModelFileMissing');
    const vocab = typeof config.vocab_size === 'number' ? config.vocab_size : 0;
    // decoder.jit holds the decoder's f32 parameters (and a little TorchScript)
    const decoderFile = files.find((f) => f.url.endsWith(`/${DECODER_FILE}`));
    return { lm: parseLmSpec(config as never, vocab - VISUAL_CODES, configUrl), weights: options.weights ?? 'q4', decoderParams: Math.round((decoderFile?.size ?? 0) / 4) };
  }

  /**
   * Makes the bundle of `source` complete in storage (downloading what is missing, converting
   * as needed) and returns it. Nothing stored is fetched again.
   */
  async prepare(source: ModelSource, options: PrepareOptions = {}): Promise<StoredBundle> {
    source = normalizeSource(source);
    const modelId = await this.modelId(source, options);
    let record = await this.bundles.record(modelId);
    if (record?.complete && record.generation) {
      await this.bundles.collectGarbage(modelId, [record.generation]);
      return { modelId, record, folder: this.bundles.folder(modelId, record.generation), fromCache: true };
    }
    record ??= {
      modelId,
      name: modelName(source, options),
      source,
      weights: source.kind === 'bundle' ? 'q4' : (options.weights ?? 'q4'),
      ...(source.kind === 'original' ? { decoderDtype: decoderDtypeFor(options) } : {}),
      createdAt: this.now().toISOString(),
      complete: false,
      generation: null,
      bundleBytes: 0,
      downloads: [],
    };
    await this.bundles.putRecord(record);
    return source.kind === 'bundle' ? this.prepareBundle(record, source.url, options) : this.prepareOriginal(record, source, options);
  }

  /**
   * After a stored bundle failed its checks on load (BundleInvalid): forget the broken part so
   * the next prepare fetches it again. A bundle download loses only the bad chunk; a converted
   * bundle is converted again (its originals were dropped after conversion).
   */
  async repair(modelId: string, error: BundleError): Promise<void> {
    const record = await this.bundles.record(modelId);
    if (!record?.generation) return;
    const chunk = typeof error.details.chunk === 'string' ? error.details.chunk : null;
    if (record.source.kind === 'bundle' && chunk) {
      await this.bundles.dropFile(modelId, record.generation, chunk);
      await this.bundles.putRecord({ ...record, complete: false, staging: record.generation, generation: null, bundleBytes: 0 });
    } else {
      await this.bundles.collectGarbage(modelId, []);
      await this.bundles.putRecord({ ...record, complete: false, generation: null, bundleBytes: 0 });
    }
  }

  /** Records that the model was used now (listCachedModels shows it). */
  async touch(modelId: string): Promise<void> {
    const record = await this.bundles.record(modelId);
    if (record) await this.bundles.putRecord({ ...record, lastUsedAt: this.now().toISOString() });
  }

  async list(): Promise<CachedModel[]> {
    const out: CachedModel[] = [];
    for (const r of await this.bundles.records()) {
      const bundleBytes = r.complete ? r.bundleBytes : await this.bundles.bytesHeld(r.modelId);
      out.push({
        modelId: r.modelId,
        name: r.name,
        source: r.source,
        weights: r.weights,
        bytes: bundleBytes + (await this.cache.bytesHeld(r.downloads)),
        complete: r.complete,
        createdAt: r.createdAt,
        ...(r.lastUsedAt ? { lastUsedAt: r.lastUsedAt } : {}),
      });
    }
    return out;
  }

  /** Deletes a model's bundle, record and any partial download. Unknown ids are an error. */
  async delete(modelId: string): Promise<void> {
    const record = await this.bundles.record(modelId);
    if (!record) throw new SimpleARError('ModelFileMissing', `No stored model has the id ${modelId}.`, { modelId });
    // Downloads shared with another stored model (same checkpoint, other weights) are kept.
    const others = (await this.bundles.records()).filter((r) => r.modelId !== modelId).flatMap((r) => r.downloads);
    await this.cache.forget(record.downloads.filter((u) => !others.includes(u)));
    await this.bundles.delete(modelId);
  }

  // ---- original checkpoints ------------------------------------------------------------------

  private async prepareOriginal(record: ModelRecord, source: Extract<ModelSource, { kind: 'original' }>, options: PrepareOptions): Promise<StoredBundle> {
    const { signal, onProgress } = options;
    const { modelId } = record;
    // What an interrupted conversion left is never resumed: it is removed and converted again.
    await this.bundles.collectGarbage(modelId, [record.generation]);
    const { files, modelBase } = await this.originalFiles(source, signal);
    const totalBytes = files.reduce((a, f) => a + f.size, 0);
    this.pendingNeed = totalBytes; // the estimate stores config.json: a refusal there names this
    const estimatedBundleBytes = record.estimatedBundleBytes ?? (await this.estimateBundleBytes(modelBase, files, options, signal));
    this.pendingNeed = totalBytes + estimatedBundleBytes; // until the stored part is known
    const blockBytes = options.downloadBlockBytes ?? DEFAULT_BLOCK_BYTES;
    const tracked: FileRecord[] = [];
    let storedBytes = 0;
    for (const f of files) {
      const { record: r, stored } = await this.cache.track(f, blockBytes);
      tracked.push(r);
      storedBytes += BlockCache.storedBytes(r, stored);
    }
    record = { ...record, downloads: files.map((f) => f.url), estimatedBundleBytes };
    await this.bundles.putRecord(record);
    await this.checkSpace(totalBytes - storedBytes + estimatedBundleBytes);

    const meter = new DownloadMeter(totalBytes, storedBytes, onProgress);
    try {
      await this.cache.download(tracked, {
        ...(signal ? { signal } : {}),
        onProgress: (p) => meter.update(p.fetchedBytes, p.file),
        // Files whose ETag is their SHA-256 are hashed whole once downloaded.
        onVerify: (done, total) => {
          meter.finish();
          onProgress?.({ phase: 'verify', done, total });
        },
      });
      meter.finish();
    } finally {
      meter.stop();
    }

    const sink = this.bundles.sink(modelId);
    await convertModel({
      model: this.cache.folder(source.model),
      decoder: this.cache.folder(source.vq),
      sink,
      weights: record.weights,
      decoderDType: record.decoderDtype ?? 'f16',
      ...(options.ort ? { ort: options.ort } : {}),
      // Provenance (ETags) from the stored records: converting makes no request.
      fetch: this.recordedHead,
      ...(signal ? { signal } : {}),
      onProgress: onProgress && ((p: ConvertProgress) => onProgress(convertProgress(p))),
    });
    // The bundle is committed: the originals are no longer needed.
    await this.cache.forget(record.downloads);
    const committed = (await this.bundles.record(modelId))!;
    return { modelId, record: committed, folder: this.bundles.folder(modelId, committed.generation!), fromCache: false };
  }

  /** Answers the converter's HEAD requests from the stored file records. */
  private readonly recordedHead: typeof fetch = async (input) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const r = await this.cache.record(url);
    return new Response(null, r ? { status: 200, headers: r.etag ? { etag: r.etag } : {} } : { status: 404 });
  };

  /** The files to download for an original source (HEAD each; the index lists the shards). */
  private async originalFiles(source: Extract<ModelSource, { kind: 'original' }>, signal?: AbortSignal): Promise<OriginalFiles> {
    const at = (base: string, file: string) => new URL(file, base).href;
    const head = (url: string) => this.cache.head(url, signal);
    const required = async (url: string) => {
      const f = await head(url);
      if (!f) throw new ModelFileError(url, 'not found (HTTP 404): is this the right model folder?', undefined, 'ModelFileMissing');
      return f;
    };
    const [config, tokenizer, decoder, single, ...optional] = await Promise.all([
      ...MODEL_FILES.map((f) => required(at(source.model, f))),
      required(at(source.vq, DECODER_FILE)),
      head(at(source.model, SAFETENSORS)),
      ...OPTIONAL_MODEL_FILES.map((f) => head(at(source.model, f))),
    ]);
    const files: RemoteFile[] = [config!, tokenizer!, ...optional.filter((f): f is RemoteFile => f !== null)];
    if (single) {
      files.push(single);
    } else {
      // Sharded: the index names the shards (it is small; read it through the cache).
      const index = await required(at(source.model, SAFETENSORS_INDEX));
      await this.cache.track(index, DEFAULT_BLOCK_BYTES);
      const json = await readJson<{ weight_map?: Record<string, string> }>(this.cache.folder(source.model), SAFETENSORS_INDEX, signal);
      const shards = [...new Set(Object.values(json?.weight_map ?? {}))];
      if (!shards.length) throw new ModelFileError(index.url, 'weight_map names no shard files');
      files.push(index, ...(await Promise.all(shards.map((s) => required(at(source.model, s))))));
    }
    files.push(decoder!);
    return { files, modelBase: source.model };
  }

  /**
   * Converted bundle size: the LM's exactly from config.json (the converter's own formula), the
   * decoder's from decoder.jit's size (its f32 weights, halved for f16), plus the tokenizer.
   * config.json is read through the block cache: it is stored as it arrives, and neither a later
   * plan nor the download asks for it again.
   */
  private async estimateBundleBytes(modelBase: string, files: RemoteFile[], options: LoadModelOptions, signal?: AbortSignal): Promise<number> {
    const configFile = files.find((f) => f.url === new URL('config.json', modelBase).href);
    if (configFile) await this.cache.track(configFile, options.downloadBlockBytes ?? DEFAULT_BLOCK_BYTES);
    const config = await readJson<Record<string, unknown>>(this.cache.folder(modelBase), 'config.json', signal);
    if (!config) throw new ModelFileError(new URL('config.json', modelBase).href, 'not found', undefined, 'ModelFileMissing');
    const vocab = typeof config.vocab_size === 'number' ? config.vocab_size : 0;
    const lm = estimateLmBytes(parseLmSpec(config as never, vocab - VISUAL_CODES, new URL('config.json', modelBase).href), options.weights ?? 'q4');
    const decoderFile = files.find((f) => f.url.endsWith(`/${DECODER_FILE}`));
    const tokenizer = files.find((f) => f.url.endsWith('/tokenizer.json'));
    const decoder = (decoderFile?.size ?? 0) * (decoderDtypeFor(options) === 'f16' ? 0.5 : 1);
    return Math.ceil(lm + decoder + (tokenizer?.size ?? 0));
  }

  // ---- converted bundles ---------------------------------------------------------------------

  private async prepareBundle(record: ModelRecord, url: string, options: PrepareOptions): Promise<StoredBundle> {
    const { signal, onProgress } = options;
    const { modelId } = record;
    const { manifestBytes, manifest, generation } = await this.remoteManifest(url, signal);
    if (record.staging !== generation) {
      // Another version of the bundle (or a first visit): start this one afresh.
      await this.bundles.collectGarbage(modelId, [record.generation]);
      record = { ...record, staging: generation };
    }
    record = { ...record, weights: (manifest.weights.lm as LmWeightFormat | undefined) ?? (manifest.weights.mode as LmWeightFormat) };
    await this.bundles.putRecord(record);
    const stored = await this.bundles.files(modelId, generation);
    if (!stored.has(MANIFEST_FILE)) await this.bundles.putFile(modelId, generation, MANIFEST_FILE, manifestBytes);
    const missing = manifest.chunks.filter((c) => !stored.has(c.file));
    const totalBytes = manifest.layout.totalBytes;
    const missingBytes = missing.reduce((a, c) => a + c.byteLength, 0);
    await this.checkSpace(missingBytes);

    const meter = new DownloadMeter(totalBytes, totalBytes - missingBytes, onProgress);
    let fetched = 0;
    const queue = [...missing];
    const inner = new AbortController();
    const onAbort = () => inner.abort(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const work = async () => {
      for (let chunk = queue.shift(); chunk; chunk = queue.shift()) {
        const chunkUrl = new URL(chunk.file, url).href;
        const bytes = await this.cache.fetchRange(chunkUrl, 0, chunk.byteLength, inner.signal, (n) => meter.update((fetched += n), chunkUrl));
        const sha = await sha256Hex(bytes);
        if (sha !== chunk.sha256) {
          throw new SimpleARError('BundleInvalid', `${chunkUrl}: SHA-256 mismatch (the manifest says ${chunk.sha256}, got ${sha}); the chunk was not stored, try again.`, {
            chunk: chunk.file,
            expected: chunk.sha256,
            actual: sha,
          });
        }
        await this.bundles.putFile(modelId, generation, chunk.file, bytes);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(this.options.concurrency ?? 3, Math.max(1, queue.length)) }, () => work().catch((e) => (inner.abort(e), Promise.reject(e)))));
    } catch (e) {
      throw signal?.aborted ? signal.reason : e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (inner.signal.aborted) meter.stop();
    }
    meter.finish();
    await this.bundles.commit(modelId, generation, totalBytes + manifestBytes.byteLength);
    const committed = (await this.bundles.record(modelId))!;
    return { modelId, record: committed, folder: this.bundles.folder(modelId, generation), fromCache: false };
  }

  private async remoteManifest(url: string, signal?: AbortSignal) {
    const where = new URL(MANIFEST_FILE, url).href;
    const manifestBytes = await openFolder(url, this.fetchImpl, this.retryOptions()).readOptional(MANIFEST_FILE, signal);
    if (!manifestBytes) throw new ModelFileError(where, 'not found (HTTP 404): is this a converted bundle?', undefined, 'ModelFileMissing');
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(manifestBytes));
    } catch (e) {
      throw new ModelFileError(where, `not valid JSON (${(e as Error).message})`, undefined, 'BundleInvalid');
    }
    const manifest = parseManifest(json, where);
    // The generation is the manifest's hash: a changed bundle on the server starts afresh.
    const generation = (await sha256Hex(manifestBytes)).slice(0, 16);
    return { manifestBytes: new Uint8Array(manifestBytes), manifest, generation };
  }

  // ---- storage -------------------------------------------------------------------------------

  private async storageEstimate(): Promise<{ usage: number; quota: number } | null> {
    try {
      const e = await this.options.estimate?.();
      return e && typeof e.quota === 'number' ? { usage: e.usage ?? 0, quota: e.quota } : null;
    } catch {
      return null;
    }
  }

  /** Fails fast, before any download, when the browser says the space is not there. */
  private async checkSpace(needed: number): Promise<void> {
    this.pendingNeed = needed;
    const storage = await this.storageEstimate();
    if (storage && needed > storage.quota - storage.usage) {
      throw quotaExceeded({ needed, available: storage.quota - storage.usage, usage: storage.usage, quota: storage.quota });
    }
  }

  private retryOptions(): HttpRetryOptions {
    return {
      ...(this.options.retries !== undefined ? { retries: this.options.retries } : {}),
      ...(this.options.retryDelayMs !== undefined ? { retryDelayMs: this.options.retryDelayMs } : {}),
    };
  }
}

const decoderDtypeFor = (options: LoadModelOptions): 'f16' | 'f32' => options.decoderDtype ?? (options.weights === 'f32' ? 'f32' : 'f16');

/** A short name for lists: the repository (Hugging Face URLs) or last path part, and the format. */
export function modelName(source: ModelSource, options: LoadModelOptions = {}): string {
  const short = (url: string) => {
    const u = new URL(url);
    const hf = /^\/([^/]+)\/([^/]+)\/resolve\//.exec(u.pathname);
    if (hf) return hf[2]!;
    return u.pathname.split('/').filter(Boolean).at(-1) ?? u.host;
  };
  return source.kind === 'bundle' ? short(source.url) : `${short(source.model)} (${options.weights ?? 'q4'})`;
}

function convertProgress(p: ConvertProgress): PrepareProgress {
  const byBytes = p.bytesTotal > 0;
  return { phase: 'convert', step: p.phase, done: byBytes ? p.bytes : p.tensors, total: byBytes ? p.bytesTotal : p.tensorsTotal };
}
