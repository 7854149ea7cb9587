// A tiny f32 graph that exercises the op families the LM step graph is built from:
//   SkipSimplifiedLayerNormalization (com.microsoft) → MatMul → SiLU → MatMulNBits 4-bit
// Node (onnxruntime-node, CPU EP) and the browser worker (onnxruntime-web, WebGPU EP) run
// the same bytes on the same inputs; tests compare the two. f32 only: software adapters
// (SwiftShader) have no shader-f16.
import type { InferenceSession, Tensor } from 'onnxruntime-web';
import { GraphBuilder, float } from '../base/onnx-builder.ts';

/** Sizes of the self-test graph: batch, sequence, hidden, MLP width, 4-bit block. */
export const SELF_TEST_DIMS = { batch: 2, seq: 4, hidden: 16, inner: 32, blockSize: 16 } as const;

const EPSILON = 1e-6;
const SEED = 20240611;

/** Deterministic uniform floats in [-1, 1): the same on every platform. */
export function seededFloats(seed: number, count: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** Weights of the self-test graph, as plain arrays so a reference can recompute it. */
export interface SelfTestWeights {
  /** [hidden] RMSNorm scale. */
  gamma: Float32Array;
  /** [hidden, inner] row-major. */
  up: Float32Array;
  /** [hidden(N), inner(K)] 4-bit codes 0..15, one per byte (unpacked). */
  downCodes: Uint8Array;
  /** [hidden(N), inner/blockSize] per-block scales; zero point is 8. */
  downScales: Float32Array;
}

export interface SelfTestInputs {
  /** [batch, seq, hidden] */
  x: Float32Array;
  /** [batch, seq, hidden] */
  skip: Float32Array;
}

export function selfTestWeights(): SelfTestWeights {
  const { hidden, inner, blockSize } = SELF_TEST_DIMS;
  const gamma = seededFloats(SEED + 1, hidden).map((v) => 1 + 0.5 * v);
  const up = seededFloats(SEED + 2, hidden * inner).map((v) => v * 0.4);
  const downCodes = Uint8Array.from(seededFloats(SEED + 3, hidden * inner), (v) => Math.floor((v + 1) * 8) & 15);
  const downScales = seededFloats(SEED + 4, hidden * (inner / blockSize)).map((v) => 0.02 + 0.01 * v);
  return { gamma, up, downCodes, downScales };
}

export function selfTestInputs(): SelfTestInputs {
  const { batch, seq, hidden } = SELF_TEST_DIMS;
  const n = batch * seq * hidden;
  return { x: seededFloats(SEED + 5, n), skip: seededFloats(SEED + 6, n).map((v) => v * 0.5) };
}

const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Packs [N, K] 4-bit codes as MatMulNBits wants them: [N, K/block, block/2], low nibble first. */
function packNibbles(codes: Uint8Array, n: number, k: number): Uint8Array {
  const packed = new Uint8Array((n * k) / 2);
  for (let i = 0; i < packed.length; i++) packed[i] = (codes[2 * i]! & 15) | ((codes[2 * i + 1]! & 15) << 4);
  return packed;
}

/** The serialized ONNX model (opset 21 + com.microsoft). */
export function buildSelfTestModel(weights: SelfTestWeights = selfTestWeights()): Uint8Array {
  const { batch, seq, hidden, inner, blockSize } = SELF_TEST_DIMS;
  const g = new GraphBuilder('self_test');
  const x = g.input('x', 'float32', [batch, seq, hidden]);
  const skip = g.input('skip', 'float32', [batch, seq, hidden]);
  const gamma = g.initializer('gamma', { type: 'float32', dims: [hidden], raw: f32Bytes(weights.gamma) });
  const up = g.initializer('up', { type: 'float32', dims: [hidden, inner], raw: f32Bytes(weights.up) });
  const blocks = inner / blockSize;
  const downQ = g.initializer('down_q', {
    type: 'uint8',
    dims: [hidden, blocks, blockSize / 2],
    raw: packNibbles(weights.downCodes, hidden, inner),
  });
  const downScales = g.initializer('down_scales', {
    type: 'float32',
    dims: [hidden * blocks],
    raw: f32Bytes(weights.downScales),
  });

  // residual = x + skip; normed = residual / rms(residual) * gamma           [B, S, H]
  const [normed] = g.ms('SkipSimplifiedLayerNormalization', [x, skip, gamma], { epsilon: float(EPSILON) }, [
    g.fresh('normed'),
    '',
    '',
    'residual',
  ]);
  // h = silu(normed @ up)                                                     [B, S, I]
  const h = g.op1('MatMul', [normed!, up]);
  const act = g.op1('Mul', [h, g.op1('Sigmoid', [h])]);
  // y = act @ dequant(down)ᵀ, 4-bit blocks with zero point 8                  [B, S, H]
  g.ms('MatMulNBits', [act, downQ, downScales], { K: inner, N: hidden, bits: 4, block_size: blockSize }, ['y']);

  g.output('y', 'float32', [batch, seq, hidden]);
  g.output('residual', 'float32', [batch, seq, hidden]);
  return g.toBytes();
}

/** Just the parts of an ORT module (onnxruntime-web or -node) the self-test uses. */
export interface OrtModule {
  InferenceSession: typeof InferenceSession;
  Tensor: typeof Tensor;
}

export interface SelfTestOutput {
  dims: number[];
  data: number[];
}

export interface SelfTestResult {
  outputs: { y: SelfTestOutput; residual: SelfTestOutput };
  timings: {
    /** InferenceSession.create: graph optimisation and, on WebGPU, kernel setup. */
    createMs: number;
    /** First run: includes shader compilation on WebGPU. */
    firstRunMs: number;
    /** A second, warm run. */
    warmRunMs: number;
  };
}

/**
 * Builds the self-test model and runs it twice on the given execution providers. With
 * `strict`, ORT may not place any node on the CPU fallback EP: session creation fails
 * instead, which proves every op (contrib ops included) runs on the requested EP.
 */
export async function runSelfTest(
  ort: OrtModule,
  options: {
    executionProviders: InferenceSession.SessionOptions['executionProviders'];
    strict?: boolean;
    /** Anything else for InferenceSession.create (e.g. logSeverityLevel). */
    sessionOptions?: InferenceSession.SessionOptions;
  },
): Promise<SelfTestResult> {
  const { batch, seq, hidden } = SELF_TEST_DIMS;
  const inputs = selfTestInputs();
  const dims = [batch, seq, hidden];
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(buildSelfTestModel(), {
    ...options.sessionOptions,
    executionProviders: options.executionProviders,
    ...(options.strict ? { extra: { session: { disable_cpu_ep_fallback: '1' } } } : {}),
  });
  try {
    const feeds = { x: new ort.Tensor('float32', inputs.x, dims), skip: new ort.Tensor('float32', inputs.skip, dims) };
    const t1 = performance.now();
    await session.run(feeds);
    const t2 = performance.now();
    const out = await session.run(feeds);
    const t3 = performance.now();
    const read = async (name: string): Promise<SelfTestOutput> => {
      const t = out[name]!;
      const data = (await t.getData()) as Float32Array;
      return { dims: [...t.dims], data: Array.from(data) };
    };
    return {
      outputs: { y: await read('y'), residual: await read('residual') },
      timings: { createMs: t1 - t0, firstRunMs: t2 - t1, warmRunMs: t3 - t2 },
    };
  } finally {
    await session.release();
  }
}

/**
 * The self-test graph computed in plain JS (float64), straight from its definition:
 * what any correct runtime must return, up to f32 rounding.
 */
export function referenceSelfTest(
  weights: SelfTestWeights = selfTestWeights(),
  inputs: SelfTestInputs = selfTestInputs(),
): { y: number[]; residual: number[] } {
  const { batch, seq, hidden, inner, blockSize } = SELF_TEST_DIMS;
  const rows = batch * seq;
  const y: number[] = [];
  const residual: number[] = [];
  for (let r = 0; r < rows; r++) {
    const res = Array.from({ length: hidden }, (_, i) => inputs.x[r * hidden + i]! + inputs.skip[r * hidden + i]!);
    residual.push(...res);
    const rms = Math.sqrt(res.reduce((s, v) => s + v * v, 0) / hidden + EPSILON);
    const normed = res.map((v, i) => (v / rms) * weights.gamma[i]!);
    const act = Array.from({ length: inner }, (_, j) => {
      let h = 0;
      for (let i = 0; i < hidden; i++) h += normed[i]! * weights.up[i * inner + j]!;
      return h / (1 + Math.exp(-h));
    });
    for (let n = 0; n < hidden; n++) {
      let acc = 0;
      for (let k = 0; k < inner; k++) {
        const scale = weights.downScales[n * (inner / blockSize) + Math.floor(k / blockSize)]!;
        acc += act[k]! * (weights.downCodes[n * inner + k]! - 8) * scale;
      }
      y.push(acc);
    }
  }
  return { y, residual };
}

/** Largest |a[i] - b[i]|; Infinity when the lengths differ. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
