// The engine worker: exposes the engine API over Comlink, nothing else. All work is in
// src/core; this file wires it to the worker's globals (navigator.gpu, ORT Web, IndexedDB).
//
// GPU failures: once the engine's device is lost or runs out of memory, the engine is disposed
// and every GPU call here rejects with DeviceLost / GpuOutOfMemory. ONNX Runtime Web cannot
// move to a new device in the same worker, so the client answers those codes by starting a
// fresh worker and loading the stored model again before the next generation.
import * as Comlink from 'comlink';
import { probeDevice } from '../src/core/runtime/device.ts';
import { SimpleARError } from '../src/core/base/errors.ts';
import { openFolder } from '../src/core/formats/byte-source.ts';
import { inspectCheckpoint } from '../src/core/formats/inspect-checkpoint.ts';
import { maxAbsDiff, referenceSelfTest, runSelfTest } from '../src/core/runtime/self-test-graph.ts';
import { loadOriginalModel } from '../src/core/engine/load-original.ts';
import { createWebGpuEngine } from '../src/core/engine/create-webgpu.ts';
import { createCpuEngine } from '../src/core/engine/create-cpu.ts';
import { planBackend } from '../src/core/engine/capabilities.ts';
import { classifyGpuError, requestEngineDevice, watchDeviceFailures, type EngineDevice } from '../src/core/engine/webgpu-device.ts';
import type { EngineModel } from '../src/core/runtime/model.ts';
import type { Engine, GenerationResult } from '../src/core/engine/types.ts';
import { BundleError } from '../src/core/bundle/index.ts';
import { openModelBundle } from '../src/core/runtime/model-bundle.ts';
import { ModelStore, type StoredBundle } from '../src/core/store/model-store.ts';
import { openBrowserStores } from '../src/core/store/kv-idb.ts';
import { installErrorTransfer } from '../src/client/error-transfer.ts';
import type { EngineWorkerApi, LoadedModelInfo, LoadModelOptions, LoadTimings, PrepareProgress, SelfTestReport } from '../src/client/protocol.ts';
import type { InferenceSession, OrtModule } from '../src/core/base/ort.ts';
import { loadOrtWeb, type OrtWeb } from './ort-web.ts';

let gpu: Promise<EngineDevice> | undefined;
/** Set once the device is lost or out of memory: this worker's GPU is done for. */
let gpuFailure: SimpleARError | undefined;
const failureListeners = new Set<(e: SimpleARError) => void>();

/** ORT with the engine's own GPUDevice installed before any session exists. */
async function ortOnEngineDevice(): Promise<{ ort: OrtWeb; gpu: EngineDevice }> {
  if (gpuFailure) throw gpuFailure;
  const ort = await loadOrtWeb();
  gpu ??= requestEngineDevice().then((d) => {
    ort.env.webgpu.device = d.device;
    void watchDeviceFailures(d.device).then(onGpuFailure);
    return d;
  });
  return { ort, gpu: await gpu };
}

function onGpuFailure(error: SimpleARError): void {
  if (gpuFailure) return;
  gpuFailure = error;
  const lost = engine;
  engine = undefined;
  loadedModelId = undefined;
  void lost?.dispose().catch(() => {}); // best effort: its buffers died with the device
  for (const listener of failureListeners) listener(error);
}

/** How long a failed GPU call waits for the device to report itself lost (its errors can come first). */
const LOSS_GRACE_MS = 300;

/**
 * Runs a GPU call; rejects with the device's failure as soon as it happens, or maps ORT's
 * allocation errors. `cancelled` tells a cancel of our own apart from a device that died:
 * a destroyed device also rejects pending mapAsync calls with an AbortError.
 */
async function onGpu<T>(work: () => Promise<T>, cancelled: () => boolean = () => false): Promise<T> {
  if (gpuFailure) throw gpuFailure;
  let listener: ((e: SimpleARError) => void) | undefined;
  const failed = new Promise<never>((_, reject) => {
    listener = reject;
    failureListeners.add(listener);
  });
  failed.catch(() => {});
  try {
    return await Promise.race([work(), failed]);
  } catch (e) {
    if (e instanceof SimpleARError && (e.code === 'DeviceLost' || e.code === 'GpuOutOfMemory')) throw e;
    let gpuError: SimpleARError | null | undefined = gpuFailure ?? classifyGpuError(e);
    // Our own typed errors (bad settings, …) and our own cancels are not the device's doing.
    if (!gpuError && !cancelled() && !(e instanceof SimpleARError)) {
      gpuError = await Promise.race([failed.catch((f: SimpleARError) => f), new Promise<undefined>((r) => setTimeout(r, LOSS_GRACE_MS))]);
    }
    if (gpuError) {
      onGpuFailure(gpuError);
      throw gpuError;
    }
    throw e;
  } finally {
    failureListeners.delete(listener!);
  }
}

let engine: Engine | undefined;
let loadedModelId: string | undefined;
const running = new Map<number, AbortController>();

