// MatMulNBits / GatherBlockQuantized packing (src/core/model/quantize.ts) and the quantized LM
// graph: ORT's kernels must compute exactly what our dequantization says the weights are.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { dequantizeMatrix, quantizeMatrix, type QuantizedMatrix } from '../../src/core/model/quantize.ts';
import { GraphBuilder } from '../../src/core/base/onnx-builder.ts';
import { halfToFloat } from '../../src/core/formats/tensor.ts';
import type { LmSpec, NamedTensor } from '../../src/core/base/model-spec.ts';
import { collectLmWeights, estimateLmBytes } from '../../src/core/convert/lm-weights.ts';
import { buildLmGraph } from '../../src/core/model/lm-graph.ts';
import { LmRunner } from '../../src/core/runtime/lm-runner.ts';
import { memoryReader, randomCheckpoint } from '../helpers/random-model.ts';

function randn(n: number, seed: number, scale = 1): Float32Array {
  let s = seed;
  const r = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: n }, () => scale * Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()));
}

describe('block quantization layout', () => {
  it('4-bit: even k in the low nibble, odd k in the high nibble; default zero point 8', () => {
    const w = new Float32Array(32);
    w[0] = -8; // the signed extreme → q = 0, scale = 1
    w[1] = 7; // q = 15
    w[2] = 1; // q = 9
    const q = quantizeMatrix(w, 1, 32, { bits: 4, symmetric: true, searchScale: false });
    expect(halfToFloat(q.scalesF16[0]!)).toBe(1);
    expect(q.b[0]).toBe(0x0 | (0xf << 4));
    expect(q.b[1]).toBe(9 | (8 << 4));
    expect(q.zeroPoints).toBeUndefined();
    expect(Array.from(dequantizeMatrix(q).slice(0, 4))).toEqual([-8, 7, 1, 0]);
  });

  it('asymmetric zero points pack two blocks per byte, low nibble = even block', () => {
    const w = new Float32Array(64);
    for (let i = 0; i < 32; i++) w[i] = i / 31; // block 0: [0, 1] → zp 0
    for (let i = 32; i < 64; i++) w[i] = -(i - 32) / 31; // block 1: [-1, 0] → zp 15
    const q = quantizeMatrix(w, 1, 64, { bits: 4, symmetric: false });
    expect(q.zeroPoints!.length).toBe(1);
    expect(q.zeroPoints![0]).toBe(0 | (15 << 4));
  });

  for (const [bits, symmetric, bound] of [[4, true, 0.14], [4, false, 0.12], [8, true, 0.01], [8, false, 0.01]] as const) {
    it(`${bits}-bit ${symmetric ? 'symmetric' : 'asymmetric'}: relative RMS error < ${bound}, K padding handled`, () => {
      const n = 16;
      const k = 80;
      const w = randn(n * k, bits * 10 + (symmetric ? 1 : 0));
      const q = quantizeMatrix(w, n, k, { bits, symmetric });
      expect(q.kBlocks).toBe(3);
      expect(q.b.length).toBe(n * 3 * (32 * bits) / 8);
      const d = dequantizeMatrix(q);
      let e = 0;
      let p = 0;
      for (let i = 0; i < w.length; i++) {
        e += (d[i]! - w[i]!) ** 2;
        p += w[i]! ** 2;
      }
      const rel = Math.sqrt(e / p);
      console.log(`[quantize] ${bits}-bit ${symmetric ? 'sym' : 'asym'} relative RMS error ${rel.toFixed(4)}`);
      expect(rel).toBeLessThan(bound);
    });
  }
});

