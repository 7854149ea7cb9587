// planBackend (src/core/engine/capabilities.ts): what runs where, decided before any download.
// The memory figures are checked against what the engine really builds: the initializers of the
// wasm backend's LM graph and the KV cache LmRunner allocates.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { CPU_FALLBACK, probeDevice, webGpuUnavailableStatus, type DeviceFacts } from '../../src/core/runtime/device.ts';
import { SIMPLEAR_05B, type LmSpec } from '../../src/core/base/model-spec.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';
import { collectLmWeights, type LmWeightFormat } from '../../src/core/convert/lm-weights.ts';
import { buildLmGraphWithExternalData } from '../../src/core/model/lm-graph.ts';
import { memoryReader, randomCheckpoint } from '../helpers/random-model.ts';
import { createKvCache, type TensorCtor } from '../../src/core/runtime/lm-runner.ts';
import { cpuLmGraphChoices } from '../../src/core/runtime/cpu-lm-session.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS } from '../../src/core/engine/engine.ts';
import { WASM_MEMORY_LIMIT, kvCacheBytes, lmRuntimeBytes, planBackend, type ModelFootprint } from '../../src/core/engine/capabilities.ts';

function gpu(limit: number, shaderF16 = true, fallback = false): DeviceFacts {
  return {
    ok: true,
    adapter: { vendor: 'x', architecture: 'y', device: '', description: '', isFallbackAdapter: fallback },
    features: { shaderF16, subgroups: true, timestampQuery: false, all: [] },
    limits: {
      maxBufferSize: limit,
      maxStorageBufferBindingSize: limit,
      maxStorageBuffersPerShaderStage: 10,
      maxComputeWorkgroupStorageSize: 32768,
      maxComputeInvocationsPerWorkgroup: 1024,
      maxComputeWorkgroupSizeX: 1024,
      maxComputeWorkgroupsPerDimension: 65535,
    },
    environment: { crossOriginIsolated: true, secureContext: true, hardwareConcurrency: 8 },
  };
}
const noGpu: DeviceFacts = {
  ok: false,
  code: 'WebGPUUnavailable',
  reason: 'no-adapter',
  message: 'no usable GPU adapter',
  environment: { crossOriginIsolated: true, secureContext: true, hardwareConcurrency: 8 },
};

const full = (weights: LmWeightFormat, lm: LmSpec = SIMPLEAR_05B): ModelFootprint => ({ lm, weights, decoderParams: 60e6 });
/** SimpleAR-1.5B's shapes (Qwen2.5-1.5B + the visual rows). */
const SIMPLEAR_15B: LmSpec = { ...SIMPLEAR_05B, hiddenSize: 1536, numLayers: 28, numHeads: 12, numKvHeads: 2, headDim: 128, intermediateSize: 8960 };