let store: ModelStore | undefined;
/** Models whose plan this device refused (planBackend): preparing them would download for nothing. */
const refusals = new Map<string, SimpleARError>();
/** Settles when the running prepareModel does. */
let preparing: Promise<void> = Promise.resolve();
function modelStore(): ModelStore {
  store ??= new ModelStore({
    ...openBrowserStores(),
    ...(navigator.storage?.estimate ? { estimate: () => navigator.storage.estimate() } : {}),
  });
  return store;
}

/** The backend to build on: WebGPU when asked for or offered, else the wasm EP. */
async function chooseBackend(options: LoadModelOptions): Promise<'webgpu' | 'wasm'> {
  const device = await probeDevice();
  const backend = options.backend === 'auto' || !options.backend ? (device.ok ? 'webgpu' : 'wasm') : options.backend;
  if (backend === 'webgpu' && !device.ok) throw new SimpleARError('WebGPUUnavailable', device.message, { reason: device.reason });
  return backend;
}

/**
 * `ort` whose session creations are timed into `timings.sessions`, and whose sessions' runs add
 * to `timings.runsMs` while `timing.on` (the warm-up runs of a load; WebGPU runs return once queued).
 */
function timedSessions(ort: OrtModule, timings: Pick<LoadTimings, 'sessions' | 'runsMs'>, timing: { on: boolean }): OrtModule {
  type Create = (model: Uint8Array | string, options?: InferenceSession.SessionOptions) => Promise<InferenceSession>;
  const inner = ort.InferenceSession.create.bind(ort.InferenceSession) as Create;
  const create: Create = async (model, options) => {
    const t0 = performance.now();
    const external = (options?.externalData ?? []) as readonly { data?: { byteLength?: number } }[];
    const bytes = external.reduce((sum, f) => sum + (f.data?.byteLength ?? 0), typeof model === 'string' ? 0 : model.byteLength);
    const session = await inner(model, options);
    timings.sessions.push({ bytes, ms: Math.round(performance.now() - t0) });
    const run = session.run.bind(session) as (...a: unknown[]) => Promise<InferenceSession.ReturnType>;
    (session as { run: unknown }).run = async (...a: unknown[]) => {
      if (!timing.on) return run(...a);
      const t = performance.now();
      try {
        return await run(...a);
      } finally {
        timings.runsMs += Math.round(performance.now() - t);
      }
    };
    return session;
  };
  return { Tensor: ort.Tensor, InferenceSession: { create: create as OrtModule['InferenceSession']['create'] } };
}

