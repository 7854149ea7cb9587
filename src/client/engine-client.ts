// The page's one handle on the engine: a typed bridge over the Comlink proxy of the engine
// worker. It owns the worker's lifetime (started on first use, ended by dispose), turns a
// worker that fails to start into rejected calls, and makes every call abortable.
import * as Comlink from 'comlink';
import { SimpleARError } from '../core/base/errors.ts';
import type { DeviceFacts } from '../core/runtime/device.ts';
import { installErrorTransfer } from './error-transfer.ts';
import { callOverWire, type EngineMethod, type EngineResult, type EngineWire, type LeadingArgs, type OptionsOf } from './engine-bridge.ts';
import type {
  CheckpointInspection,
  CachedModel,
  CheckpointPart,
  DecodeResult,
  EngineApi,
  GenerateCallOptions,
  GenerateRequest,
  GenerationProgress,
  GenerationResult,
  LoadedModelInfo,
  LoadModelOptions,
  ModelPlan,
  ModelSource,
  PreparedModelInfo,
  PrepareProgress,
  SelfTestReport,
} from './protocol.ts';

export type { DeviceFacts } from '../core/runtime/device.ts';
export type {
  CachedModel,
  CheckpointInspection,
  DecodeResult,
  GenerateRequest,
  GenerationProgress,
  GenerationResult,
  LoadedModelInfo,
  LoadModelOptions,
  ModelPlan,
  ModelSource,
  PreparedModelInfo,
  PrepareProgress,
  SelfTestReport,
  TensorDigest,
} from './protocol.ts';

function startEngineWorker(): Worker {
  // This exact `new Worker(new URL(...), { type: 'module' })` shape lets Vite bundle the worker.
  return new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), {
    type: 'module',
    name: 'simplear-engine',
  });
}

export interface EngineClientOptions {
  /** Starts the worker; tests and embedders may supply their own. */
  startWorker?: () => Worker;
}

type Remote = Comlink.Remote<EngineWire>;

interface Connection {
  worker: Worker;
  remote: Remote;
  /** Rejects when the worker dies or fails to load; calls race against it. */
  failed: Promise<never>;
}

function aborted(signal: AbortSignal): SimpleARError {
  return new SimpleARError('Aborted', 'The operation was cancelled.', { reason: String(signal.reason) });
}

/** The engine API (EngineApi) on the page, served by an EngineHost in the engine worker. */
export class EngineClient implements EngineApi {
  readonly #startWorker: () => Worker;
  #connection: Connection | undefined;
  #disposed = false;
  #nextId = 0;
  /** Loads the current model again (same source and options, no progress): after a GPU failure. */
  #reload: ((api: Remote) => Promise<unknown>) | undefined;
  /** The worker was replaced after a GPU failure: the model must be loaded before generating. */
  #reloadPending = false;

  constructor(options: EngineClientOptions = {}) {
    this.#startWorker = options.startWorker ?? startEngineWorker;
    installErrorTransfer();
  }

  /** WebGPU adapter, features and limits as the engine sees them, or why WebGPU is missing. */
  getDeviceInfo(options: { signal?: AbortSignal } = {}): Promise<DeviceFacts> {
    return this.#plain('getDeviceInfo', [], options);
  }

  /** Runs a small ONNX graph on the GPU through ONNX Runtime Web and reports its numbers. */
  selfTest(options: { signal?: AbortSignal } = {}): Promise<SelfTestReport> {
    return this.#plain('selfTest', [], options);
  }

  /** Per-tensor SHA-256 of the checkpoint at `baseUrl` as the worker reads it (range requests). */
  inspectCheckpoint(baseUrl: string, options: { parts?: CheckpointPart[]; signal?: AbortSignal } = {}): Promise<CheckpointInspection> {
    return this.#plain('inspectCheckpoint', [baseUrl], options);
  }
  /** GPU buffers the engine's device holds now, or null before the GPU is in use. */
  gpuMemory(): Promise<{ liveBuffers: number; liveBytes: number; created: number } | null> {
    return this.#plain('gpuMemory', []);
  }

  /** Loads a model into the worker's engine (replacing any loaded one). */
  async loadModel(source: ModelSource, options: LoadModelOptions & { signal?: AbortSignal } = {}): Promise<LoadedModelInfo> {
    const { signal, ...rest } = options;
    const info = await this.#onFreshWorkerIfLost(() => this.#plain('loadModel', [source], options));
    this.#reload = (api) => callOverWire(api, ++this.#nextId, 'loadModel', [source], rest);
    this.#reloadPending = false;
    return info;
  }

  /** Download size, storage needed and cache state of `source`; downloads nothing. */
  planModel(source: ModelSource, options: LoadModelOptions & { signal?: AbortSignal } = {}): Promise<ModelPlan> {
    return this.#plain('planModel', [source], options);
  }

  /**
   * Downloads (resuming), converts and stores the model in IndexedDB as needed, then loads it.
   * Aborting `signal` stops the download/conversion in the worker; what is stored is kept.
   */
  async prepareModel(
    source: ModelSource,
    options: LoadModelOptions & { onProgress?: (p: PrepareProgress) => void; signal?: AbortSignal } = {},
  ): Promise<PreparedModelInfo> {
    const { signal, onProgress: _onProgress, ...rest } = options;
    const info = await this.#onFreshWorkerIfLost(() => this.#cancellable(signal, (id, api) => callOverWire(api, id, 'prepareModel', [source], options)));
    this.#reload = (api) => callOverWire(api, ++this.#nextId, 'prepareModel', [source], rest);
    this.#reloadPending = false;
    return info;
  }

