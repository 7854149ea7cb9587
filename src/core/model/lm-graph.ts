// The SimpleAR LM (Qwen2, docs/model.md#forward-pass) as ONE ONNX graph that serves both prefill and decode, for
// ONNX Runtime's WebGPU EP (browsers), its CPU EP (onnxruntime-node) and the wasm EP.
//
// ── Graph IO contract ─────────────────────────────────────────────────────────────────────────
//  B = batch (2 for CFG: row 0 = conditional prompt, row 1 = negative prompt), S = tokens in this
//  call, R = rows of logits wanted, C = KV cache capacity (static), T = activation dtype
//  (float32, or float16 for GPUs with shader-f16), L = layers, kvH = KV heads, hd = head dim.
//
//  inputs
//   input_ids              int32 [B, S]   full-vocabulary ids (text ids < visualOffset, visual
//                                         code c as visualOffset + c). int32, not int64, so the
//                                         id arithmetic below runs on the GPU (WebGPU has no
//                                         int64 elementwise kernels).
//   seqlens_k              int32 [B]      per row: (tokens in the cache after this call) - 1
//   total_sequence_length  int32 []       max over rows of (seqlens_k + 1)
//   logits_index           int32 [B, R]   which of the B*S positions of this call get logits,
//                                         as flat indices b*S + s into the [B*S] positions
//   past_key.{i}           T [B, kvH, C, hd]   static cache, bound to the SAME buffer as
//   past_value.{i}         T [B, kvH, C, hd]   present_key.{i} / present_value.{i}
//  outputs
//   logits                 float32 [B, R, visualCount]  logits of the visual codes only
//   present_key.{i}        T [B, kvH, C, hd]   (in place: the same buffer as past_key.{i})
//   present_value.{i}      T [B, kvH, C, hd]
//  With kvCache 'read-only' (the CPU engines): past_value.{i} is [B, kvH, hd, C], and the
//  outputs new_key.{i} / new_value.{i} [B, kvH, S, hd] replace present_*: the caller writes them
//  into its cache (LmGraphOptions.kvCache).
//
//  Prefill (empty cache): right-pad both prompts to S = max(P, N) (pad id: any text id, e.g. 0);
//   seqlens_k = [P-1, N-1], total_sequence_length = S, logits_index = [[P-1], [S+N-1]].
//   GroupQueryAttention treats S == total_sequence_length as the first prompt: positions 0..S-1
//   for every row, causal attention, so each row's real tokens never see the padding; the
//   padding's keys land in cache slots ≥ the row's length and are overwritten before they can
//   be attended to (a row only attends to slots 0..seqlens_k[b]).
//  Decode (S = 1): the token of each row; with row lengths [p, n] already in the cache,
//   seqlens_k = [p, n], total_sequence_length = max(p, n) + 1, logits_index = [[0], [1]].
//   GQA writes the new key at slot seqlens_k[b] and rotates it by position seqlens_k[b], so each
//   stream keeps its own positions (cond: 0..P-1, P, P+1...; uncond: 0..N-1, N, ...).
//  In-place cache: GQA has no "share buffer" attribute; the CPU and WebGPU kernels compare the
//   past/present data pointers, so binding the same tensor/GPUBuffer to both is all it takes.
//  WebGPU caveat (measured in headless Chromium, SwiftShader): the WebGPU EP's dense prefill
//   kernel, used when S ≥ 32, gives wrong attention on adapters with 4-wide subgroups; S < 32 is
//   right. runtime/lm-runner.ts prefillSchedule() splits the prefill (first ≤ 31 tokens in one call,
//   the rest one token per call) so every call stays below that threshold when needed.
//  Windows of S > 1 tokens after a prefill (speculative decoding) are rejected by ORT's GQA when
//   B > 1 ("batch_size must be 1 when sequence_length > 1 and past context is given"); run
//   such windows with B = 1 graphs/caches, one per stream. The read-only cache's attention takes
//   them at any batch size.
//
// ── Layout of the computation ─────────────────────────────────────────────────────────────────
//  embedding: text ids from `embed.text`, visual ids from the visual rows of the tied head
//   (`head`, read by GatherBlockQuantized in q4/q8, or by Gather + a dequantizing table where
//   the runtime lacks it: LmGraphOptions.quantizedLookup), chosen per token with Where.
//  layer:     x = RMSNorm(h); qkv = x·Wqkv + b (one fused projection, the bias inside
//             MatMulNBits); GQA with packed QKV, do_rotary=1 (rotate_half, cos/sin tables as
//             initializers); h += o_proj; x = RMSNorm(h) (SkipSimplifiedLayerNormalization: add +
//             norm in one kernel); gu = x·Wgate_up (fused); h += down(QuickGelu₁(gate)·up).
//  Kernels per decode step (q4): 1 embedding block (~9 tiny ops incl. 2 GatherBlockQuantized)
//   + 24 × 10 (norm, qkv, GQA, o, norm, gate_up, Split, QuickGelu, Mul, down) + final norm,
//   Gather, head ≈ 250. With kvCache 'read-only', GQA becomes 18 ops (readonly-attention.ts):
//   ≈ 660 kernels, for none of the copies of the cache an in-place cache costs on the CPU.
//  head:      final RMSNorm, then only the `logits_index` rows × the 64,000 visual rows.
import { GraphBuilder, type ModelWithExternalData } from '../base/onnx-builder.ts';
import type { LmSpec } from '../base/model-spec.ts';
import { LmOps, type ActType, type QuantizedLinear, type QuantizedLookup, type WeightGetter } from './lm-ops.ts';
import { readOnlyAttention, readOnlyAttentionInputs } from './readonly-attention.ts';

