// The engine worker: exposes the engine API over Comlink, nothing else. All work is in
// src/core; this file wires it to the worker's globals (navigator.gpu, ORT Web).
import * as Comlink from 'comlink';
import { probeDevice } from '../src/core/device.ts';
import { SimpleARError } from '../src/core/errors.ts';
import { openFolder } from '../src/core/formats/byte-source.ts';
import { inspectCheckpoint } from '../src/core/formats/inspect-checkpoint.ts';
import { maxAbsDiff, referenceSelfTest, runSelfTest } from '../src/core/runtime/self-test-graph.ts';
import { loadOriginalModel } from '../src/core/engine/load-original.ts';
import { createWebGpuEngine } from '../src/core/engine/create-webgpu.ts';
import { createCpuEngine } from '../src/core/engine/create-cpu.ts';
import { requestEngineDevice, type EngineDevice } from '../src/core/engine/webgpu-device.ts';
import type { Engine, GenerationResult } from '../src/core/engine/types.ts';
import { installErrorTransfer } from '../src/client/error-transfer.ts';
import type { EngineWorkerApi, SelfTestReport } from '../src/client/protocol.ts';
import { loadOrtWeb, type OrtWeb } from './ort-web.ts';

let gpu: Promise<EngineDevice> | undefined;

/** ORT with the engine's own GPUDevice installed before any session exists. */
async function ortOnEngineDevice(): Promise<{ ort: OrtWeb; gpu: EngineDevice }> {
  const ort = await loadOrtWeb();
  gpu ??= requestEngineDevice().then((d) => {
    ort.env.webgpu.device = d.device;
    return d;
  });
  return { ort, gpu: await gpu };
}

let engine: Engine | undefined;
const running = new Map<number, AbortController>();

const api: EngineWorkerApi = {
  getDeviceInfo: () => probeDevice(),

  async selfTest(): Promise<SelfTestReport> {
    const device = await probeDevice();
    if (!device.ok) throw new SimpleARError('WebGPUUnavailable', device.message, { reason: device.reason });
    const { ort } = await ortOnEngineDevice();
    const result = await runSelfTest(ort, { executionProviders: ['webgpu'], strict: true });
    const reference = referenceSelfTest();
    return {
      ...result,
      ortVersion: ort.env.versions.web ?? 'unknown',
      executionProvider: 'webgpu',
      numThreads: ort.env.wasm.numThreads ?? 1,
      maxAbsDiffFromReference: Math.max(
        maxAbsDiff(result.outputs.y.data, reference.y),
        maxAbsDiff(result.outputs.residual.data, reference.residual),
      ),
    };
  },

  inspectCheckpoint: (baseUrl, parts) => inspectCheckpoint(openFolder(baseUrl), parts ? { parts } : {}),

  async loadModel(source, options = {}) {
    const device = await probeDevice();
    const backend = options.backend === 'auto' || !options.backend ? (device.ok ? 'webgpu' : 'wasm') : options.backend;
    if (backend === 'webgpu' && !device.ok) throw new SimpleARError('WebGPUUnavailable', device.message, { reason: device.reason });
    if (source.kind !== 'original') throw new SimpleARError('InvalidSettings', 'loadModel reads original checkpoints; use prepareModel for a bundle URL.');
    const model = await loadOriginalModel(openFolder(source.model), openFolder(source.vq), {
      weights: options.weights,
      decoderDtype: options.decoderDtype,
      name: source.model,
    });
    await engine?.dispose();
    engine = undefined;
    const sizes = { maxLatentSide: options.maxLatentSide };
    let activations: 'f16' | 'f32' = 'f32';
    if (backend === 'webgpu') {
      const { ort, gpu: engineGpu } = await ortOnEngineDevice();
      activations = options.activations ?? (engineGpu.shaderF16 ? 'f16' : 'f32');
      engine = await createWebGpuEngine(ort, engineGpu, model, { ...sizes, activations });
    } else {
      engine = await createCpuEngine(await loadOrtWeb(), model, { ...sizes, backend: 'wasm' });
    }
    return {
      name: model.name,
      backend: engine.backend,
      activations,
      hiddenSize: model.lm.hiddenSize,
      numLayers: model.lm.numLayers,
      visualOffset: model.lm.visualOffset,
      ...(model.preview ? { preview: model.preview } : {}),
    };
  },

  async generate(id, request, onProgress): Promise<GenerationResult> {
    if (!engine) throw new SimpleARError('ModelFileMissing', 'No model is loaded: load one before generating.');
    const controller = new AbortController();
    running.set(id, controller);
    try {
      const result = await engine.generate(request, { signal: controller.signal, onProgress: onProgress && ((p) => void onProgress(p)) });
      return Comlink.transfer(result, [result.rgba.buffer as ArrayBuffer]);
    } finally {
      running.delete(id);
    }
  },

  async cancel(id) {
    running.get(id)?.abort();
  },

  // The model store (download → IndexedDB → engine) is being built: see issue 5.
  planModel: () => Promise.reject(new Error('planModel is not implemented yet')),
  prepareModel: () => Promise.reject(new Error('prepareModel is not implemented yet')),
  listCachedModels: async () => [],
  deleteCachedModel: () => Promise.reject(new Error('deleteCachedModel is not implemented yet')),

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
};

installErrorTransfer();
Comlink.expose(api);
