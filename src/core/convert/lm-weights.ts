// HF Qwen2 safetensors (bf16/f16/f32) → the LM's converted tensors, streamed one tensor at a time.
//
// ── Converted tensor names (stable; model/lm-graph.ts reads these) ─────────────────────────────────────
//  A "linear" P ([N out, K in] in HF terms) is stored as
//    q4/q8: P.q uint8 [N, k_blocks, 32*bits/8], P.scales f16 [N, k_blocks], P.zp uint8
//           [N, ceil(k_blocks*bits/8)]   (MatMulNBits layout, asymmetric: see quantize.ts)
//    f16/f32: P.w f16|f32 [K, N]         (transposed, the right-hand side of MatMul)
//  A "table" P ([rows, H], read by row) is stored as
//    q4/q8: P.q uint8 [rows, H*bits/8] (rank 2), or the rank-3 MatMulNBits layout for `head`,
//           P.scales f16 [rows, H/32]; symmetric (implicit zero point 2^(bits-1)), because
//           GatherBlockQuantized's zero-point packing differs between ORT's CPU and WebGPU
//           kernels for the rank-3 layout.
//    f16/f32: P.w [rows, H]
//
//  layers.{i}.attn_norm.w     f32 [H]              input_layernorm
//  layers.{i}.attn.qkv        linear N = H + 2·kvH·hd (rows: q, then k, then v), K = H
//  layers.{i}.attn.qkv.b      f32 [H + 2·kvH·hd]   q/k/v biases, same order
//  layers.{i}.attn.o          linear N = H, K = H
//  layers.{i}.mlp_norm.w      f32 [H]              post_attention_layernorm
//  layers.{i}.mlp.gate_up     linear N = 2·I (rows: gate, then up), K = H
//  layers.{i}.mlp.down        linear N = H, K = I
//  final_norm.w               f32 [H]              model.norm
//  head                       table of the visualCount visual rows of the output head (lm_head,
//                             or embed_tokens when tied): rows visualOffset..visualOffset+V-1.
//                             q4/q8: rank-3 MatMulNBits layout [V, H/32, blob] so the SAME bytes
//                             serve the head (MatMulNBits) and the input embedding of visual ids
//                             (GatherBlockQuantized) when the embedding is tied.
//  embed.text                 table of rows 0..visualOffset-1 of embed_tokens (text + specials)
//  embed.visual               only for untied checkpoints: embed_tokens rows of the visual ids
//
// Why the input embedding is split this way: the full 215,672-row table in f16 is 386 MB. Visual
// ids (every decode step) reuse the head's quantized rows at no cost. Text rows are only read for
// the prompt, once per image, but any of them can occur, so they are stored as a 4-bit (q4) or
// 8-bit (q8) GatherBlockQuantized table: 151,672 × 896 → 76 MB in q4 instead of 272 MB f16, and
// the prefill stays one graph call on the GPU (no CPU-side embedding path).
// Norms and biases stay f32 in every variant (they are tiny); scales are f16.
import type { LmSpec, NamedTensor } from '../base/model-spec.ts';
import { ModelFileError, SimpleARError } from '../base/errors.ts';
import { toFloat32, type TensorReader } from '../formats/tensor.ts';
import { f16Bytes, f32Bytes, quantizeMatrix, transpose, type LmWeightFormat, type QuantBits } from '../model/quantize.ts';

export type { LmWeightFormat } from '../model/quantize.ts';

export interface ConvertLmOptions {
  weights: LmWeightFormat;
  signal?: AbortSignal;
  /** Called after each converted tensor: source bytes read so far / in total. */
  onProgress?: (p: { done: number; total: number; tensor: string }) => void;
  /** Rows per read of the embedding (bounded memory). Default 4096. */
  rowChunk?: number;
}

const BLOCK = 32;

/** HF source names for layer i. */
const src = (i: number) => {
  const p = `model.layers.${i}.`;
  return {
    inNorm: `${p}input_layernorm.weight`,
    q: `${p}self_attn.q_proj.weight`,
    k: `${p}self_attn.k_proj.weight`,
    v: `${p}self_attn.v_proj.weight`,
    qb: `${p}self_attn.q_proj.bias`,
    kb: `${p}self_attn.k_proj.bias`,
    vb: `${p}self_attn.v_proj.bias`,
    o: `${p}self_attn.o_proj.weight`,
    postNorm: `${p}post_attention_layernorm.weight`,
    gate: `${p}mlp.gate_proj.weight`,
    up: `${p}mlp.up_proj.weight`,
    down: `${p}mlp.down_proj.weight`,
  };
};
const EMBED = 'model.embed_tokens.weight';
const LM_HEAD = 'lm_head.weight';
const FINAL_NORM = 'model.norm.weight';

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const bitsOf = (w: LmWeightFormat): QuantBits | 0 => (w === 'q4' ? 4 : w === 'q8' ? 8 : 0);