export interface LmGraphOptions {
  /** Activation (and KV cache) dtype. */
  activations: 'f32' | 'f16';
  /**
   * Length of the rotary tables = the largest total sequence (prompt + generated tokens) the graph
   * serves; the KV cache capacity C may be anything up to it. Default 4096 + 512.
   */
  maxSeqLen?: number;
  /**
   * MatMulNBits accuracy_level (q4/q8 weights): 0 (default) computes with the activations as
   * they are; 4 lets the kernel quantize activations to int8 per block (much faster on the CPU
   * EP, selects the DP4A kernels on WebGPU; slightly less exact).
   */
  accuracyLevel?: 0 | 4;
  /**
   * `total_sequence_length` as this constant instead of an input (the cache capacity). For
   * WebGPU graph capture: a captured session takes GPU buffers only, and GQA reads this input on
   * the CPU. Its kernels follow `seqlens_k` (on the GPU) for each row's length, so the logits do
   * not change (tools/bench/graph-capture-probe.ts compares them with onnxruntime-node's).
   */
  fixedTotalSequenceLength?: number;
  /**
   * 'in-place' (default): GroupQueryAttention writes each call's entries into the cache, returned
   * as present_key/value.{i} over the same buffers as past_key/value.{i} (the GPU engines).
   * 'read-only': the cache is an input only, its values transposed (past_value.{i} [B, kvH, hd,
   * C]); attention runs in MatMuls over it (readonly-attention.ts) and the graph returns just
   * this call's entries, new_key/new_value.{i} [B, kvH, S, hd], which the caller writes into
   * its cache at newEntrySlots() (LmRunner does, the values transposed). For
   * onnxruntime-node, which copies every returned output into a fresh buffer: the whole cache
   * after every step otherwise.
   */
  kvCache?: KvCacheMode;
  /**
   * How the q4/q8 embedding tables are read (ops.ts QuantizedLookup): 'GatherBlockQuantized'
   * (default; ORT's CPU and WebGPU EPs) or 'Gather', standard ops only, for the wasm EP of
   * onnxruntime-web's WebGPU build, which has no GatherBlockQuantized kernel. Same values.
   */
  quantizedLookup?: QuantizedLookup;
  /**
   * How linear layers with q4/q8 weights run (ops.ts QuantizedLinear): 'MatMulNBits' (default)
   * or 'int8' (requantized per output channel, MatMulIntegerToFloat; f32 activations only), for
   * the wasm EP, whose MatMulNBits is slow.
   */
  quantizedLinear?: QuantizedLinear;
}

export type { QuantizedLookup, QuantizedLinear } from './lm-ops.ts';

/** How a graph keeps the KV cache (LmGraphOptions.kvCache). */
export type KvCacheMode = 'in-place' | 'read-only';