/** y = x · dequant(W)^T computed by ORT's MatMulNBits vs in JS. */
async function matMulNBits(q: QuantizedMatrix, x: Float32Array, m: number) {
  const g = new GraphBuilder('mmnb');
  const a = g.input('a', 'float32', [m, q.k]);
  const inputs = [
    a,
    g.initializer('b', { type: 'uint8', dims: [q.n, q.kBlocks, (32 * q.bits) / 8], raw: q.b }),
    g.initializer('s', { type: 'float32', dims: [q.n, q.kBlocks], raw: new Uint8Array(Float32Array.from(q.scalesF16, halfToFloat).buffer) }),
  ];
  if (q.zeroPoints) inputs.push(g.initializer('zp', { type: 'uint8', dims: [q.n, q.zeroPoints.length / q.n], raw: q.zeroPoints }));
  g.ms('MatMulNBits', inputs, { K: q.k, N: q.n, bits: q.bits, block_size: 32 }, ['y']);
  g.output('y', 'float32', [m, q.n]);
  const s = await ort.InferenceSession.create(g.toBytes());
  const out = await s.run({ a: new ort.Tensor('float32', x, [m, q.k]) });
  await s.release();
  return out.y!.data as Float32Array;
}

describe('ORT MatMulNBits reads our packing', () => {
  for (const [bits, symmetric] of [[4, true], [4, false], [8, true], [8, false]] as const) {
    it(`bits ${bits}, ${symmetric ? 'no zero points' : 'packed zero points'}, K = 80 (padded)`, async () => {
      const n = 24;
      const k = 80;
      const m = 3;
      const q = quantizeMatrix(randn(n * k, 3), n, k, { bits, symmetric });
      const x = randn(m * k, 4);
      const y = await matMulNBits(q, x, m);
      const d = dequantizeMatrix(q);
      let err = 0;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let ref = 0;
          for (let t = 0; t < k; t++) ref += x[i * k + t]! * d[j * k + t]!;
          err = Math.max(err, Math.abs(ref - y[i * n + j]!));
        }
      }
      expect(err).toBeLessThan(1e-4);
    });
  }
});

