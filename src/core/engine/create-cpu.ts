// An engine on an ONNX Runtime CPU backend: onnxruntime-node (CLI, tests, benchmarks) or the
// wasm EP of onnxruntime-web (browsers without WebGPU).
import { CpuTokenLoop } from './cpu-loop.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS, SimpleAREngine, type BatchMemory } from './engine.ts';
import { checkWeightsHeld, releaseWeights, type Activations, type EngineModel, type WeightRelease } from '../runtime/model.ts';
import { cpuLmGraphChoices, createLmSession } from '../runtime/cpu-lm-session.ts';
import { DecoderRunner } from '../runtime/decoder-runner.ts';
import type { ModelFiles } from '../runtime/model-files.ts';
import type { InferenceSession, OrtModule } from '../base/ort.ts';
import type { NamedTensor } from '../base/model-spec.ts';
import type { KvCacheMode } from '../model/lm-graph.ts';

export interface CpuEngineOptions extends WeightRelease {
  backend?: 'cpu' | 'wasm';
  maxPromptTokens?: number;
  maxLatentSide?: number;
  /** Slots by which the KV cache grows with the context (runtime/lm-runner.ts KV_CACHE_CHUNK by
   * default); 0: the whole capacity (prompt + image) allocated up front. */
  kvCacheChunk?: number;
  /** LM activations and KV cache (the decoder: decoderActivations). Default f32: on onnxruntime-node's
   * read-only cache, f16 steps were slower (its CPU kernels compute f16 through f32). */
  activations?: Activations;
  /** VQ decoder activations. Default f32; f16 checks them and reruns in f32 on an overflow. */
  decoderActivations?: Activations;
  /** Largest decoder activation (bytes) before it decodes in bands of rows; 0 = whole.
   * Default CPU_DECODER_BAND_BYTES (onnxruntime-node), WASM_DECODER_BAND_BYTES (the wasm EP). */
  decoderBandBytes?: number;
  /**
   * One image only (the CLI): the LM's session is released before the decoder's is opened, so
   * the peak memory is the larger of the two, not their sum (engine.ts EngineParts.oneShot).
   */
  oneShot?: boolean;
  /**
   * Open the sessions from files this writes (onnxruntime-node maps their weights instead of
   * copying them: model-files.ts). The CLI passes one; without it, from bytes in memory.
   */
  files?: ModelFiles;
  /** The LM graph's KV cache. Default CPU_KV_CACHE. */
  kvCache?: KvCacheMode;
  /** MatMulNBits accuracy_level of the LM's quantized weights. Default: cpuAccuracyLevel(). */
  accuracyLevel?: 0 | 4;
  sessionOptions?: InferenceSession.SessionOptions;
  /**
   * Bytes the KV cache of a batched pass (several images, 2 per image streams) may take; a count
   * that needs more is refused (engine.ts BatchMemory). Default: WASM_BATCH_MEMORY_BYTES on the
   * wasm EP; on onnxruntime-node none (its host passes a share of the free memory).
   */
  batchMemoryBytes?: number;
}

/**
 * The wasm EP's KV-cache budget for a batched pass: its heap is one 32-bit address space (4 GiB)
 * that also holds the weights, and each run copies its inputs (the whole cache) into it, so the
 * cache may take a quarter. At full size a 1024² image's pair needs ≈ 203 MB (f32): five fit.
 */
export const WASM_BATCH_MEMORY_BYTES = 2 ** 30;

/**
 * The KV cache of the LM graph on the CPU backends (model/lm-graph.ts LmGraphOptions.kvCache):
 * 'read-only'. onnxruntime-node's binding copies every output it returns into a fresh buffer, so
 * a cache returned as GroupQueryAttention's present_* costs a copy of the whole cache per step;
 * a read-only cache is an input (wrapped, not copied) and each step returns its own entries:
 * full-size q4 steps 2.2–2.4× faster (`npm run bench`). The wasm EP copies the inputs into its heap
 * either way; its full-size q4 steps were ~8% faster read-only too (onnxruntime-web's wasm EP in
 * Node, one thread, context 2071/2082: 1.32–1.43 s against 1.44–1.51 s per step).
 */
export const CPU_KV_CACHE: KvCacheMode = 'read-only';

/**
 * MatMulNBits' accuracy_level on a CPU backend: 4 on onnxruntime-node for quantized weights, so
 * the kernel quantizes each block of activations to int8 and uses integer dot products (as
 * llama.cpp does for its 4-bit types on CPUs): about 2.5× faster full-size steps than level 0
 * (`npm run bench`), for a change of the logits well below the 4-bit weights' own. f32/f16
 * weights have no MatMulNBits; on the wasm EP level 4 was no faster (onnxruntime-web in Node, one
 * thread: 1.34–1.40 s against 1.33–1.34 s per full-size step), so it keeps level 0.
 */