export const LM_INPUTS = ['input_ids', 'seqlens_k', 'total_sequence_length', 'logits_index'] as const;
export const pastKey = (i: number) => `past_key.${i}`;
export const pastValue = (i: number) => `past_value.${i}`;
export const presentKey = (i: number) => `present_key.${i}`;
export const presentValue = (i: number) => `present_value.${i}`;
export const newKey = (i: number) => `new_key.${i}`;
export const newValue = (i: number) => `new_value.${i}`;

/** cos/sin tables [maxLen, hd/2] exactly as HF computes them in float32 (docs/model.md#forward-pass). */
export function ropeTables(headDim: number, theta: number, maxLen: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const f = Math.fround;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(theta ** f((2 * i) / headDim)));
  const cos = new Float32Array(maxLen * half);
  const sin = new Float32Array(maxLen * half);
  for (let p = 0; p < maxLen; p++) {
    for (let i = 0; i < half; i++) {
      const a = f(p * inv[i]!);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** Builds the LM step graph from converted weights; returns the serialized ONNX model. */
export function buildLmGraph(spec: LmSpec, weights: WeightGetter, opts: LmGraphOptions): Uint8Array {
  return lmGraph(spec, weights, opts).toBytes();
}

/**
 * The same graph with its weights (initializers of `minBytes` or more) as external data, for
 * onnxruntime-web: a model over 2 GB (f32 and f16-as-f32 weights at full size) cannot be one
 * protobuf, and the weights reach the runtime without being copied into one.
 */
export function buildLmGraphWithExternalData(spec: LmSpec, weights: WeightGetter, opts: LmGraphOptions, minBytes = EXTERNAL_DATA_MIN_BYTES): ModelWithExternalData {
  return lmGraph(spec, weights, opts).toModelWithExternalData(minBytes);
}

/** Initializers this large or larger go to external data (buildLmGraphWithExternalData). */
export const EXTERNAL_DATA_MIN_BYTES = 64 * 1024;

function lmGraph(spec: LmSpec, weights: WeightGetter, opts: LmGraphOptions): GraphBuilder {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads: kvH, headDim: hd, rmsNormEps: eps } = spec;
  const act: ActType = opts.activations === 'f16' ? 'float16' : 'float32';
  const maxSeqLen = opts.maxSeqLen ?? 4096 + 512;
  const g = new GraphBuilder('simplear-lm');
  const o = new LmOps(g, act, weights, opts.accuracyLevel ?? 0, opts.quantizedLookup, opts.quantizedLinear);

  const ids = g.input('input_ids', 'int32', ['batch', 'seq']);
  const seqlensK = g.input('seqlens_k', 'int32', ['batch']);
  const totalLen = opts.fixedTotalSequenceLength
    ? o.constInt32([opts.fixedTotalSequenceLength], [])
    : g.input('total_sequence_length', 'int32', []);
  const logitsIndex = g.input('logits_index', 'int32', ['batch', 'rows']);

  const rope = ropeTables(hd, spec.ropeTheta, maxSeqLen);
  const cos = o.constAct(Array.from(rope.cos), [maxSeqLen, hd / 2]);
  const sin = o.constAct(Array.from(rope.sin), [maxSeqLen, hd / 2]);

  // h = embed_tokens[ids]
  let h = embedTokens(o, spec, ids);
  const readOnly = opts.kvCache === 'read-only';
  const shared = readOnly ? readOnlyAttentionInputs(o, ids, seqlensK, totalLen, pastKey(0), numHeads / kvH) : undefined;

  let x = o.rmsNorm(h, 'layers.0.attn_norm.w', eps);
  let residual = h;
  let mlpOut = '';
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `layers.${i}`;
    if (i > 0) ({ normed: x, sum: residual } = o.skipRmsNorm(mlpOut, residual, `${p}.attn_norm.w`, eps));

    // attention: fused q/k/v projection, RoPE + causal GQA over the static cache
    const qkv = o.linear(x, `${p}.attn.qkv`, H, `${p}.attn.qkv.b`);
    const cacheDims = ['batch', kvH, 'cache_len', hd];
    const pk = g.input(pastKey(i), act, cacheDims);
    // A read-only cache keeps its values transposed (readonly-attention.ts)
    const pv = g.input(pastValue(i), act, shared ? ['batch', kvH, hd, 'cache_len'] : cacheDims);
    let attn: string;
    if (shared) {
      attn = readOnlyAttention(o, shared, qkv, pk, pv, cos, sin, { heads: numHeads, kvHeads: kvH, headDim: hd }, { key: newKey(i), value: newValue(i) });
      g.output(newKey(i), act, ['batch', kvH, 'seq', hd]);
      g.output(newValue(i), act, ['batch', kvH, 'seq', hd]);
    } else {
      [attn] = g.ms(
        'GroupQueryAttention',
        [qkv, '', '', pk, pv, seqlensK, totalLen, cos, sin],
        { num_heads: numHeads, kv_num_heads: kvH, do_rotary: 1, rotary_interleaved: 0 },
        [g.fresh('attn'), presentKey(i), presentValue(i)],
      ) as [string];
      g.output(presentKey(i), act, cacheDims);
      g.output(presentValue(i), act, cacheDims);
    }
    const a = o.linear(attn, `${p}.attn.o`, H);

    // MLP: down(silu(gate(x)) * up(x)) with gate/up fused into one projection
    ({ normed: x, sum: residual } = o.skipRmsNorm(a, residual, `${p}.mlp_norm.w`, eps));
    const gateUp = o.linear(x, `${p}.mlp.gate_up`, H);
    const [gate, up] = g.op('Split', [gateUp, g.constInt64([I, I])], { axis: -1 }, 2);
    mlpOut = o.linear(o.siluMul(gate!, up!), `${p}.mlp.down`, I);
  }
  const { normed } = o.skipRmsNorm(mlpOut, residual, 'final_norm.w', eps);

  // Only the requested positions reach the head: [B*S, H] gathered by logits_index → [B, R, H].
  const rows = g.op1('Gather', [g.op1('Reshape', [normed, g.constInt64([-1, H])]), logitsIndex], { axis: 0 });
  let logits = visualHead(o, spec, rows, logitsIndex);
  if (act !== 'float32') logits = g.op1('Cast', [logits], { to: 1 });
  g.op('Identity', [logits], {}, ['logits']);
  g.output('logits', 'float32', ['batch', 'rows', spec.visualCount]);
  return g;
}

