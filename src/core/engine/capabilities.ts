// What a backend can run, decided before anything is downloaded: which backend, which weights
// and activations, how much memory the runtime will hold, and a refusal (a typed error saying
// what to do instead) when the choice cannot work. Pure: the worker gives it the device's facts
// and the model's shapes (the store's plan reads them from config.json or a bundle's manifest).
import { SimpleARError } from '../base/errors.ts';
import type { DeviceFacts } from '../runtime/device.ts';
import type { LmSpec } from '../base/model-spec.ts';
import type { LmWeightFormat } from '../model/quantize.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS } from './engine.ts';

/** What the model's converted form holds, as far as memory goes. */
export interface ModelFootprint {
  lm: LmSpec;
  weights: LmWeightFormat;
  /** Parameters of the VQ decoder. */
  decoderParams: number;
}

export interface BackendRequest {
  backend?: 'auto' | 'webgpu' | 'wasm';
  /** Asked-for activations; unset: the backend's best. */
  activations?: 'f16' | 'f32';
  maxLatentSide?: number;
}

/** The plan for this device (planBackend). */
export interface BackendPlan {
  backend: 'webgpu' | 'wasm';
  weights: LmWeightFormat;
  activations: 'f16' | 'f32';
  /** Bytes the runtime holds for the weights, the KV cache at its largest and working memory. */
  runtimeBytes: number;
  /** Where the runtime's memory is bounded: wasm32's address space (the wasm EP). */
  limitBytes: number | null;
  /** One sentence: what will run where. */
  summary: string;
  /** Things that work but cost (slow, much memory), each a sentence. */
  warnings: string[];
}

/** The wasm EP's heap: a 32-bit WebAssembly memory. */
export const WASM_MEMORY_LIMIT = 4 * 2 ** 30;
/** The largest serialised ONNX model (protobuf): onnxruntime refuses bigger ones. */
export const ONNX_MODEL_LIMIT = 2 ** 31 - 1;
/** Working memory beyond weights and cache: activations, the decoder's feature maps, ORT's arenas. */
export const WORKING_MEMORY = 512 * 2 ** 20;

const FORMAT_TEXT: Record<LmWeightFormat, string> = { q4: '4-bit', q8: '8-bit', f16: 'f16', f32: 'f32' };
const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;

/** Elements of the LM's weights, split into the linear layers and the embedding/head tables. */
function lmElements(lm: LmSpec): { linear: number; tables: number; vectors: number } {
  const H = lm.hiddenSize;
  const q = lm.numHeads * lm.headDim;
  const kv = lm.numKvHeads * lm.headDim;
  const I = lm.intermediateSize;
  const linear = lm.numLayers * ((q + 2 * kv) * H + H * q + 2 * I * H + H * I);
  const tables = (lm.visualCount + lm.visualOffset + (lm.tieWordEmbeddings ? 0 : lm.visualCount)) * H;
  const vectors = lm.numLayers * (2 * H + q + 2 * kv) + H;
  return { linear, tables, vectors };
}

/**
 * Bytes of the LM's weights as the runtime holds them: quantized blocks of 32 with their scales
 * in the activation type (and the linear layers' zero points), or every float weight in the
 * activation type (the graph converts f16 weights for f32 activations).
 */
export function lmRuntimeBytes(lm: LmSpec, weights: LmWeightFormat, activations: 'f16' | 'f32'): number {
  const { linear, tables, vectors } = lmElements(lm);
  const act = activations === 'f16' ? 2 : 4;
  if (weights === 'f16' || weights === 'f32') return (linear + tables) * act + vectors * 4;
  const bits = weights === 'q4' ? 4 : 8;
  const blocks = (linear + tables) / 32;
  return ((linear + tables) * bits) / 8 + blocks * act + (linear / 32) * (bits / 8) + vectors * 4;
}

/** The KV cache at the engine's largest context (prompt + a full image), both CFG streams. */
export function kvCacheBytes(lm: LmSpec, activations: 'f16' | 'f32', maxLatentSide = MAX_LATENT_SIDE): number {
  const slots = MAX_PROMPT_TOKENS + maxLatentSide * maxLatentSide;
  return 2 * lm.numLayers * 2 * lm.numKvHeads * lm.headDim * slots * (activations === 'f16' ? 2 : 4);
}

function refuse(message: string, details: Record<string, unknown>): never {
  throw new SimpleARError('BackendUnsupported', message, details);
}

/**
 * Which backend runs `model` on this device and how, or a BackendUnsupported error that says what
 * to choose instead. `device` is the WebGPU probe (probeDevice); 'auto' means WebGPU when it is
 * there, else the CPU (wasm).
 */
