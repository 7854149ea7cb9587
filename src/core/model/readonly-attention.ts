// Causal GQA attention over a KV cache the graph only reads (LmGraphOptions.kvCache
// 'read-only'), in standard ops and two com.microsoft ones (RotaryEmbedding, FusedMatMul).
//
// Why: onnxruntime-node copies every output it returns into a fresh buffer, so a cache returned
// as present_* (GroupQueryAttention's in-place update) is copied whole after every step, and
// GQA's own kernel writing a separate present copies it as well. Here the cache is an input
// (onnxruntime-node wraps input buffers without a copy); each call returns only its own new
// entries (new_key/new_value.{i}, [B, kvH, S, hd]), which the caller writes into its cache at
// the slots newEntrySlots() gives (runtime/lm-runner.ts). The semantics are GQA's (lm-graph.ts contract):
// row b's S tokens take slots start_b..start_b+S-1 and attend to the cache slots before start_b
// and causally to each other, with start_b = 0 for a first prompt (S == total_sequence_length,
// padding included) and seqlens_k[b] + 1 - S otherwise.
//
// Layout: the G = heads / kvH query heads that share a KV head are stacked as rows of one
// matrix per (b, KV head): Q [B, kvH, G·S, hd] (row g·S + s), so every cache slot is read once
// per step by one GEMM (FusedMatMul, K transposed in the kernel), not once per query head.
import { float } from '../base/onnx-builder.ts';
import type { LmOps } from './lm-ops.ts';

/** Tensors every layer shares, computed once per graph call. */
export interface ReadOnlyAttentionInputs {
  /** int64 [B, S]: the rotary position of each token (= its cache slot). */
  positions: string;
  /**
   * act [B, 1, G·S, C + S], added to the scores of query row g·S + s against the C cache slots
   * and the S new tokens: 0 where it may attend (slot < start_b; new token s' ≤ s), else -inf.
   */
  mask: string;
  /** int64 [2]: [C, S], to split the softmax between cache slots and new tokens. */
  splitSizes: string;
}

export function readOnlyAttentionInputs(
  o: LmOps,
  ids: string,
  seqlensK: string,
  totalLen: string,
  pastKey0: string,
  groups: number,
): ReadOnlyAttentionInputs {
  const g = o.g;
  const i32 = (v: number) => o.constInt32([v], []);
  const dim = (x: string, axis: number) => g.op1('Cast', [g.op1('Gather', [g.op1('Shape', [x]), g.constInt64([axis])], { axis: 0 })], { to: 6 }); // int32 [1]
  const scalar = (x: string) => g.op1('Squeeze', [x, g.constInt64([0])]);
  const unsqueeze = (x: string, axes: number[]) => g.op1('Unsqueeze', [x, g.constInt64(axes)]);
  const S = dim(ids, 1);
  const C = dim(pastKey0, 2);
  const first = g.op1('Equal', [S, g.op1('Reshape', [totalLen, g.constInt64([1])])]);
  const start = g.op1('Where', [first, i32(0), g.op1('Sub', [g.op1('Add', [seqlensK, i32(1)]), S])]); // [B]
  const startCol = unsqueeze(start, [1]); // [B, 1]
  const offsets = g.op1('Range', [i32(0), scalar(S), i32(1)]); // [S]
  const positions = g.op1('Cast', [g.op1('Add', [startCol, offsets])], { to: 7 }); // int64 [B, S]

  // Column j < C is cache slot j (visible to row b iff j < start_b; start_b + S ≤ C, so no new
  // column passes this test); column C + s' is new token s', visible to row g·S + s iff s' ≤ s.
  const cols = g.op1('Range', [i32(0), scalar(g.op1('Add', [C, S])), i32(1)]); // [C + S]
  const slotVisible = unsqueeze(g.op1('Less', [unsqueeze(cols, [0]), startCol]), [1, 2]); // [B, 1, 1, C + S]
  const rowToken = unsqueeze(g.op1('Mod', [g.op1('Range', [i32(0), scalar(g.op1('Mul', [S, i32(groups)])), i32(1)]), S]), [1]); // [G·S, 1]
  const newCol = g.op1('Sub', [cols, C]); // [C + S]: s' for new columns, < 0 for cache slots
  const newVisible = g.op1('And', [g.op1('GreaterOrEqual', [newCol, i32(0)]), g.op1('LessOrEqual', [newCol, rowToken])]); // [G·S, C + S]
  const mask = g.op1('Where', [g.op1('Or', [slotVisible, newVisible]), o.constAct([0], []), o.constAct([-Infinity], [])]);
  const splitSizes = g.op1('Cast', [g.op1('Concat', [C, S], { axis: 0 })], { to: 7 });
  return { positions, mask, splitSizes };
}