/**
 * Input embedding. Text ids (< visualOffset) come from `embed.text`; visual ids from the visual
 * rows of the tied output head (`head`), or from `embed.visual` when the checkpoint is untied.
 * Both lookups run for every token on clamped indices and Where picks the right one: cheaper and
 * simpler than splitting the sequence, and it keeps everything on the GPU.
 */
function embedTokens(o: LmOps, spec: LmSpec, ids: string): string {
  const g = o.g;
  const off = spec.visualOffset;
  const visualTable = o.has('embed.visual.q') || o.has('embed.visual.w') ? 'embed.visual' : 'head';
  const textIdx = g.op1('Min', [ids, o.constInt32([off - 1], [])]);
  const visIdx = g.op1('Max', [g.op1('Sub', [ids, o.constInt32([off], [])]), o.constInt32([0], [])]);
  const text = o.embed(textIdx, 'embed.text', spec.hiddenSize);
  const visual = o.embed(visIdx, visualTable, spec.hiddenSize);
  const isVisual = g.op1('Unsqueeze', [g.op1('GreaterOrEqual', [ids, o.constInt32([off], [])]), g.constInt64([2])]);
  return g.op1('Where', [isVisual, visual, text]);
}

/** [B, R, H] → [B, R, visualCount] over the visual rows of the head. */
function visualHead(o: LmOps, spec: LmSpec, rows: string, logitsIndex: string): string {
  const g = o.g;
  if (o.has('head.q')) return o.linear(rows, 'head', spec.hiddenSize);
  // Plain weights: the head is stored [visualCount, H] (shared with the visual embedding
  // lookup), so multiply with Gemm transB=1 on the flattened rows.
  const flat = g.op1('Reshape', [rows, g.constInt64([-1, spec.hiddenSize])]);
  const y = g.op1('Gemm', [flat, o.weight('head.w')], { transB: 1 });
  const shape = g.op1('Concat', [g.op1('Shape', [logitsIndex]), g.constInt64([spec.visualCount])], { axis: 0 });
  return g.op1('Reshape', [y, shape]);
}