  /** Models in the browser's storage (complete or partial downloads). */
  listCachedModels(): Promise<CachedModel[]> {
    return this.#plain('listCachedModels', []);
  }

  /** Deletes a stored model; the engine unloads it if it is the loaded one. */
  deleteCachedModel(modelId: string): Promise<void> {
    return this.#plain('deleteCachedModel', [modelId]);
  }

  /**
   * Generates one image. Aborting `signal` cancels the generation in the worker (within one
   * step) and rejects with an AbortError; the engine stays ready for the next call.
   */
  generate(request: GenerateRequest, options: GenerateCallOptions = {}): Promise<GenerationResult> {
    return this.#generate('generate', request, options);
  }

  /** `request.count` images (image i: seed + i), in one batched pass where the backend has one. */
  generateImages(request: GenerateRequest, options: GenerateCallOptions = {}): Promise<GenerationResult[]> {
    return this.#generate('generateImages', request, options);
  }

  async #generate<K extends 'generate' | 'generateImages'>(method: K, request: GenerateRequest, options: GenerateCallOptions): Promise<EngineResult<K>> {
    const { signal } = options;
    if (this.#reloadPending && this.#reload) {
      // The last GPU failure ended the old worker: load the model again (from storage) first.
      const reload = this.#reload;
      await this.#gpuCall(() => this.#call((api) => reload(api), signal));
      this.#reloadPending = false;
    }
    return this.#gpuCall(() => this.#cancellable(signal, (id, api) => callOverWire(api, id, method, [request] as LeadingArgs<K>, options)));
  }

  /** The loaded model's VQ decoder alone on `codes`, a side × side latent (raster order). */
  decode(codes: Int32Array, side: number, options: { signal?: AbortSignal } = {}): Promise<DecodeResult> {
    return this.#gpuCall(() => this.#plain('decode', [codes, side], options));
  }

  /**
   * For tests only: makes the worker's GPUDevice lost (as a driver reset would). The next GPU
   * call rejects with DeviceLost; the generation after it restarts the engine by itself.
   */
  debugLoseDevice(): Promise<boolean> {
    return this.#plain('debugLoseDevice', []);
  }

  /**
   * A call after which a DeviceLost / GpuOutOfMemory error ends the worker (ONNX Runtime cannot
   * move to a new device in it): the next generate starts a fresh one and reloads the model.
   */
  async #gpuCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      if (e instanceof SimpleARError && (e.code === 'DeviceLost' || e.code === 'GpuOutOfMemory')) {
        this.#endWorker();
        this.#reloadPending = true;
      }
      throw e;
    }
  }

  /**
   * Loading builds a new engine anyway: if the worker's device turns out lost, do it once more
   * in a fresh worker. (Out of memory is not retried: the same load would fail the same way.)
   */
  async #onFreshWorkerIfLost<T>(load: () => Promise<T>): Promise<T> {
    try {
      return await this.#gpuCall(load);
    } catch (e) {
      if (e instanceof SimpleARError && e.code === 'DeviceLost') return this.#gpuCall(load);
      throw e;
    }
  }

  #endWorker(): void {
    if (!this.#connection) return;
    this.#connection.remote[Comlink.releaseProxy]();
    this.#connection.worker.terminate();
    this.#connection = undefined;
  }

  /** A worker call that `cancel(id)` can stop; rejects with an AbortError once `signal` aborts. */
  async #cancellable<T>(signal: AbortSignal | undefined, invoke: (id: number, api: Remote) => Promise<T>): Promise<T> {
    const id = ++this.#nextId;
    const cancel = () => void this.#connection?.remote.cancel(id);
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      return await this.#call((api) => invoke(id, api), signal);
    } catch (e) {
      if (signal?.aborted) throw new DOMException('Cancelled', 'AbortError');
      throw e;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }


  /** Ends the worker and everything it holds. Later calls reject. */
  dispose(): void {
    this.#disposed = true;
    this.#endWorker();
  }

  #connect(): Connection {
    if (this.#connection) return this.#connection;
    const worker = this.#startWorker();
    const failed = new Promise<never>((_, reject) => {
      worker.addEventListener('error', (event) => {
        event.preventDefault();
        this.#connection = undefined;
        worker.terminate();
        reject(new Error(`The engine worker failed: ${event.message || 'it could not be loaded'}`));
      });
    });
    failed.catch(() => {}); // observed by the calls that race against it
    this.#connection = { worker, remote: Comlink.wrap<EngineWire>(worker), failed };
    return this.#connection;
  }

  /** A call the worker does not stop early: aborting `signal` rejects it here (code Aborted). */
  #plain<K extends EngineMethod>(method: K, leading: LeadingArgs<K>, options: OptionsOf<K> | Record<string, never> = {}): Promise<EngineResult<K>> {
    return this.#call((api) => callOverWire(api, ++this.#nextId, method, leading, options), (options as { signal?: AbortSignal }).signal);
  }

  async #call<T>(invoke: (api: Remote) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#disposed) throw new Error('EngineClient is disposed');
    if (signal?.aborted) throw aborted(signal);
    const { remote, failed } = this.#connect();
    const racers: Promise<T>[] = [invoke(remote), failed];
    let onAbort: (() => void) | undefined;
    if (signal) {
      racers.push(
        new Promise<never>((_, reject) => {
          onAbort = () => reject(aborted(signal));
          signal.addEventListener('abort', onAbort, { once: true });
        }),
      );
    }
    try {
      return await Promise.race(racers);
    } finally {
      if (onAbort) signal!.removeEventListener('abort', onAbort);
    }
  }
}
