// An engine on an ONNX Runtime CPU backend: onnxruntime-node (CLI, tests, benchmarks) or the
// wasm EP of onnxruntime-web (browsers without WebGPU).
import { CpuTokenLoop } from './cpu-loop.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS, SimpleAREngine } from './engine.ts';
import { decoderGraphBytes, lmGraphBytes, type Activations, type EngineModel } from './model.ts';
import type { InferenceSession, OrtModule } from './ort.ts';
import type { NamedTensor } from '../model-spec.ts';

export interface CpuEngineOptions {
  backend?: 'cpu' | 'wasm';
  maxPromptTokens?: number;
  maxLatentSide?: number;
  /** Slots by which the KV cache grows with the context (session-io.ts KV_CACHE_CHUNK by
   * default); 0: the whole capacity (prompt + image) allocated up front. */
  kvCacheChunk?: number;
  /** LM activations and KV cache (the decoder stays f32). Default: cpuActivations(). */
  activations?: Activations;
  /** MatMulNBits accuracy_level of the LM's quantized weights. Default: cpuAccuracyLevel(). */
  accuracyLevel?: 0 | 4;
  sessionOptions?: InferenceSession.SessionOptions;
}

/**
 * The LM's activations on a CPU backend: f16 on onnxruntime-node for quantized (q4/q8) weights,
 * f32 otherwise. f16 halves the KV cache, and onnxruntime-node copies the whole cache after
 * every run: full-size steps are 1.1–1.25× faster (ORT's kernels take about as long as in f32),
 * and the logits move far less than q4 quantization moves them. f32 weights keep f32 (their
 * tokens match the PyTorch reference exactly); the wasm EP was not measured, so it keeps f32.
 */
export function cpuActivations(lmWeights: ReadonlyMap<string, NamedTensor>, backend: 'cpu' | 'wasm'): Activations {
  return backend === 'cpu' && isQuantized(lmWeights) ? 'f16' : 'f32';
}

/**
 * MatMulNBits' accuracy_level on a CPU backend: 4 on onnxruntime-node for quantized weights, so
 * the kernel quantizes each block of activations to int8 and uses integer dot products (as
 * llama.cpp does for its 4-bit types on CPUs): about 1.6× faster full-size steps than level 0
 * (`npm run bench`), for a change of the logits of the same order as the 4-bit weights' own.
 * f32/f16 weights have no MatMulNBits; the wasm EP was not measured, so it keeps level 0.
 */
export function cpuAccuracyLevel(lmWeights: ReadonlyMap<string, NamedTensor>, backend: 'cpu' | 'wasm'): 0 | 4 {
  return backend === 'cpu' && isQuantized(lmWeights) ? 4 : 0;
}

/** q4/q8 weights (MatMulNBits), as convert-weights.ts writes them. */
function isQuantized(lmWeights: ReadonlyMap<string, NamedTensor>): boolean {
  for (const t of lmWeights.values()) if (t.name.endsWith('.q') && t.type === 'uint8') return true;
  return false;
}

export async function createCpuEngine(ort: OrtModule, model: EngineModel, options: CpuEngineOptions = {}): Promise<SimpleAREngine> {
  const backend = options.backend ?? 'cpu';
  const maxPromptTokens = options.maxPromptTokens ?? MAX_PROMPT_TOKENS;
  const maxLatentSide = options.maxLatentSide ?? MAX_LATENT_SIDE;
  const capacity = maxPromptTokens + maxLatentSide * maxLatentSide;
  const sessionOptions: InferenceSession.SessionOptions = {
    executionProviders: [backend === 'wasm' ? 'wasm' : 'cpu'],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    ...options.sessionOptions,
  };
  const activations = options.activations ?? cpuActivations(model.lmWeights, backend);
  const accuracyLevel = options.accuracyLevel ?? cpuAccuracyLevel(model.lmWeights, backend);
  const lm = await ort.InferenceSession.create(lmGraphBytes(model, activations, capacity, { accuracyLevel }), sessionOptions);
  const decoder = await ort.InferenceSession.create(decoderGraphBytes(model, 'f32'), sessionOptions);
  // onnxruntime-node writes into pre-allocated outputs (the cache in place); the wasm EP ignores
  // them and returns fresh tensors, which the runner adopts. `capacity` is the most the cache
  // may grow to: it holds only what the generation has reached (onnxruntime-node copies every
  // output after each run, so each step costs in proportion to the cache's size).
  const loop = new CpuTokenLoop(ort, lm, model.lm, capacity, {
    preallocateOutputs: backend === 'cpu',
    kvCacheChunk: options.kvCacheChunk,
    kvDtype: activations === 'f16' ? 'float16' : 'float32',
  });
  return new SimpleAREngine({ backend, modelName: model.name, lm: model.lm, tokenizer: model.tokenizer, loop, ort, decoder, maxPromptTokens, maxLatentSide });
}