export function cpuAccuracyLevel(lmWeights: ReadonlyMap<string, NamedTensor>, backend: 'cpu' | 'wasm'): 0 | 4 {
  return backend === 'cpu' && isQuantized(lmWeights) ? 4 : 0;
}

/** q4/q8 weights (MatMulNBits), as convert/lm-weights.ts writes them. */
function isQuantized(lmWeights: ReadonlyMap<string, NamedTensor>): boolean {
  for (const t of lmWeights.values()) if (t.name.endsWith('.q') && t.type === 'uint8') return true;
  return false;
}

/**
 * The CPU decoder's activation budget before it decodes in bands: 0, whole. Measured with the CLI
 * at 1024² (full-width decoder, weights mapped from files, shared 2-core VM): whole 1.30 GB peak
 * RSS; bands of 8 MiB 0.96 GB but twice the time; 32 MiB 1.51 GB (the bands' buffers come and go
 * through malloc, which keeps them). The whole decode stays under the CLI's 1.5 GB once the LM's
 * session is gone (oneShot), so speed wins; `decode --band-mib` and decoderBandBytes choose.
 */
export const CPU_DECODER_BAND_BYTES = 0;

/**
 * The same budget on the wasm EP (the page without WebGPU): bands of 32 MiB. Its heap never gives
 * memory back, so a whole 1024² decode would leave it gigabytes larger for the rest of the page's
 * life; and in bands it is faster there too (onnxruntime-web's wasm EP in Node, one thread,
 * full-width decoder: 512² whole 50.8 s, in 32 MiB bands 27.9 s; 1024² in bands 92 s with the
 * heap at 444 MB, whole ≈ 1 GB more).
 */
export const WASM_DECODER_BAND_BYTES = 32 * 2 ** 20;

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
  checkWeightsHeld(model);
  const activations = options.activations ?? 'f32';
  const accuracyLevel = options.accuracyLevel ?? cpuAccuracyLevel(model.lmWeights, backend);
  const kvCache = options.kvCache ?? CPU_KV_CACHE;
  const lm = await createLmSession(ort, model, activations, capacity, { accuracyLevel, kvCache, ...cpuLmGraphChoices(backend) }, sessionOptions, options.files);
  if (options.releaseWeights) releaseWeights(model.lmWeights);
  // The closure holds the decoder's part of the model only: the LM weights can go once the LM's
  // session has them.
  const { decoder: decoderSpec, decoderWeights } = model;
  const bandBytes = options.decoderBandBytes ?? (backend === 'wasm' ? WASM_DECODER_BAND_BYTES : CPU_DECODER_BAND_BYTES);
  const openDecoder = () =>
    DecoderRunner.create(ort, decoderSpec, decoderWeights, {
      activations: options.decoderActivations === 'f16' ? 'float16' : 'float32',
      session: sessionOptions,
      ...(options.files ? { files: options.files } : {}),
      ...(bandBytes > 0 ? { maxActivationBytes: bandBytes, maxSide: maxLatentSide } : {}),
      ...(options.releaseWeights ? { releaseWeights: true } : {}),
    });
  const decoder = options.oneShot ? openDecoder : await openDecoder();
  // `capacity` is the most the cache may grow to: it holds only what the generation has reached
  // (attention reads all of it, and the wasm EP copies it in every run). An in-place cache (an
  // option, for comparison) on the wasm EP: it ignores pre-allocated outputs and returns fresh
  // tensors, which the runner adopts.
  const loop = new CpuTokenLoop(ort, lm, model.lm, {
    capacity,
    growBy: options.kvCacheChunk,
    dtype: activations === 'f16' ? 'float16' : 'float32',
    preallocateOutputs: backend === 'cpu',
    kvCache,
  });
  return new SimpleAREngine({
    backend,
    modelName: model.name,
    lm: model.lm,
    tokenizer: model.tokenizer,
    loop,
    ort,
    decoder,
    maxPromptTokens,
    maxLatentSide,
    oneShot: options.oneShot === true,
    repetitionPenalty: model.generation?.repetitionPenalty ?? 1,
    ...batchMemory(options.batchMemoryBytes ?? (backend === 'wasm' ? WASM_BATCH_MEMORY_BYTES : undefined), activations, backend),
  });
}

function batchMemory(budgetBytes: number | undefined, activations: Activations, backend: 'cpu' | 'wasm'): { batchMemory?: BatchMemory } {
  if (budgetBytes === undefined) return {};
  const limit = backend === 'wasm' ? "the wasm engine's memory" : 'the free memory';
  return { batchMemory: { budgetBytes, bytesPerValue: activations === 'f16' ? 2 : 4, limit } };
}
