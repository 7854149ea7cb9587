// The page's one handle on the engine: a typed bridge over the Comlink proxy of the engine
// worker. It owns the worker's lifetime (started on first use, ended by dispose), turns a
// worker that fails to start into rejected calls, and makes every call abortable.
import * as Comlink from 'comlink';
import { SimpleARError } from '../core/base/errors.ts';
import type { DeviceFacts } from '../core/runtime/device.ts';
import { installErrorTransfer } from './error-transfer.ts';
import type {
  CheckpointInspection,
  CachedModel,
  CheckpointPart,
  DecodeResult,
  EngineWorkerApi,
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

interface Connection {
  worker: Worker;
  remote: Comlink.Remote<EngineWorkerApi>;
  /** Rejects when the worker dies or fails to load; calls race against it. */
  failed: Promise<never>;
}

function aborted(signal: AbortSignal): SimpleARError {
  return new SimpleARError('Aborted', 'The operation was cancelled.', { reason: String(signal.reason) });
}

export class EngineClient {
  readonly #startWorker: () => Worker;
  #connection: Connection | undefined;
  #disposed = false;
  #nextId = 0;
  /** Loads the current model again (same source and options, no progress): after a GPU failure. */
  #reload: ((api: Comlink.Remote<EngineWorkerApi>) => Promise<unknown>) | undefined;
  /** The worker was replaced after a GPU failure: the model must be loaded before generating. */
  #reloadPending = false;

  constructor(options: EngineClientOptions = {}) {
    this.#startWorker = options.startWorker ?? startEngineWorker;
    installErrorTransfer();
  }

  /** WebGPU adapter, features and limits as the engine sees them, or why WebGPU is missing. */
  getDeviceInfo(options: { signal?: AbortSignal } = {}): Promise<DeviceFacts> {
    // Comlink.Remote distributes over the union; the value is a DeviceFacts all the same.
    return this.#call((api) => api.getDeviceInfo() as Promise<DeviceFacts>, options.signal);
  }

  /** Runs a small ONNX graph on the GPU through ONNX Runtime Web and reports its numbers. */
  selfTest(options: { signal?: AbortSignal } = {}): Promise<SelfTestReport> {
    return this.#call((api) => api.selfTest(), options.signal);
  }

  /** Per-tensor SHA-256 of the checkpoint at `baseUrl` as the worker reads it (range requests). */
  inspectCheckpoint(baseUrl: string, options: { parts?: CheckpointPart[]; signal?: AbortSignal } = {}): Promise<CheckpointInspection> {
    return this.#call((api) => api.inspectCheckpoint(baseUrl, options.parts), options.signal);
  }
  /** GPU buffers the engine's device holds now, or null before the GPU is in use. */
  gpuMemory(): Promise<{ liveBuffers: number; liveBytes: number; created: number } | null> {
    return this.#call((api) => api.gpuMemory());
  }

  /** Loads a model into the worker's engine (replacing any loaded one). */
  async loadModel(source: ModelSource, options: LoadModelOptions & { signal?: AbortSignal } = {}): Promise<LoadedModelInfo> {
    const { signal, ...rest } = options;
    const info = await this.#onFreshWorkerIfLost(() => this.#call((api) => api.loadModel(source, rest), signal));
    this.#reload = (api) => api.loadModel(source, rest);
    this.#reloadPending = false;
    return info;
  }

  /** Download size, storage needed and cache state of `source`; downloads nothing. */
  planModel(source: ModelSource, options: LoadModelOptions & { signal?: AbortSignal } = {}): Promise<ModelPlan> {
    const { signal, ...rest } = options;
    return this.#call((api) => api.planModel(source, rest), signal);
  }

  /**
   * Downloads (resuming), converts and stores the model in IndexedDB as needed, then loads it.
   * Aborting `signal` stops the download/conversion in the worker; what is stored is kept.
   */
  async prepareModel(
    source: ModelSource,
    options: LoadModelOptions & { onProgress?: (p: PrepareProgress) => void; signal?: AbortSignal } = {},
  ): Promise<PreparedModelInfo> {
    const { signal, onProgress, ...rest } = options;
    const info = await this.#onFreshWorkerIfLost(() =>
      this.#cancellable(signal, (id, api) => api.prepareModel(id, source, rest, onProgress && Comlink.proxy(onProgress))),
    );
    this.#reload = (api) => api.prepareModel(++this.#nextId, source, rest);
    this.#reloadPending = false;
    return info;
  }

  /** Models in the browser's storage (complete or partial downloads). */
  listCachedModels(): Promise<CachedModel[]> {
    return this.#call((api) => api.listCachedModels());
  }

  /** Deletes a stored model; the engine unloads it if it is the loaded one. */
  deleteCachedModel(modelId: string): Promise<void> {
    return this.#call((api) => api.deleteCachedModel(modelId));
  }

  /**
   * Generates one image. Aborting `signal` cancels the generation in the worker (within one
   * step) and rejects with an AbortError; the engine stays ready for the next call.
   */
  async generate(
    request: GenerateRequest,
    options: { onProgress?: (p: GenerationProgress) => void; signal?: AbortSignal } = {},
  ): Promise<GenerationResult> {
    const { signal, onProgress } = options;
    if (this.#reloadPending && this.#reload) {
      // The last GPU failure ended the old worker: load the model again (from storage) first.
      const reload = this.#reload;
      await this.#gpuCall(() => this.#call((api) => reload(api), signal));
      this.#reloadPending = false;
    }
    return this.#gpuCall(() => this.#cancellable(signal, (id, api) => api.generate(id, request, onProgress && Comlink.proxy(onProgress))));
  }

  /** The loaded model's VQ decoder alone on `codes`, a side × side latent (raster order). */
  decode(codes: Int32Array, side: number, options: { signal?: AbortSignal } = {}): Promise<DecodeResult> {
    return this.#gpuCall(() => this.#call((api) => api.decode(codes, side), options.signal));
  }

  /**
   * For tests only: makes the worker's GPUDevice lost (as a driver reset would). The next GPU
   * call rejects with DeviceLost; the generation after it restarts the engine by itself.
   */
  debugLoseDevice(): Promise<boolean> {
    return this.#call((api) => api.debugLoseDevice());
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
  async #cancellable<T>(signal: AbortSignal | undefined, invoke: (id: number, api: Comlink.Remote<EngineWorkerApi>) => Promise<T>): Promise<T> {
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
    this.#connection = { worker, remote: Comlink.wrap<EngineWorkerApi>(worker), failed };
    return this.#connection;
  }

  async #call<T>(invoke: (api: Comlink.Remote<EngineWorkerApi>) => Promise<T>, signal?: AbortSignal): Promise<T> {
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