/** Names for one layer's graph outputs: this call's rotated keys and its values, [B, kvH, S, hd]
 * (the caller transposes the values into its cache). */
export interface NewEntryOutputs {
  key: string;
  value: string;
}

/**
 * One layer: qkv [B, S, (heads + 2·kvH)·hd] (packed, biased), key cache [B, kvH, C, hd], value
 * cache transposed, [B, kvH, hd, C] (then P·V is Vᵀ·Pᵀ: the long cache axis is the GEMM's
 * reduction, measured 1.5× faster than P·V in ORT's CPU MatMul). Writes the call's entries to
 * `outputs`; returns the attention output [B, S, heads·hd] (as GroupQueryAttention's).
 */
export function readOnlyAttention(
  o: LmOps,
  x: ReadOnlyAttentionInputs,
  qkv: string,
  pastK: string,
  pastVt: string,
  cos: string,
  sin: string,
  dims: { heads: number; kvHeads: number; headDim: number },
  outputs: NewEntryOutputs,
): string {
  const g = o.g;
  const { heads, kvHeads: kvH, headDim: hd } = dims;
  const G = heads / kvH;
  const shape = (v: number[]) => g.constInt64(v);
  // [B, S, (heads + 2·kvH)·hd] → [B, heads + 2·kvH, S, hd] → q, k, v per head (BNSH)
  const perHead = g.op1('Transpose', [g.op1('Reshape', [qkv, shape([0, 0, heads + 2 * kvH, hd])])], { perm: [0, 2, 1, 3] });
  const [q, k, newValue] = g.op('Split', [perHead, shape([heads, kvH, kvH])], { axis: 1 }, [g.fresh('q'), g.fresh('k'), outputs.value]) as [string, string, string];
  const rotary = (t: string, out: string) => g.ms('RotaryEmbedding', [t, x.positions, cos, sin], { interleaved: 0 }, [out])[0]!;
  const newKey = rotary(k, outputs.key);
  // [B, heads, S, hd] → [B, kvH, G·S, hd]: the G query heads of KV head h stacked, row g·S + s
  const qRows = g.op1('Reshape', [rotary(q, g.fresh('q_rot')), shape([0, kvH, -1, hd])]);
  const scale = float(1 / Math.sqrt(hd));
  const scorePast = g.ms('FusedMatMul', [qRows, pastK], { transB: 1, alpha: scale })[0]!; // [B, kvH, G·S, C]
  const scoreNew = g.ms('FusedMatMul', [qRows, newKey], { transB: 1, alpha: scale })[0]!; // [B, kvH, G·S, S]
  const probs = g.op1('Softmax', [g.op1('Add', [g.op1('Concat', [scorePast, scoreNew], { axis: -1 }), x.mask])], { axis: -1 });
  const [pPast, pNew] = g.op('Split', [probs, x.splitSizes], { axis: -1 }, 2) as [string, string];
  const pvPast = g.ms('FusedMatMul', [pastVt, pPast], { transB: 1 })[0]!; // Vᵀ·Pᵀ
  const pvNew = g.ms('FusedMatMul', [newValue, pNew], { transA: 1, transB: 1 })[0]!; // (V_new)ᵀ·Pᵀ, no transpose op
  const rowsT = g.op1('Add', [pvPast, pvNew]); // [B, kvH, hd, G·S]
  // → [B, kvH, hd, G, S] → [B, S, kvH, G, hd] → [B, S, heads·hd]
  return g.op1('Reshape', [g.op1('Transpose', [g.op1('Reshape', [rowsT, shape([0, 0, hd, G, -1])])], { perm: [0, 4, 1, 3, 2] }), shape([0, 0, -1])]);
}
