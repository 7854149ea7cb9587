// Random Qwen2 checkpoints in the HF layout, held in memory behind a TensorReader: for tests
// (graph vs reference without fixtures) and benchmarks (real shapes, no download).
import type { LmSpec } from '../../src/core/base/model-spec.ts';
import type { RawTensor, TensorInfo, TensorReader } from '../../src/core/formats/tensor.ts';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * A random HF-layout Qwen2 checkpoint: Gaussian weights with std ≈ 1/sqrt(fan-in) (norm weights
 * around 1, so activations neither vanish nor explode); deterministic for a seed.
 */
export function randomCheckpoint(spec: LmSpec, seed = 1): Map<string, Float32Array> {
  const r = rng(seed);
  const randn = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const m = new Map<string, Float32Array>();
  const H = spec.hiddenSize;
  const kv = spec.numKvHeads * spec.headDim;
  const q = spec.numHeads * spec.headDim;
  const add = (name: string, n: number, scale: number, offset = 0) =>
    m.set(name, Float32Array.from({ length: n }, () => offset + scale * randn()));
  add('model.embed_tokens.weight', spec.vocabSize * H, 0.5);
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `model.layers.${i}.`;
    add(`${p}input_layernorm.weight`, H, 0.1, 1);
    add(`${p}self_attn.q_proj.weight`, q * H, 1.5 / Math.sqrt(H));
    add(`${p}self_attn.q_proj.bias`, q, 0.2);
    add(`${p}self_attn.k_proj.weight`, kv * H, 1.5 / Math.sqrt(H));
    add(`${p}self_attn.k_proj.bias`, kv, 0.2);
    add(`${p}self_attn.v_proj.weight`, kv * H, 1 / Math.sqrt(H));
    add(`${p}self_attn.v_proj.bias`, kv, 0.2);
    add(`${p}self_attn.o_proj.weight`, H * q, 1 / Math.sqrt(q));
    add(`${p}post_attention_layernorm.weight`, H, 0.1, 1);
    add(`${p}mlp.gate_proj.weight`, spec.intermediateSize * H, 1 / Math.sqrt(H));
    add(`${p}mlp.up_proj.weight`, spec.intermediateSize * H, 1 / Math.sqrt(H));
    add(`${p}mlp.down_proj.weight`, H * spec.intermediateSize, 1 / Math.sqrt(spec.intermediateSize));
  }
  add('model.norm.weight', H, 0.1, 1);
  if (!spec.tieWordEmbeddings) add('lm_head.weight', spec.vocabSize * H, 0.5);
  return m;
}

/**
 * A random HF-layout checkpoint generated tensor by tensor as it is read (the same distributions
 * as randomCheckpoint, deterministic for a seed, but not the same values): a full-size model's
 * weights converted without ever holding the 2.2 GB of f32 source.
 */
export function lazyRandomReader(spec: LmSpec, seed = 1): TensorReader {
  const H = spec.hiddenSize;
  const q = spec.numHeads * spec.headDim;
  const kv = spec.numKvHeads * spec.headDim;
  const I = spec.intermediateSize;
  const infos: TensorInfo[] = [];
  const dist = new Map<string, { scale: number; offset: number }>();
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    infos.push({ name, dtype: 'f32', shape });
    dist.set(name, { scale, offset });
  };
  add('model.embed_tokens.weight', [spec.vocabSize, H], 0.5);
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `model.layers.${i}.`;
    add(`${p}input_layernorm.weight`, [H], 0.1, 1);
    add(`${p}self_attn.q_proj.weight`, [q, H], 1.5 / Math.sqrt(H));
    add(`${p}self_attn.q_proj.bias`, [q], 0.2);
    add(`${p}self_attn.k_proj.weight`, [kv, H], 1.5 / Math.sqrt(H));
    add(`${p}self_attn.k_proj.bias`, [kv], 0.2);
    add(`${p}self_attn.v_proj.weight`, [kv, H], 1 / Math.sqrt(H));
    add(`${p}self_attn.v_proj.bias`, [kv], 0.2);
    add(`${p}self_attn.o_proj.weight`, [H, q], 1 / Math.sqrt(q));
    add(`${p}post_attention_layernorm.weight`, [H], 0.1, 1);
    add(`${p}mlp.gate_proj.weight`, [I, H], 1 / Math.sqrt(H));
    add(`${p}mlp.up_proj.weight`, [I, H], 1 / Math.sqrt(H));
    add(`${p}mlp.down_proj.weight`, [H, I], 1 / Math.sqrt(I));
  }
  add('model.norm.weight', [H], 0.1, 1);
  if (!spec.tieWordEmbeddings) add('lm_head.weight', [spec.vocabSize, H], 0.5);
  const byName = new Map(infos.map((t) => [t.name, t]));
  let k = 0;
  const seeds = new Map(infos.map((t) => [t.name, seed * 7919 + k++ * 104729]));
  const generate = (name: string, rowStart: number, rows: number): RawTensor => {
    const info = byName.get(name);
    if (!info) throw new Error(`no tensor ${name}`);
    const { scale, offset } = dist.get(name)!;
    const r = rng(seeds.get(name)! + rowStart * 31);
    const row = info.shape.slice(1).reduce((a, b) => a * b, 1);
    const v = new Float32Array(rows * row);
    for (let i = 0; i < v.length; i++) v[i] = offset + scale * Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
    return { ...info, shape: info.shape.length > 1 ? [rows, ...info.shape.slice(1)] : [rows], bytes: new Uint8Array(v.buffer) };
  };
  return {
    file: 'random',
    list: () => infos,
    has: (n) => byName.has(n),
    read: async (n) => generate(n, 0, byName.get(n)?.shape[0] ?? 0),
    readRows: async (n, start, count) => generate(n, start, count),
  };
}

/** A TensorReader (dtype f32) over an in-memory HF-layout checkpoint. */
export function memoryReader(spec: LmSpec, m: Map<string, Float32Array>): TensorReader {
  const H = spec.hiddenSize;
  const kv = spec.numKvHeads * spec.headDim;
  const shapeOf = (name: string, n: number): number[] => {
    if (name.endsWith('embed_tokens.weight') || name === 'lm_head.weight') return [spec.vocabSize, H];
    if (/(norm\.weight|\.bias)$/.test(name)) return [n];
    if (name.includes('q_proj')) return [spec.numHeads * spec.headDim, H];
    if (name.includes('k_proj') || name.includes('v_proj')) return [kv, H];
    if (name.includes('o_proj')) return [H, spec.numHeads * spec.headDim];
    if (name.includes('gate_proj') || name.includes('up_proj')) return [spec.intermediateSize, H];
    if (name.includes('down_proj')) return [H, spec.intermediateSize];
    throw new Error(name);
  };
  const infos: TensorInfo[] = [...m].map(([name, v]) => ({ name, dtype: 'f32', shape: shapeOf(name, v.length) }));
  const byName = new Map(infos.map((i) => [i.name, i]));
  const bytes = (v: Float32Array) => new Uint8Array(v.slice().buffer);
  return {
    file: 'memory',
    list: () => infos,
    has: (n) => m.has(n),
    read: async (n): Promise<RawTensor> => ({ ...byName.get(n)!, bytes: bytes(m.get(n)!) }),
    readRows: async (n, start, count): Promise<RawTensor> => {
      const info = byName.get(n)!;
      const row = info.shape.slice(1).reduce((a, b) => a * b, 1);
      return { ...info, shape: [count, ...info.shape.slice(1)], bytes: bytes(m.get(n)!.subarray(start * row, (start + count) * row)) };
    },
  };
}