// The whole quantized graph equals the f32 graph run on the dequantized weights: proves every
// MatMulNBits / GatherBlockQuantized in the graph reads the packed tensors as intended.
describe('quantized LM graph == f32 graph over the dequantized weights', () => {
  const spec: LmSpec = {
    hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 96,
    rmsNormEps: 1e-6, ropeTheta: 10000, vocabSize: 120 + 200, visualOffset: 120, visualCount: 200, tieWordEmbeddings: true,
  };
  const ckpt = randomCheckpoint(spec, 3);

  /** HF-layout checkpoint holding what the quantized tensors decode to. */
  function dequantizedCheckpoint(w: Map<string, NamedTensor>): Map<string, Float32Array> {
    const H = spec.hiddenSize;
    const deq = (prefix: string, n: number, k: number): Float32Array => {
      const q = w.get(`${prefix}.q`)!;
      const bits = q.dims.length === 3 ? (q.dims[2]! * 8) / 32 : (q.dims[1]! * 8) / k;
      const zp = w.get(`${prefix}.zp`);
      return dequantizeMatrix({
        n, k, bits: bits as 4 | 8, blockSize: 32, kBlocks: Math.ceil(k / 32), b: q.raw,
        scalesF16: new Uint16Array(w.get(`${prefix}.scales`)!.raw.slice().buffer), zeroPoints: zp?.raw,
      });
    };
    const f32 = (name: string) => new Float32Array(w.get(name)!.raw.slice().buffer);
    const out = new Map<string, Float32Array>();
    const qd = spec.numHeads * spec.headDim;
    const kv = spec.numKvHeads * spec.headDim;
    const I = spec.intermediateSize;
    for (let i = 0; i < spec.numLayers; i++) {
      const p = `model.layers.${i}.`;
      const c = `layers.${i}.`;
      out.set(`${p}input_layernorm.weight`, f32(`${c}attn_norm.w`));
      out.set(`${p}post_attention_layernorm.weight`, f32(`${c}mlp_norm.w`));
      const qkv = deq(`${c}attn.qkv`, qd + 2 * kv, H);
      const b = f32(`${c}attn.qkv.b`);
      out.set(`${p}self_attn.q_proj.weight`, qkv.subarray(0, qd * H));
      out.set(`${p}self_attn.k_proj.weight`, qkv.subarray(qd * H, (qd + kv) * H));
      out.set(`${p}self_attn.v_proj.weight`, qkv.subarray((qd + kv) * H));
      out.set(`${p}self_attn.q_proj.bias`, b.subarray(0, qd));
      out.set(`${p}self_attn.k_proj.bias`, b.subarray(qd, qd + kv));
      out.set(`${p}self_attn.v_proj.bias`, b.subarray(qd + kv));
      out.set(`${p}self_attn.o_proj.weight`, deq(`${c}attn.o`, H, qd));
      const gu = deq(`${c}mlp.gate_up`, 2 * I, H);
      out.set(`${p}mlp.gate_proj.weight`, gu.subarray(0, I * H));
      out.set(`${p}mlp.up_proj.weight`, gu.subarray(I * H));
      out.set(`${p}mlp.down_proj.weight`, deq(`${c}mlp.down`, H, I));
    }
    out.set('model.norm.weight', f32('final_norm.w'));
    const embed = new Float32Array(spec.vocabSize * H);
    embed.set(deq('embed.text', spec.visualOffset, H));
    embed.set(deq('head', spec.visualCount, H), spec.visualOffset * H);
    out.set('model.embed_tokens.weight', embed);
    return out;
  }

  async function run(weights: Map<string, NamedTensor>) {
    const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64 }));
    const r = new LmRunner(ort, session, spec, { capacity: 32 });
    const out = [await r.prefill([[1, 119, 50, 7], [3, 4]])];
    for (const t of [120, 319, 200]) out.push(await r.step([t, t]));
    await session.release();
    return out;
  }

  for (const format of ['q4', 'q8'] as const) {
    it(format, async () => {
      const qw = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: format });
      const deq = dequantizedCheckpoint(qw);
      const fw = await collectLmWeights(memoryReader(spec, deq), spec, { weights: 'f32' });
      const a = await run(qw);
      const b = await run(fw);
      let err = 0;
      let scale = 0;
      for (let s = 0; s < a.length; s++) {
        for (let i = 0; i < a[s]!.length; i++) {
          err = Math.max(err, Math.abs(a[s]![i]! - b[s]![i]!));
          scale = Math.max(scale, Math.abs(b[s]![i]!));
        }
      }
      console.log(`[lm-quantize] ${format} graph vs f32 graph on dequantized weights: max abs ${err.toExponential(2)} (logit scale ${scale.toFixed(1)})`);
      expect(err).toBeLessThan(1e-3 * Math.max(1, scale));
    });
  }
});

describe('converted LM size', () => {
  const spec: LmSpec = {
    hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 80,
    rmsNormEps: 1e-6, ropeTheta: 10000, vocabSize: 120 + 200, visualOffset: 120, visualCount: 200, tieWordEmbeddings: true,
  };
  for (const format of ['q4', 'q8', 'f16', 'f32'] as const) {
    it(`estimateLmBytes(${format}) equals the converted tensors' bytes`, async () => {
      const w = await collectLmWeights(memoryReader(spec, randomCheckpoint(spec)), spec, { weights: format });
      const total = [...w.values()].reduce((a, t) => a + t.raw.byteLength, 0);
      expect(estimateLmBytes(spec, format)).toBe(total);
    });
  }

  it('SimpleAR-0.5B (real shapes): the q4 LM fits the 450 MB bundle with the ~104 MB decoder', () => {
    const real: LmSpec = {
      hiddenSize: 896, numLayers: 24, numHeads: 14, numKvHeads: 2, headDim: 64, intermediateSize: 4864,
      rmsNormEps: 1e-6, ropeTheta: 1e6, vocabSize: 215672, visualOffset: 151672, visualCount: 64000, tieWordEmbeddings: true,
    };
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    const sizes = Object.fromEntries((['q4', 'q8', 'f16', 'f32'] as const).map((f) => [f, estimateLmBytes(real, f)]));
    console.log(`[lm size] SimpleAR-0.5B LM: ${Object.entries(sizes).map(([f, b]) => `${f} ${mb(b)}`).join(', ')}`);
    expect(sizes.q4! + 104e6).toBeLessThan(450e6);
  });
});