/** The converted tensors of one linear layer ([n, k] HF weight). */
export function convertLinear(name: string, w: Float32Array, n: number, k: number, format: LmWeightFormat): NamedTensor[] {
  const bits = bitsOf(format);
  if (bits) {
    const q = quantizeMatrix(w, n, k, { bits, blockSize: BLOCK, symmetric: false });
    const out: NamedTensor[] = [
      { name: `${name}.q`, type: 'uint8', dims: [n, q.kBlocks, (BLOCK * bits) / 8], raw: q.b },
      { name: `${name}.scales`, type: 'float16', dims: [n, q.kBlocks], raw: new Uint8Array(q.scalesF16.buffer) },
    ];
    if (q.zeroPoints) out.push({ name: `${name}.zp`, type: 'uint8', dims: [n, q.zeroPoints.length / n], raw: q.zeroPoints });
    return out;
  }
  const t = transpose(w, n, k);
  return [{ name: `${name}.w`, type: format === 'f16' ? 'float16' : 'float32', dims: [k, n], raw: format === 'f16' ? f16Bytes(t) : f32Bytes(t) }];
}

/** Converted tensors for a vector kept in f32. */
const vector = (name: string, v: Float32Array): NamedTensor => ({ name, type: 'float32', dims: [v.length], raw: f32Bytes(v) });

/**
 * Streams the converted LM tensors. Reads each source tensor once (the embedding in row chunks,
 * never whole); at most one converted tensor (plus one layer's source weights) is held at a time.
 */
export async function* convertLmWeights(reader: TensorReader, spec: LmSpec, opts: ConvertLmOptions): AsyncGenerator<NamedTensor> {
  const { signal, onProgress } = opts;
  const format = opts.weights;
  const H = spec.hiddenSize;
  const kvDim = spec.numKvHeads * spec.headDim;
  const qDim = spec.numHeads * spec.headDim;
  const I = spec.intermediateSize;
  const rowChunk = opts.rowChunk ?? 4096;

  const infos = new Map(reader.list().map((t) => [t.name, t]));
  const need = (name: string, shape: number[]) => {
    const t = infos.get(name);
    if (!t) throw new ModelFileError(reader.file, 'tensor not found', name, 'ModelFileMissing');
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFileError(reader.file, `shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)}`, name, 'ModelMismatch');
    }
    return t;
  };
  const untied = !spec.tieWordEmbeddings && infos.has(LM_HEAD);
  const vocab = spec.vocabSize;
  need(EMBED, [vocab, H]);
  if (untied) need(LM_HEAD, [vocab, H]);
  if (spec.visualOffset + spec.visualCount > vocab) {
    throw new ModelFileError(reader.file, `visual rows ${spec.visualOffset}+${spec.visualCount} exceed the ${vocab}-row embedding`, EMBED, 'ModelMismatch');
  }

  // Source bytes for progress.
  const bytesOf = (name: string, rows?: number) => {
    const t = infos.get(name)!;
    const per = t.shape.slice(1).reduce((a, b) => a * b, 1) * (t.dtype === 'f32' ? 4 : 2);
    return (rows ?? t.shape[0]!) * per;
  };
  let total = bytesOf(FINAL_NORM);
  for (let i = 0; i < spec.numLayers; i++) for (const n of Object.values(src(i))) total += bytesOf(n);
  total += bytesOf(untied ? LM_HEAD : EMBED, spec.visualCount) + bytesOf(EMBED, spec.visualOffset) + (untied ? bytesOf(EMBED, spec.visualCount) : 0);
  let done = 0;

  const check = () => {
    if (signal?.aborted) throw new SimpleARError('Aborted', 'weight conversion aborted');
  };
  const read = async (name: string, shape: number[]) => {
    check();
    need(name, shape);
    const t = await reader.read(name, signal);
    done += t.bytes.byteLength;
    return toFloat32(t);
  };
  const emit = function* (tensors: NamedTensor[]) {
    for (const t of tensors) {
      onProgress?.({ done, total, tensor: t.name });
      yield t;
    }
  };

  for (let i = 0; i < spec.numLayers; i++) {
    const s = src(i);
    const p = `layers.${i}`;
    yield* emit([vector(`${p}.attn_norm.w`, await read(s.inNorm, [H]))]);
    const qkv = concat([await read(s.q, [qDim, H]), await read(s.k, [kvDim, H]), await read(s.v, [kvDim, H])]);
    yield* emit(convertLinear(`${p}.attn.qkv`, qkv, qDim + 2 * kvDim, H, format));
    const bias = concat([await read(s.qb, [qDim]), await read(s.kb, [kvDim]), await read(s.vb, [kvDim])]);
    yield* emit([vector(`${p}.attn.qkv.b`, bias)]);
    yield* emit(convertLinear(`${p}.attn.o`, await read(s.o, [H, qDim]), H, qDim, format));
    yield* emit([vector(`${p}.mlp_norm.w`, await read(s.postNorm, [H]))]);
    const gateUp = concat([await read(s.gate, [I, H]), await read(s.up, [I, H])]);
    yield* emit(convertLinear(`${p}.mlp.gate_up`, gateUp, 2 * I, H, format));
    yield* emit(convertLinear(`${p}.mlp.down`, await read(s.down, [H, I]), H, I, format));
  }
  yield* emit([vector('final_norm.w', await read(FINAL_NORM, [H]))]);

  const table = async (name: string, source: string, start: number, rows: number, rank3: boolean): Promise<NamedTensor[]> => {
    // Quantized tables need whole blocks along H (GatherBlockQuantized's output is k_blocks*32
    // wide); otherwise they fall back to f16.
    const bits = H % BLOCK === 0 ? bitsOf(format) : 0;
    const kb = H / BLOCK;
    const blob = (BLOCK * bits) / 8;
    const q = bits ? new Uint8Array(rows * kb * blob) : undefined;
    const scales = bits ? new Uint16Array(rows * kb) : undefined;
    const plain = bits ? undefined : new Uint8Array(rows * H * (format === 'f32' ? 4 : 2));
    for (let r = 0; r < rows; r += rowChunk) {
      check();
      const n = Math.min(rowChunk, rows - r);
      const t = await reader.readRows(source, start + r, n, signal);
      done += t.bytes.byteLength;
      const w = toFloat32(t);
      if (bits) {
        const m = quantizeMatrix(w, n, H, { bits, blockSize: BLOCK, symmetric: true });
        q!.set(m.b, r * kb * blob);
        scales!.set(m.scalesF16, r * kb);
      } else {
        plain!.set(format === 'f32' ? f32Bytes(w) : f16Bytes(w), r * H * (format === 'f32' ? 4 : 2));
      }
    }
    if (!bits) return [{ name: `${name}.w`, type: format === 'f32' ? 'float32' : 'float16', dims: [rows, H], raw: plain! }];
    return [
      { name: `${name}.q`, type: 'uint8', dims: rank3 ? [rows, kb, blob] : [rows, kb * blob], raw: q! },
      { name: `${name}.scales`, type: 'float16', dims: [rows, kb], raw: new Uint8Array(scales!.buffer) },
    ];
  };

  yield* emit(await table('head', untied ? LM_HEAD : EMBED, spec.visualOffset, spec.visualCount, true));
  yield* emit(await table('embed.text', EMBED, 0, spec.visualOffset, false));
  if (untied) yield* emit(await table('embed.visual', EMBED, spec.visualOffset, spec.visualCount, false));
}

