// EngineHost: the engine API (api.ts) in-process. It owns the loaded engine and everything around
// it: backend choice, model loads and store preparations (one at a time, with one repair-and-retry
// of a corrupt stored chunk), generate / decode / cancel, the refusals of planModel and the
// device-failure handling (gpu-guard.ts). What differs between its hosts (the engine worker, the
// CLI in Node, tests) comes in through EngineHostEnv, so nothing here touches a process's globals.
import { SimpleARError } from '../base/errors.ts';
import type { OrtModule } from '../base/ort.ts';
import { openFolder } from '../formats/byte-source.ts';
import { inspectCheckpoint, type CheckpointInspection, type CheckpointPart } from '../formats/inspect-checkpoint.ts';
import type { DeviceFacts } from '../runtime/device.ts';
import type { EngineModel } from '../runtime/model.ts';
import { openModelBundle } from '../runtime/model-bundle.ts';
import { DecoderRunner } from '../runtime/decoder-runner.ts';
import { maxAbsDiff, referenceSelfTest, runSelfTest, type OrtModule as FullOrtModule } from '../runtime/self-test-graph.ts';
import { BundleError } from '../bundle/index.ts';
import { planBackend } from '../engine/capabilities.ts';
import { createCpuEngine, type CpuEngineOptions } from '../engine/create-cpu.ts';
import { createWebGpuEngine } from '../engine/create-webgpu.ts';
import { loadOriginalModel } from '../engine/load-original.ts';
import type { Engine, GenerateOptions, GenerateRequest, GenerationResult } from '../engine/types.ts';
import type { EngineDevice } from '../engine/webgpu-device.ts';
import type { ModelStore, StoredBundle } from '../store/model-store.ts';
import type { CachedModel, LoadModelOptions, ModelPlan, ModelSource, PrepareProgress } from '../store/types.ts';
import type {
  CallOptions,
  DecodeResult,
  EngineApi,
  GenerateCallOptions,
  GpuMemory,
  LoadedModelInfo,
  LoadOptions,
  LoadTimings,
  PreparedModelInfo,
  PrepareModelOptions,
  SelfTestReport,
} from './api.ts';
import { GpuGuard } from './gpu-guard.ts';
import { timedSessions } from './timed-sessions.ts';

/** ONNX Runtime Web as the WebGPU engine and the self-test need it: its env takes the engine's device. */
export interface WebGpuOrt extends FullOrtModule {
  env: {
    webgpu: { device?: unknown };
    versions: { web?: string };
    wasm: { numThreads?: number | undefined };
  };
}

/** What a host process gives the engine host. */
export interface EngineHostEnv {
  /** ONNX Runtime for the CPU engine and the converter: ORT Web's wasm EP, or onnxruntime-node. */
  loadOrt(): Promise<OrtModule>;
  /** The execution provider `loadOrt` gives: 'wasm' (ORT Web) or 'cpu' (onnxruntime-node). */
  cpuBackend: 'wasm' | 'cpu';
  /** WebGPU adapter facts, or why there is none (core/runtime/device.ts probeDevice). */
  probeDevice(): Promise<DeviceFacts>;
  /** WebGPU, where the process has it (the worker): ORT Web and the engine's own GPUDevice. */
  webgpu?: {
    loadOrt(): Promise<WebGpuOrt>;
    requestDevice(): Promise<EngineDevice>;
  };
  /** The model store (IndexedDB in the worker), made on first use; without one, prepareModel and
   * the cache calls reject. */
  modelStore?: () => ModelStore;
  /** Options for every CPU engine (the CLI: one image, sessions opened from files, decoder bands). */
  cpuEngine?: Omit<CpuEngineOptions, 'backend' | 'maxLatentSide'>;
}

type Backend = 'webgpu' | 'wasm' | 'cpu';

/** `options` without what only the call itself uses (its signal and progress callback). */
function modelOptions<T extends CallOptions & { onProgress?: unknown }>(options: T): Omit<T, 'signal' | 'onProgress'> {
  const { signal: _signal, onProgress: _onProgress, ...rest } = options;
  return rest;
}

export class EngineHost implements EngineApi {
  readonly #env: EngineHostEnv;
  readonly #gpu = new GpuGuard((error) => this.#onGpuFailure(error));
  #engine: Engine | undefined;
  #loadedModelId: string | undefined;
  #store: ModelStore | undefined;
  /** Models whose plan this device refused (planBackend): preparing them would download for nothing. */
  readonly #refusals = new Map<string, SimpleARError>();
  /** Settles when the running prepareModel does. */
  #preparing: Promise<void> = Promise.resolve();

  constructor(env: EngineHostEnv) {
    this.#env = env;
  }