export function planBackend(model: ModelFootprint, request: BackendRequest, device: DeviceFacts): BackendPlan {
  const asked = request.backend ?? 'auto';
  const backend = asked === 'auto' ? (device.ok ? 'webgpu' : 'wasm') : asked;
  const { lm, weights } = model;
  const details = { backend, weights, activations: request.activations };
  if (backend === 'webgpu') {
    if (!device.ok) refuse(`WebGPU is not available here (${device.message}). Choose the CPU backend (wasm) instead.`, details);
    if (request.activations === 'f16' && !device.features.shaderF16) {
      refuse('f16 activations need the GPU feature shader-f16, which this GPU lacks: choose f32 activations.', details);
    }
    const activations = request.activations ?? (device.features.shaderF16 ? 'f16' : 'f32');
    // The largest single weight is the text-embedding table: one GPU buffer, one binding.
    const tableBytes = (lmRuntimeBytes({ ...lm, numLayers: 0, visualCount: 0 }, weights, activations));
    const limit = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
    if (tableBytes > limit) {
      refuse(
        `With ${FORMAT_TEXT[weights]} weights the model's largest weight (${gib(tableBytes)}) exceeds this GPU's buffer limit (${gib(limit)}): choose q4 or q8 weights.`,
        { ...details, largestWeightBytes: tableBytes, limitBytes: limit },
      );
    }
    // The WebGPU engine's LM is one serialised model (no external data there yet): protobuf's 2 GB.
    const lmBytes = lmRuntimeBytes(lm, weights, activations);
    if (lmBytes > ONNX_MODEL_LIMIT) {
      refuse(
        `On WebGPU, ${FORMAT_TEXT[weights]} weights with ${activations} activations make a ${gib(lmBytes)} model, over ONNX's 2 GiB per model: choose q4 or q8 weights${device.features.shaderF16 && activations === 'f32' ? ', or f16 activations' : ''}.`,
        { ...details, lmBytes, limitBytes: ONNX_MODEL_LIMIT },
      );
    }
    const runtimeBytes = lmBytes + kvCacheBytes(lm, activations, request.maxLatentSide) + model.decoderParams * (activations === 'f16' ? 2 : 4) + WORKING_MEMORY;
    const warnings = device.adapter.isFallbackAdapter ? ['This is a software GPU (it runs on the CPU): generation will be very slow.'] : [];
    return {
      backend,
      weights,
      activations,
      runtimeBytes,
      limitBytes: null,
      summary: `Runs on your GPU (WebGPU) with ${FORMAT_TEXT[weights]} weights and ${activations} activations, about ${gib(runtimeBytes)} of GPU memory.`,
      warnings,
    };
  }
  // The wasm EP computes in f32: its CPU kernels have no f16 arithmetic to speak of.
  if (request.activations === 'f16') refuse('f16 activations are for WebGPU only: on the CPU (wasm) the engine computes in f32. Choose f32 activations.', details);
  const activations = 'f32';
  const lmBytes = lmRuntimeBytes(lm, weights, activations);
  // ORT's CPU kernels also keep a packed copy of each f32 MatMul weight (MLAS prepacking): the
  // full-size f32 LM took 3.4 GiB of wasm memory for 2.1 GiB of weights (tools/bench/wasm-full-size.ts).
  const packedBytes = weights === 'f16' || weights === 'f32' ? lmElements(lm).linear * 4 : 0;
  const runtimeBytes = lmBytes + packedBytes + kvCacheBytes(lm, activations, request.maxLatentSide) + model.decoderParams * 4 + WORKING_MEMORY;
  if (runtimeBytes > WASM_MEMORY_LIMIT) {
    refuse(
      `On the CPU (wasm) this model with ${FORMAT_TEXT[weights]} weights needs about ${gib(runtimeBytes)}, more than the ${gib(WASM_MEMORY_LIMIT)} a WebAssembly page can address: choose q4 or q8 weights.`,
      { ...details, runtimeBytes, limitBytes: WASM_MEMORY_LIMIT },
    );
  }
  const warnings: string[] = [];
  if (weights === 'f16' || weights === 'f32') {
    // The stored weights stay in the page's memory while the runtime takes its own copy.
    // (On the wasm EP float weights give faster steps than q4's MatMulNBits: tools/bench/wasm-full-size.ts.)
    warnings.push(`With ${FORMAT_TEXT[weights]} weights the CPU engine holds every weight as f32 (${gib(lmBytes)}) and needs about ${gib(runtimeBytes + lmBytes)} of memory while loading; q4 needs far less memory, at slower steps.`);
  }
  if (!device.ok) warnings.push('Without WebGPU images are made on the CPU: a 1024 px image takes minutes.');
  return {
    backend,
    weights,
    activations,
    runtimeBytes,
    limitBytes: WASM_MEMORY_LIMIT,
    summary: `Runs on the CPU (WebAssembly${device.ok ? '' : ', no WebGPU'}) with ${FORMAT_TEXT[weights]} weights and f32 activations, about ${gib(runtimeBytes)} of the ${gib(WASM_MEMORY_LIMIT)} it can use.`,
    warnings,
  };
}
