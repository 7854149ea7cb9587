// An engine on an ONNX Runtime CPU backend: onnxruntime-node (CLI, tests, benchmarks) or the
// wasm EP of onnxruntime-web (browsers without WebGPU).
import { CpuTokenLoop } from './cpu-loop.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS, SimpleAREngine } from './engine.ts';
import { decoderGraphBytes, lmGraphBytes, type EngineModel } from './model.ts';
import type { InferenceSession, OrtModule } from './ort.ts';

export interface CpuEngineOptions {
  backend?: 'cpu' | 'wasm';
  maxPromptTokens?: number;
  maxLatentSide?: number;
  /** Slots by which the KV cache grows with the context (session-io.ts KV_CACHE_CHUNK by
   * default); 0: the whole capacity (prompt + image) allocated up front. */
  kvCacheChunk?: number;
  sessionOptions?: InferenceSession.SessionOptions;
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
  const lm = await ort.InferenceSession.create(lmGraphBytes(model, 'f32', capacity), sessionOptions);
  const decoder = await ort.InferenceSession.create(decoderGraphBytes(model, 'f32'), sessionOptions);
  // onnxruntime-node writes into pre-allocated outputs (the cache in place); the wasm EP ignores
  // them and returns fresh tensors, which the runner adopts. `capacity` is the most the cache
  // may grow to: it holds only what the generation has reached (onnxruntime-node copies every
  // output after each run, so each step costs in proportion to the cache's size).
  const loop = new CpuTokenLoop(ort, lm, model.lm, capacity, { preallocateOutputs: backend === 'cpu', kvCacheChunk: options.kvCacheChunk });
  return new SimpleAREngine({ backend, modelName: model.name, lm: model.lm, tokenizer: model.tokenizer, loop, ort, decoder, maxPromptTokens, maxLatentSide });
}