  #onGpuFailure(_error: SimpleARError): void {
    const lost = this.#engine;
    this.#engine = undefined;
    this.#loadedModelId = undefined;
    void lost?.dispose().catch(() => {}); // best effort: its buffers died with the device
  }

  #modelStore(): ModelStore {
    if (!this.#env.modelStore) throw new SimpleARError('InvalidSettings', 'This host has no model store: load a model with loadModel.');
    this.#store ??= this.#env.modelStore();
    return this.#store;
  }

  /** ORT with the engine's own GPUDevice installed before any session exists. */
  async #ortOnEngineDevice(): Promise<{ ort: WebGpuOrt; gpu: EngineDevice }> {
    this.#gpu.check();
    const webgpu = this.#env.webgpu;
    if (!webgpu) throw new SimpleARError('WebGPUUnavailable', 'This host has no WebGPU.', { reason: 'no-webgpu-api' });
    const ort = await webgpu.loadOrt();
    const gpu = await this.#gpu.device(() =>
      webgpu.requestDevice().then((d) => {
        ort.env.webgpu.device = d.device;
        return d;
      }),
    );
    return { ort, gpu };
  }

  /** The backend to build on: WebGPU when asked for or offered, else the CPU one (wasm EP / node). */
  async #chooseBackend(options: LoadModelOptions): Promise<Backend> {
    const device = await this.#env.probeDevice();
    const cpu = this.#env.cpuBackend;
    const asked = options.backend === 'wasm' ? cpu : options.backend;
    const backend = asked === 'auto' || !asked ? (device.ok ? 'webgpu' : cpu) : asked;
    if (backend === 'webgpu' && !device.ok) throw new SimpleARError('WebGPUUnavailable', device.message, { reason: device.reason });
    return backend;
  }

  /** Replaces the engine with one built from `model` on `backend`. */
  async #buildEngine(model: EngineModel, backend: Backend, options: LoadModelOptions, readMs?: number): Promise<LoadedModelInfo> {
    const t0 = performance.now();
    await this.#engine?.dispose();
    this.#engine = undefined;
    this.#loadedModelId = undefined;
    // The model was read for this engine alone: each part's weights go once its session holds them.
    const sizes = { maxLatentSide: options.maxLatentSide, releaseWeights: true };
    const capture = options.graphCapture === undefined ? {} : { graphCapture: options.graphCapture };
    let activations: 'f16' | 'f32' = 'f32';
    const parts: Pick<LoadTimings, 'sessions' | 'runsMs'> = { sessions: [], runsMs: 0 };
    const timing = { on: true };
    let engine: Engine;
    try {
      if (backend === 'webgpu') {
        engine = await this.#gpu.run(async () => {
          const { ort, gpu } = await this.#ortOnEngineDevice();
          activations = options.activations ?? (gpu.shaderF16 ? 'f16' : 'f32');
          return createWebGpuEngine(timedSessions(ort, parts, timing), gpu, model, { ...sizes, ...capture, activations });
        });
      } else {
        const ort = timedSessions(await this.#env.loadOrt(), parts, timing);
        engine = await createCpuEngine(ort, model, { ...this.#env.cpuEngine, ...sizes, backend });
      }
    } finally {
      timing.on = false;
    }
    this.#engine = engine;
    const engineMs = Math.round(performance.now() - t0);
    const timings: LoadTimings = { ...(readMs !== undefined ? { readMs } : {}), engineMs, ...parts, totalMs: (readMs ?? 0) + engineMs };
    return {
      timings,
      name: model.name,
      backend: engine.backend,
      activations,
      hiddenSize: model.lm.hiddenSize,
      numLayers: model.lm.numLayers,
      visualOffset: model.lm.visualOffset,
      ...(model.preview ? { preview: model.preview } : {}),
    };
  }

  getDeviceInfo(): Promise<DeviceFacts> {
    return this.#env.probeDevice();
  }

  async selfTest(): Promise<SelfTestReport> {
    const device = await this.#env.probeDevice();
    if (!device.ok) throw new SimpleARError('WebGPUUnavailable', device.message, { reason: device.reason });
    return this.#gpu.run(async () => {
      const { ort } = await this.#ortOnEngineDevice();
      const result = await runSelfTest(ort, { executionProviders: ['webgpu'], strict: true });
      const reference = referenceSelfTest();
      return {
        ...result,
        ortVersion: ort.env.versions.web ?? 'unknown',
        executionProvider: 'webgpu' as const,
        numThreads: ort.env.wasm.numThreads ?? 1,
        maxAbsDiffFromReference: Math.max(
          maxAbsDiff(result.outputs.y.data, reference.y),
          maxAbsDiff(result.outputs.residual.data, reference.residual),
        ),
      };
    });
  }

  inspectCheckpoint(baseUrl: string, options: { parts?: CheckpointPart[] } & CallOptions = {}): Promise<CheckpointInspection> {
    return inspectCheckpoint(openFolder(baseUrl), options.parts ? { parts: options.parts } : {});
  }

  async loadModel(source: ModelSource, options: LoadOptions = {}): Promise<LoadedModelInfo> {
    const { name, signal, ...rest } = options;
    const backend = await this.#chooseBackend(rest);
    let model: EngineModel;
    const t0 = performance.now();
    if (source.kind === 'original') {
      model = await loadOriginalModel(openFolder(source.model), openFolder(source.vq), {
        weights: rest.weights,
        decoderDtype: rest.decoderDtype,
        name: name ?? source.model,
      });
      return this.#buildEngine(model, backend, rest);
    }
    // A converted bundle read as it is, each chunk's SHA-256 checked (the CLI; the page stores
    // bundles with prepareModel).
    const bundle = await openModelBundle(openFolder(source.url), signal ? { signal } : {});
    model = await bundle.loadModel({ name: name ?? source.url, ...(signal ? { signal } : {}) });
    return this.#buildEngine(model, backend, rest, Math.round(performance.now() - t0));
  }

  async generate(request: GenerateRequest, options: GenerateCallOptions = {}): Promise<GenerationResult> {
    return this.#generate(request, options, (engine, opts) => engine.generate(request, opts));
  }

  async generateImages(request: GenerateRequest, options: GenerateCallOptions = {}): Promise<GenerationResult[]> {
    return this.#generate(request, options, (engine, opts) => engine.generateImages(request, opts));
  }

  async #generate<T>(request: GenerateRequest, options: GenerateCallOptions, call: (engine: Engine, options: GenerateOptions) => Promise<T>): Promise<T> {
    this.#gpu.check();
    const engine = this.#engine;
    if (!engine) throw new SimpleARError('ModelFileMissing', 'No model is loaded: load one before generating.');
    const { signal, onProgress } = options;
    const run = () => call(engine, { ...(signal ? { signal } : {}), ...(onProgress ? { onProgress } : {}) });
    return engine.backend === 'webgpu' ? this.#gpu.run(run, () => signal?.aborted === true) : run();
  }

  async planModel(source: ModelSource, options: LoadModelOptions & CallOptions = {}): Promise<ModelPlan> {
    const loadOptions = modelOptions(options);
    const plan = await this.#modelStore().plan(source, loadOptions);
    if (!plan.footprint) return plan;
    // Before any download: can the backend this device gets run these weights at this size?
    try {
      const backend = planBackend(plan.footprint, loadOptions, await this.#env.probeDevice());
      this.#refusals.delete(plan.modelId);
      return { ...plan, backend };
    } catch (e) {
      if (!(e instanceof SimpleARError && e.code === 'BackendUnsupported')) throw e;
      this.#refusals.set(plan.modelId, e);
      return { ...plan, refusal: { code: 'BackendUnsupported' as const, message: e.message } };
    }
  }

  async prepareModel(source: ModelSource, options: PrepareModelOptions = {}): Promise<PreparedModelInfo> {
    const { signal = new AbortController().signal, onProgress: report } = options;
    const loadOptions = modelOptions(options);
    // One preparation at a time: two at once would download the same blocks and replace
    // each other's bundle generation (and the engine holds one model anyway).
    const previous = this.#preparing;
    let done!: () => void;
    this.#preparing = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      signal.throwIfAborted();
      const store = this.#modelStore();
      const refused = this.#refusals.get(await store.modelId(source, loadOptions));
      if (refused) throw refused;
      const backend = await this.#chooseBackend(loadOptions);
      // The converter fits the live-preview map with ORT (on the wasm EP); on WebGPU the
      // engine's device is installed first, before ORT creates any session.
      const ort = backend === 'webgpu' ? (await this.#gpu.run(() => this.#ortOnEngineDevice())).ort : await this.#env.loadOrt();
      const prepare = () => store.prepare(source, { ...loadOptions, signal, ort, ...(report ? { onProgress: report } : {}) });
      let stored = await prepare();
      let model: EngineModel;
      const t0 = performance.now();
      try {
        model = await loadStored(stored, report, signal);
      } catch (e) {
        if (!(e instanceof BundleError)) throw e;
        // A stored chunk failed its SHA-256: forget the broken part and fetch it again, once.
        await store.repair(stored.modelId, e);
        stored = await prepare();
        model = await loadStored(stored, report, signal);
      }
      const info = await this.#buildEngine(model, backend, loadOptions, Math.round(performance.now() - t0));
      this.#loadedModelId = stored.modelId;
      await store.touch(stored.modelId);
      return { ...info, modelId: stored.modelId, fromCache: stored.fromCache };
    } finally {
      done();
    }
  }

  listCachedModels(): Promise<CachedModel[]> {
    return this.#modelStore().list();
  }

  async deleteCachedModel(modelId: string): Promise<void> {
    if (this.#loadedModelId === modelId) await this.#unload();
    await this.#modelStore().delete(modelId);
  }

  async debugLoseDevice(): Promise<boolean> {
    const device = this.#gpu.current;
    if (!device) return false;
    (await device).device.destroy();
    return true;
  }

  async gpuMemory(): Promise<GpuMemory | null> {
    const device = this.#gpu.current;
    if (!device) return null;
    const { allocations } = await device;
    return { liveBuffers: allocations.liveBuffers, liveBytes: allocations.liveBytes, created: allocations.count };
  }

  async decode(codes: Int32Array, side: number): Promise<DecodeResult> {
    this.#gpu.check();
    const engine = this.#engine;
    if (!engine) throw new SimpleARError('ModelFileMissing', 'No model is loaded: load one before decoding.');
    if (!Number.isInteger(side) || side < 1 || codes.length !== side * side) {
      throw new SimpleARError('InvalidSettings', `decode: ${codes.length} codes do not make a ${side} × ${side} latent`, { field: 'side' });
    }
    const run = async () => {
      const t0 = performance.now();
      const image = await engine.decode(codes, side, side);
      return { ...image, ms: Math.round(performance.now() - t0) };
    };
    return engine.backend === 'webgpu' ? this.#gpu.run(run) : run();
  }

  /**
   * Loads a bundle's VQ decoder alone (no LM weights are read), on the CPU backend, for decode():
   * the CLI's `decode`. 'f16' activations are checked and decoded again in f32 on an overflow;
   * above `bandBytes` of whole-image activation (for a `maxSide` latent) it decodes in bands of
   * rows (0: whole). Resolves the band budget in use (undefined: whole).
   */
  async loadDecoder(
    bundleUrl: string,
    options: { activations?: 'f16' | 'f32'; bandBytes?: number; maxSide?: number } & CallOptions = {},
  ): Promise<{ bandBytes: number | undefined }> {
    await this.#unload();
    const { signal } = options;
    const bundle = await openModelBundle(openFolder(bundleUrl), signal ? { signal } : {});
    const ort = await this.#env.loadOrt();
    const files = this.#env.cpuEngine?.files;
    const bandBytes = options.bandBytes ?? 0;
    const runner = await DecoderRunner.create(ort, bundle.decoder, await bundle.loadDecoderWeights(signal), {
      activations: options.activations === 'f16' ? 'float16' : 'float32',
      ...(files ? { files } : {}),
      ...(bandBytes > 0 ? { maxActivationBytes: bandBytes, ...(options.maxSide !== undefined ? { maxSide: options.maxSide } : {}) } : {}),
    });
    this.#engine = decoderOnlyEngine(this.#env.cpuBackend, runner);
    return { bandBytes: runner.bandBytes };
  }

  /** Releases the loaded engine (its sessions and buffers). The host can load another after. */
  dispose(): Promise<void> {
    return this.#unload();
  }

  async #unload(): Promise<void> {
    const engine = this.#engine;
    this.#engine = undefined;
    this.#loadedModelId = undefined;
    await engine?.dispose();
  }
}

/** An engine with a decoder and no LM (loadDecoder): it decodes, and refuses to generate. */
function decoderOnlyEngine(backend: 'wasm' | 'cpu', runner: DecoderRunner): Engine {
  return {
    backend,
    generate: () => Promise.reject(new SimpleARError('ModelFileMissing', 'Only a decoder is loaded: load a model to generate.')),
    generateImages: () => Promise.reject(new SimpleARError('ModelFileMissing', 'Only a decoder is loaded: load a model to generate.')),
    decode: (codes, h, w) => runner.decode(codes, h, w),
    dispose: () => runner.release(),
  };
}

/** Reads the stored bundle into memory (every chunk's SHA-256 checked), reporting chunks read. */
async function loadStored(stored: StoredBundle, onProgress: ((p: PrepareProgress) => void) | undefined, signal: AbortSignal): Promise<EngineModel> {
  const bundle = await openModelBundle(stored.folder, { signal });
  return bundle.loadModel({ name: stored.record.name, signal, onChunk: (done, total) => onProgress?.({ phase: 'load', done, total }) });
}
