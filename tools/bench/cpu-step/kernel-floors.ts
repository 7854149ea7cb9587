// The CPU step's big kernels alone, unprofiled: what onnxruntime's own kernels cost before any of
// the step's other work, so the bench can say how much of "ours / bound" is theirs.
//  - MatMulNBits: the engine's q4 linear layers (same weights, attributes and order: q/k/v with
//    its bias, o, gate/up, down per layer, then the visual head), each followed by an RMSNorm
//    of unit weight to keep the activations in range (a chain of synthetic weights without
//    norms shrank them into denormals and ran twice as slow). The norms run on ≤ 9,728 values:
//    noise next to the MatMuls.
//  - Attention GEMMs: per layer, the read-only attention's two MatMuls over the cache (scores
//    Q·Kᵀ and Vᵀ·Pᵀ, readonly-attention.ts) on caches of the engine's size, one per layer so
//    every step streams them from memory as the engine's does; nothing else (no mask, softmax,
//    or the new tokens' columns).
import type { InferenceSession } from 'onnxruntime-node';
import { GraphBuilder, float } from '../../../src/core/base/onnx-builder.ts';
import { LmOps, type WeightGetter } from '../../../src/core/model/lm-ops.ts';
import type { LmSpec } from '../../../src/core/base/model-spec.ts';
import { median, round } from '../stats.ts';

export interface KernelFloor {
  /** Median wall time of one run of the chain. */
  msPerStep: number;
  /** Bytes the chain's big operands hold (q4 data + scales + biases as stored; f32 caches). */
  bytes: number;
  gbPerS: number;
  nodes: number;
}

export interface KernelFloors {
  matMulNBits: KernelFloor;
  attentionGemms: KernelFloor;
  /** Both chains: a lower bound on the engine's step with these kernels. */
  msPerStep: number;
}

type Ort = typeof import('onnxruntime-node');

async function medianRunMs(session: InferenceSession, feeds: Record<string, import('onnxruntime-node').Tensor>, runs: number): Promise<number> {
  await session.run(feeds); // warm-up
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(feeds);
    ts.push(performance.now() - t);
  }
  return median(ts);
}

const floor = (ms: number, bytes: number, nodes: number): KernelFloor => ({ msPerStep: round(ms), bytes, gbPerS: round(bytes / ms / 1e6, 1), nodes });

/** The step's MatMulNBits in a chain (see the file comment). */
async function matMulNBitsFloor(ort: Ort, spec: LmSpec, weights: WeightGetter, accuracyLevel: 0 | 4, options: InferenceSession.SessionOptions, runs: number): Promise<KernelFloor> {
  const { hiddenSize: H, intermediateSize: I, rmsNormEps: eps } = spec;
  const g = new GraphBuilder('matmulnbits-floor');
  const o = new LmOps(g, 'float32', weights, accuracyLevel);
  const unit = (n: number) => g.constFloat32(new Array<number>(n).fill(1));
  const [unitH, unitI] = [unit(H), unit(I)];
  const norm = (x: string, w: string) => g.op1('SimplifiedLayerNormalization', [x, w], { axis: -1, epsilon: float(eps), stash_type: 1 });
  const first = (x: string, n: number) => g.op1('Slice', [x, g.constInt64([0]), g.constInt64([n]), g.constInt64([-1])]);
  let bytes = 0;
  let nodes = 0;
  const linear = (x: string, prefix: string, k: number, bias?: string) => {
    for (const n of [`${prefix}.q`, `${prefix}.scales`, `${prefix}.zp`, ...(bias ? [bias] : [])]) bytes += o.has(n) ? o.tensor(n).raw.byteLength : 0;
    nodes++;
    return o.linear(x, prefix, k, bias);
  };
  let x = g.input('x', 'float32', [2, 1, H]);
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `layers.${i}`;
    const qkv = linear(x, `${p}.attn.qkv`, H, `${p}.attn.qkv.b`);
    const a = linear(norm(first(qkv, H), unitH), `${p}.attn.o`, H);
    const gateUp = linear(norm(a, unitH), `${p}.mlp.gate_up`, H);
    x = norm(linear(norm(first(gateUp, I), unitI), `${p}.mlp.down`, I), unitH);
  }
  g.op('Identity', [linear(x, 'head', H)], {}, ['logits']);
  g.output('logits', 'float32', [2, 1, spec.visualCount]);
  const session = await ort.InferenceSession.create(g.toBytes(), options);
  try {
    const input = Float32Array.from({ length: 2 * H }, (_, i) => Math.sin(i));
    return floor(await medianRunMs(session, { x: new ort.Tensor('float32', input, [2, 1, H]) }, runs), bytes, nodes);
  } finally {
    await session.release();
  }
}

/** The read-only attention's two cache GEMMs per layer, over `slots` cache slots per row. */
async function attentionGemmFloor(ort: Ort, spec: LmSpec, slots: number, options: InferenceSession.SessionOptions, runs: number): Promise<KernelFloor> {
  const { numKvHeads: kvH, headDim: hd } = spec;
  const G = spec.numHeads / kvH;
  const g = new GraphBuilder('attention-gemm-floor');
  const q = g.input('q', 'float32', [2, kvH, G, hd]);
  const feeds: Record<string, import('onnxruntime-node').Tensor> = {
    q: new ort.Tensor('float32', Float32Array.from({ length: 2 * kvH * G * hd }, (_, i) => Math.cos(i)), [2, kvH, G, hd]),
  };
  const sums: string[] = [];
  for (let i = 0; i < spec.numLayers; i++) {
    const k = g.input(`k${i}`, 'float32', [2, kvH, slots, hd]);
    const vt = g.input(`vt${i}`, 'float32', [2, kvH, hd, slots]);
    // written values, not fresh zero pages (which all map to one physical page)
    feeds[`k${i}`] = new ort.Tensor('float32', new Float32Array(2 * kvH * slots * hd).fill(0.01), [2, kvH, slots, hd]);
    feeds[`vt${i}`] = new ort.Tensor('float32', new Float32Array(2 * kvH * slots * hd).fill(0.01), [2, kvH, hd, slots]);
    const qi = g.op1('Mul', [q, g.constFloat32([1 + i / 64])]); // distinct per layer: no shared subexpressions
    const scores = g.ms('FusedMatMul', [qi, k], { transB: 1, alpha: float(1 / Math.sqrt(hd)) })[0]!;
    sums.push(g.op1('ReduceSum', [g.ms('FusedMatMul', [vt, scores], { transB: 1 })[0]!], { keepdims: 0 }));
  }
  g.op('Sum', sums, {}, ['total']);
  g.output('total', 'float32', []);
  const session = await ort.InferenceSession.create(g.toBytes(), options);
  try {
    const bytes = spec.numLayers * 2 * (2 * kvH * slots * hd * 4);
    return floor(await medianRunMs(session, feeds, runs), bytes, 2 * spec.numLayers);
  } finally {
    await session.release();
  }
}

/** Both floors, each in its own session (one at a time: sessions' spinning threads interfere). */
export async function kernelFloors(
  ort: Ort,
  spec: LmSpec,
  weights: WeightGetter,
  accuracyLevel: 0 | 4,
  kvSlots: number,
  options: InferenceSession.SessionOptions,
  runs: number,
): Promise<KernelFloors> {
  const matMulNBits = await matMulNBitsFloor(ort, spec, weights, accuracyLevel, options, runs);
  const attentionGemms = await attentionGemmFloor(ort, spec, kvSlots, options, runs);
  return { matMulNBits, attentionGemms, msPerStep: round(matMulNBits.msPerStep + attentionGemms.msPerStep) };
}