/** Collects the converted tensors into a map (tests, small models). */
export async function collectLmWeights(reader: TensorReader, spec: LmSpec, opts: ConvertLmOptions): Promise<Map<string, NamedTensor>> {
  const out = new Map<string, NamedTensor>();
  for await (const t of convertLmWeights(reader, spec, opts)) out.set(t.name, t);
  return out;
}

/**
 * Bytes of the converted tensors (what a bundle stores for the LM), computed from the shapes
 * alone; equals the sum of convertLmWeights' outputs.
 */
export function estimateLmBytes(spec: LmSpec, format: LmWeightFormat, untied = !spec.tieWordEmbeddings): number {
  const H = spec.hiddenSize;
  const qDim = spec.numHeads * spec.headDim;
  const kvDim = spec.numKvHeads * spec.headDim;
  const I = spec.intermediateSize;
  const bits = bitsOf(format);
  const linear = (n: number, k: number) => {
    if (!bits) return n * k * (format === 'f32' ? 4 : 2);
    const kb = Math.ceil(k / BLOCK);
    return n * kb * ((BLOCK * bits) / 8) + n * kb * 2 + n * Math.ceil((kb * bits) / 8);
  };
  const table = (rows: number) => {
    const tb = H % BLOCK === 0 ? bits : 0;
    if (!tb) return rows * H * (format === 'f32' ? 4 : 2);
    return rows * (H / BLOCK) * ((BLOCK * tb) / 8) + rows * (H / BLOCK) * 2;
  };
  const layer = 2 * H * 4 + (qDim + 2 * kvDim) * 4 + linear(qDim + 2 * kvDim, H) + linear(H, qDim) + linear(2 * I, H) + linear(H, I);
  return spec.numLayers * layer + H * 4 + table(spec.visualCount) + table(spec.visualOffset) + (untied ? table(spec.visualCount) : 0);
}
