// An engine on ONNX Runtime Web's native WebGPU EP with the GPU-resident token loop.
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS, SimpleAREngine, type BatchMemory } from './engine.ts';
import type { LmSpec } from '../base/model-spec.ts';
import { checkWeightsHeld, lmGraphBytes, releaseWeights, type Activations, type EngineModel, type WeightRelease } from '../runtime/model.ts';
import { DecoderRunner } from '../runtime/decoder-runner.ts';
import type { OrtModule } from '../base/ort.ts';
import type { EngineDevice } from './webgpu-device.ts';
import { WebGpuTokenLoop } from './webgpu-loop.ts';

export interface WebGpuEngineOptions extends WeightRelease {
  /** f16 where the adapter has shader-f16, else f32. */
  activations?: Activations;
  maxPromptTokens?: number;
  maxLatentSide?: number;
  /**
   * Record the decode step's GPU work once and replay it (ORT's enableGraphCapture); the engine
   * falls back to a session without capture when it does not work (stats say). Default: on for a
   * hardware adapter; off for a software one (SwiftShader), where capture saves nothing worth
   * having (the GPU work itself runs on the CPU) and costs a lot: a captured graph has one shape,
   * so the prompts go in one token per run, and a full-size run there takes tens of seconds,
   * almost all of it the 64,000-row visual head (measured: the same graph with a 64-row head
   * runs ~6× faster), against one run for a whole prompt chunk without capture.
   */
  graphCapture?: boolean;
  /** KV cache bytes a batch of N images may take in all (BatchMemory); default WEBGPU_BATCH_MEMORY_BYTES. */
  batchMemoryBytes?: number;
}

/**
 * The KV cache a batch of N images may take on WebGPU, all its streams together: 1 GiB. WebGPU
 * tells a page nothing of the GPU's free memory, and a batch's cache comes on top of the model
 * (about 0.5 GB of q4 weights, twice that with graph capture, whose batches run on a second
 * session) and the decoder; 1 GiB keeps the whole within the ~2 GB an integrated or mobile GPU
 * commonly lets one tab have, and still holds 8 images at 1024 px with f16 activations (≤ 0.85
 * GiB at SimpleAR-0.5B's 24 layers × 2 KV heads × 64, even with a 512-token prompt; f32: 4
 * images). The same figure as the wasm engine's budget.
 */
export const WEBGPU_BATCH_MEMORY_BYTES = 2 ** 30;

/**
 * The batch budget of a device: a batch holds its cache in one buffer per layer and K/V, each
 * of which must fit the device's largest buffer and storage binding, and all of them `totalBytes`.
 */
export function webgpuBatchMemory(
  limits: Pick<GPUSupportedLimits, 'maxBufferSize' | 'maxStorageBufferBindingSize'>,
  lm: Pick<LmSpec, 'numLayers'>,
  activations: Activations,
  totalBytes = WEBGPU_BATCH_MEMORY_BYTES,
): BatchMemory {
  // The engine checks the total of all layers' K and V: one buffer each, equal in size.
  const perBuffer = lm.numLayers * 2 * Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  const bytesPerValue = activations === 'f16' ? 2 : 4;
  if (perBuffer < totalBytes) return { budgetBytes: perBuffer, bytesPerValue, limit: "this GPU's largest buffer" };
  return { budgetBytes: totalBytes, bytesPerValue, limit: 'the WebGPU batch budget' };
}

/** `ort` must be onnxruntime-web/webgpu whose env.webgpu.device is (or will be) `gpu.device`. */
export async function createWebGpuEngine(
  ort: OrtModule,
  gpu: EngineDevice,
  model: EngineModel,
  options: WebGpuEngineOptions = {},
): Promise<SimpleAREngine> {
  checkWeightsHeld(model);
  const activations = options.activations ?? (gpu.shaderF16 ? 'f16' : 'f32');
  const maxPromptTokens = options.maxPromptTokens ?? MAX_PROMPT_TOKENS;
  const maxLatentSide = options.maxLatentSide ?? MAX_LATENT_SIDE;
  const maxSteps = maxLatentSide * maxLatentSide;
  const capacity = maxPromptTokens + maxSteps;
  // The native WebGPU EP takes the device per session; env.webgpu.device alone is not enough.
  const webgpu = { name: 'webgpu', device: gpu.device } as const;
  const sessionOptions = {
    executionProviders: [webgpu],
    graphOptimizationLevel: 'all' as const,
    preferredOutputLocation: 'gpu-buffer' as const,
    // ORT warns that shape ops run on the CPU: by design, and not the user's concern.
    logSeverityLevel: 3 as const,
  };
  const openPlain = () => ort.InferenceSession.create(lmGraphBytes(model, activations, capacity), sessionOptions);
  const loopOptions = { capacity, activations, maxSteps };
  const openLoop = async (graphCapture: boolean) => {
    const session = graphCapture
      ? await ort.InferenceSession.create(lmGraphBytes(model, activations, capacity, { graphCapture }), { ...sessionOptions, enableGraphCapture: true })
      : await openPlain();
    // Only a capturing loop opens a second session (for SJD and batches), so only it keeps the
    // model's weights in memory for that; otherwise they can go once the sessions have them.
    return new WebGpuTokenLoop(ort, gpu.device, session, model.lm, gpu.allocations, { ...loopOptions, graphCapture, ...(graphCapture ? { openUncapturedSession: openPlain } : {}) }).init();
  };
  // Graph capture when ORT manages it here (its first runs are checked); otherwise, or when it
  // fails, the same loop on a session without it. Only with a quantized head: the plain head's
  // output reshape puts a shape op on the CPU, which capture refuses (graph-capture-probe.ts).
  let loop: WebGpuTokenLoop | undefined;
  if ((options.graphCapture ?? !gpu.adapterInfo.isFallbackAdapter) && model.lmWeights.has('head.q')) {
    loop = await openLoop(true).catch(() => undefined);
    if (loop && !(await loop.warmUpCapture())) {
      await loop.dispose();
      loop = undefined;
    }
  }
  loop ??= await openLoop(false);
  if (options.releaseWeights && !loop.captured) releaseWeights(model.lmWeights);
  // f16 decodes check their activations and rerun in f32 when they overflow; a largest size whose
  // activations exceed one GPU buffer decodes in bands of rows (decoder-runner.ts).
  const decoder = await DecoderRunner.create(ort, model.decoder, model.decoderWeights, {
    activations: activations === 'f16' ? 'float16' : 'float32',
    session: { executionProviders: [webgpu], graphOptimizationLevel: 'all', logSeverityLevel: 3 },
    maxActivationBytes: Math.min(gpu.device.limits.maxStorageBufferBindingSize, gpu.device.limits.maxBufferSize),
    maxSide: maxLatentSide,
    ...(options.releaseWeights ? { releaseWeights: true } : {}),
  });
  // Session creation queues the weight uploads: ready means they are on the GPU.
  await gpu.device.queue.onSubmittedWorkDone();
  return new SimpleAREngine({
    backend: 'webgpu',
    modelName: model.name,
    lm: model.lm,
    tokenizer: model.tokenizer,
    loop,
    ort,
    decoder,
    maxPromptTokens,
    maxLatentSide,
    repetitionPenalty: model.generation?.repetitionPenalty ?? 1,
    batchMemory: webgpuBatchMemory(gpu.device.limits, model.lm, activations, options.batchMemoryBytes),
  });
}