/** Replaces the engine with one built from `model` on `backend`. */
async function buildEngine(model: EngineModel, backend: 'webgpu' | 'wasm', options: LoadModelOptions, readMs?: number): Promise<LoadedModelInfo> {
  const t0 = performance.now();
  await engine?.dispose();
  engine = undefined;
  loadedModelId = undefined;
  const sizes = { maxLatentSide: options.maxLatentSide };
  const capture = options.graphCapture === undefined ? {} : { graphCapture: options.graphCapture };
  let activations: 'f16' | 'f32' = 'f32';
  const parts: Pick<LoadTimings, 'sessions' | 'runsMs'> = { sessions: [], runsMs: 0 };
  const timing = { on: true };
  try {
    if (backend === 'webgpu') {
      engine = await onGpu(async () => {
        const { ort, gpu: engineGpu } = await ortOnEngineDevice();
        activations = options.activations ?? (engineGpu.shaderF16 ? 'f16' : 'f32');
        return createWebGpuEngine(timedSessions(ort, parts, timing), engineGpu, model, { ...sizes, ...capture, activations });
      });
    } else {
      engine = await createCpuEngine(timedSessions(await loadOrtWeb(), parts, timing), model, { ...sizes, backend: 'wasm' });
    }
  } finally {
    timing.on = false;
  }
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

/** Reads the stored bundle into memory (every chunk's SHA-256 checked), reporting chunks read. */
async function loadStored(stored: StoredBundle, onProgress: ((p: PrepareProgress) => void) | undefined, signal: AbortSignal): Promise<EngineModel> {
  const bundle = await openModelBundle(stored.folder, { signal });
  return bundle.loadModel({ name: stored.record.name, signal, onChunk: (done, total) => onProgress?.({ phase: 'load', done, total }) });
}

const api: EngineWorkerApi = {
  getDeviceInfo: () => probeDevice(),

  async selfTest(): Promise<SelfTestReport> {
    const device = await probeDevice();
    if (!device.ok) throw new SimpleARError('WebGPUUnavailable', device.message, { reason: device.reason });
    return onGpu(async () => {
      const { ort } = await ortOnEngineDevice();
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
  },

  inspectCheckpoint: (baseUrl, parts) => inspectCheckpoint(openFolder(baseUrl), parts ? { parts } : {}),

  async loadModel(source, options = {}) {
    const backend = await chooseBackend(options);
    if (source.kind !== 'original') throw new SimpleARError('InvalidSettings', 'loadModel reads original checkpoints; use prepareModel for a bundle URL.');
    const model = await loadOriginalModel(openFolder(source.model), openFolder(source.vq), {
      weights: options.weights,
      decoderDtype: options.decoderDtype,
      name: source.model,
    });
    return buildEngine(model, backend, options);
  },

  async generate(id, request, onProgress): Promise<GenerationResult> {
    if (gpuFailure) throw gpuFailure;
    if (!engine) throw new SimpleARError('ModelFileMissing', 'No model is loaded: load one before generating.');
    const controller = new AbortController();
    running.set(id, controller);
    const current = engine;
    try {
      const run = () => current.generate(request, { signal: controller.signal, onProgress: onProgress && ((p) => void onProgress(p)) });
      const result = await (current.backend === 'webgpu' ? onGpu(run, () => controller.signal.aborted) : run());
      return Comlink.transfer(result, [result.rgba.buffer as ArrayBuffer]);
    } finally {
      running.delete(id);
    }
  },

  async cancel(id) {
    running.get(id)?.abort();
  },

  async planModel(source, options = {}) {
    const plan = await modelStore().plan(source, options);
    if (!plan.footprint) return plan;
    // Before any download: can the backend this device gets run these weights at this size?
    try {
      const backend = planBackend(plan.footprint, options, await probeDevice());
      refusals.delete(plan.modelId);
      return { ...plan, backend };
    } catch (e) {
      if (!(e instanceof SimpleARError && e.code === 'BackendUnsupported')) throw e;
      refusals.set(plan.modelId, e);
      return { ...plan, refusal: { code: 'BackendUnsupported' as const, message: e.message } };
    }
  },

  async prepareModel(id, source, options = {}, onProgress) {
    const controller = new AbortController();
    running.set(id, controller);
    const { signal } = controller;
    const report = onProgress && ((p: PrepareProgress) => void onProgress(p));
    // One preparation at a time: two at once would download the same blocks and replace
    // each other's bundle generation (and the engine holds one model anyway).
    const previous = preparing;
    let done!: () => void;
    preparing = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      signal.throwIfAborted();
      const refused = refusals.get(await modelStore().modelId(source, options));
      if (refused) throw refused;
      const backend = await chooseBackend(options);
      // The converter fits the live-preview map with ORT (on the wasm EP); on WebGPU the
      // engine's device is installed first, before ORT creates any session.
      const ort = backend === 'webgpu' ? (await onGpu(ortOnEngineDevice)).ort : await loadOrtWeb();
      const prepare = () => modelStore().prepare(source, { ...options, signal, ort, ...(report ? { onProgress: report } : {}) });
      let stored = await prepare();
      let model: EngineModel;
      const t0 = performance.now();
      try {
        model = await loadStored(stored, report, signal);
      } catch (e) {
        if (!(e instanceof BundleError)) throw e;
        // A stored chunk failed its SHA-256: forget the broken part and fetch it again, once.
        await modelStore().repair(stored.modelId, e);
        stored = await prepare();
        model = await loadStored(stored, report, signal);
      }
      const info = await buildEngine(model, backend, options, Math.round(performance.now() - t0));
      loadedModelId = stored.modelId;
      await modelStore().touch(stored.modelId);
      return { ...info, modelId: stored.modelId, fromCache: stored.fromCache };
    } finally {
      running.delete(id);
      done();
    }
  },

  listCachedModels: () => modelStore().list(),

  async deleteCachedModel(modelId) {
    if (loadedModelId === modelId) {
      await engine?.dispose();
      engine = undefined;
      loadedModelId = undefined;
    }
    await modelStore().delete(modelId);
  },

  async debugLoseDevice() {
    if (!gpu) return false;
    (await gpu).device.destroy();
    return true;
  },

  async gpuMemory() {
    if (!gpu) return null;
    const { allocations } = await gpu;
    return { liveBuffers: allocations.liveBuffers, liveBytes: allocations.liveBytes, created: allocations.count };
  },

  async decode(codes, side) {
    if (gpuFailure) throw gpuFailure;
    if (!engine) throw new SimpleARError('ModelFileMissing', 'No model is loaded: load one before decoding.');
    if (!Number.isInteger(side) || side < 1 || codes.length !== side * side) {
      throw new SimpleARError('InvalidSettings', `decode: ${codes.length} codes do not make a ${side} × ${side} latent`, { field: 'side' });
    }
    const current = engine;
    const run = async () => {
      const t0 = performance.now();
      const image = await current.decode(codes, side, side);
      return { ...image, ms: Math.round(performance.now() - t0) };
    };
    const result = await (current.backend === 'webgpu' ? onGpu(run) : run());
    return Comlink.transfer(result, [result.rgba.buffer as ArrayBuffer]);
  },
};

installErrorTransfer();
Comlink.expose(api);