const refusal = (f: () => unknown): SimpleARError => {
  try {
    f();
  } catch (e) {
    if (e instanceof SimpleARError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
};

describe('planBackend', () => {
  it('without WebGPU, auto picks the CPU (wasm) for the default q4 weights, well inside wasm32’s memory, and says so', () => {
    const plan = planBackend(full('q4'), { backend: 'auto' }, noGpu);
    expect(plan.backend).toBe('wasm');
    expect(plan.activations).toBe('f32');
    expect(plan.runtimeBytes).toBeLessThan(WASM_MEMORY_LIMIT / 2);
    expect(plan.limitBytes).toBe(WASM_MEMORY_LIMIT);
    expect(plan.summary).toMatch(/^Runs on the CPU \(WebAssembly, no WebGPU\) with 4-bit weights and f32 activations, about \d\.\d GiB of the 4\.0 GiB/);
    expect(plan.warnings.join(' ')).toMatch(/Without WebGPU/);
  });

  it('with WebGPU, auto picks it, with f16 activations where the GPU has shader-f16 and f32 where not', () => {
    expect(planBackend(full('q4'), {}, gpu(2 ** 30)).activations).toBe('f16');
    const plain = planBackend(full('q4'), {}, gpu(2 ** 30, false, true));
    expect(plain).toMatchObject({ backend: 'webgpu', activations: 'f32', limitBytes: null });
    expect(plain.warnings.join(' ')).toMatch(/software GPU/);
  });

  it('refuses, with a typed error saying what to choose, what cannot work', () => {
    const f16OnCpu = refusal(() => planBackend(full('q4'), { backend: 'wasm', activations: 'f16' }, gpu(2 ** 30)));
    expect(f16OnCpu.code).toBe('BackendUnsupported');
    expect(f16OnCpu.message).toMatch(/Choose f32 activations/);
    expect(refusal(() => planBackend(full('q4'), { backend: 'webgpu' }, noGpu)).message).toMatch(/WebGPU is not available.*Choose the CPU backend/);
    expect(refusal(() => planBackend(full('q4'), { activations: 'f16' }, gpu(2 ** 30, false))).message).toMatch(/shader-f16/);
    // f32 weights: the text table alone is 151,672 × 896 × 4 bytes, past a 256 MiB binding
    const tooWide = refusal(() => planBackend(full('f32'), {}, gpu(256 * 2 ** 20)));
    expect(tooWide.message).toMatch(/exceeds this GPU's buffer limit.*choose q4 or q8/);
    expect(() => planBackend(full('q4'), {}, gpu(256 * 2 ** 20))).not.toThrow();
    // The WebGPU engine's LM is one ONNX model, its float weights in the activation type: f32
    // (2.2 GB) is over protobuf's limit, on a GPU without shader-f16 f16 weights too; in f16 they fit.
    const bigBuffers = gpu(4 * 2 ** 30);
    expect(refusal(() => planBackend(full('f32'), { activations: 'f32' }, bigBuffers)).message).toMatch(/over ONNX's 2 GiB per model: choose q4 or q8 weights, or f16 activations/);
    expect(refusal(() => planBackend(full('f16'), {}, gpu(4 * 2 ** 30, false))).message).toMatch(/over ONNX's 2 GiB per model: choose q4 or q8 weights\.$/);
    for (const w of ['f16', 'f32'] as const) expect(planBackend(full(w), {}, bigBuffers).activations).toBe('f16');
  });

  it('on the CPU the 0.5B model fits wasm32 with q4/q8 weights; f16/f32 weights (held as f32, packed once more by ORT) do not, and the refusal says to choose q4 or q8', () => {
    for (const w of ['q4', 'q8'] as const) expect(planBackend(full(w), { backend: 'wasm' }, noGpu).runtimeBytes).toBeLessThan(WASM_MEMORY_LIMIT);
    for (const w of ['f16', 'f32'] as const) {
      const e = refusal(() => planBackend(full(w), { backend: 'wasm' }, noGpu));
      expect(e.code).toBe('BackendUnsupported');
      expect(e.message).toMatch(/more than the 4\.0 GiB a WebAssembly page can address: choose q4 or q8 weights/);
    }
    // a smaller model in f32 fits, with the memory warning
    const small = planBackend(full('f32', { ...SIMPLEAR_05B, numLayers: 4 }), { backend: 'wasm' }, noGpu);
    expect(small.warnings.some((x) => /holds every weight as f32/.test(x))).toBe(true);
    expect(planBackend(full('q4', SIMPLEAR_15B), { backend: 'wasm' }, noGpu).backend).toBe('wasm');
  });
});

describe('the memory figures are what the engine allocates', () => {
  // Block-aligned widths, so the quantized layout has no padding the estimate would leave out.
  const spec: LmSpec = { ...SIMPLEAR_05B, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, vocabSize: 160 + 96, visualOffset: 160, visualCount: 96 };

  for (const w of ['q4', 'q8', 'f16', 'f32'] as const) {
    it(`${w}: lmRuntimeBytes = the bytes of the wasm graph's weight initializers`, async () => {
      const weights = await collectLmWeights(memoryReader(spec, randomCheckpoint(spec, 3)), spec, { weights: w });
      const { quantizedLookup } = cpuLmGraphChoices('wasm');
      const built = buildLmGraphWithExternalData(spec, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64, kvCache: 'read-only', quantizedLookup }, Infinity);
      const inits = onnxProto.onnx.ModelProto.decode(built.model).graph!.initializer!;
      // the weights by their converted names (graph constants, rotary tables and the lookup's
      // byte table are not weights)
      const isWeight = (name: string) => /^(layers\.|final_norm|head|embed\.)/.test(name);
      const bytes = inits.filter((t) => isWeight(t.name!)).reduce((a, t) => a + t.rawData!.byteLength, 0);
      expect(lmRuntimeBytes(spec, w, 'f32')).toBe(bytes);
    });
  }

  it("kvCacheBytes = LmRunner's cache at the engine's capacity (both CFG rows)", () => {
    const capacity = MAX_PROMPT_TOKENS + MAX_LATENT_SIDE * MAX_LATENT_SIDE;
    const cache = createKvCache(ort.Tensor as unknown as TensorCtor, spec, 2, capacity, 'float32', true);
    const bytes = Object.values(cache.tensors).reduce((a, t) => a + (t.data as Float32Array).byteLength, 0);
    expect(kvCacheBytes(spec, 'f32')).toBe(bytes);
  });
});

describe('one message about what a device without WebGPU can do', () => {
  it('the status line and every reason the device panel gives say the CPU still makes images, in the same words', async () => {
    const secure = { isSecureContext: true, crossOriginIsolated: true, hardwareConcurrency: 4 };
    const none = async () => null;
    const failing = async () => {
      throw new Error('boom');
    };
    const gpuReturning = (requestAdapter: () => Promise<null>) => ({ requestAdapter }) as unknown as GPU;
    const cases = await Promise.all([
      probeDevice({ ...secure, gpu: undefined }),
      probeDevice({ isSecureContext: false, gpu: undefined }),
      probeDevice({ ...secure, gpu: gpuReturning(none) }),
      probeDevice({ ...secure, gpu: gpuReturning(failing) }),
    ]);
    expect(cases.map((c) => (c.ok ? 'ok' : c.reason))).toEqual(['no-api', 'insecure-context', 'no-adapter', 'adapter-request-failed']);
    for (const c of cases) {
      if (c.ok) continue;
      expect(c.message).toContain(CPU_FALLBACK);
      expect(c.message).not.toMatch(/needs WebGPU|requires WebGPU/);
    }
    expect(webGpuUnavailableStatus()).toContain(CPU_FALLBACK);
    // …and the plan the model panel shows says the same: the CPU, no WebGPU
    expect(planBackend(full('q4'), {}, cases[2]!).summary).toMatch(/^Runs on the CPU \(WebAssembly, no WebGPU\)/);
  });
});
