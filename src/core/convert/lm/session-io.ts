// A small CPU-side driver for the LM graph (graph.ts): static KV cache tensors, the feeds of
// prefill and decode steps, and a runner used by the tests and the Node CLI. The GPU-resident
// engine loop builds the same feeds from GPU buffers; the contract is documented in graph.ts.
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import type { LmSpec } from '../../model-spec.ts';
import { pastKey, pastValue, presentKey, presentValue } from './graph.ts';

/** The `Tensor` constructor of whichever onnxruntime package is in use (node or web). */
export type TensorCtor = typeof Tensor;

export interface KvCache {
  /** past_key.{i}/past_value.{i} → tensor, [B, kvH, capacity, hd]. */
  tensors: Record<string, Tensor>;
  capacity: number;
  batch: number;
}

/** Zeroed CPU cache tensors (f32, or f16 as Uint16Array bits). */
export function createKvCache(ortTensor: TensorCtor, spec: LmSpec, batch: number, capacity: number, dtype: 'float32' | 'float16' = 'float32'): KvCache {
  const dims = [batch, spec.numKvHeads, capacity, spec.headDim];
  const n = dims.reduce((a, b) => a * b, 1);
  const tensors: Record<string, Tensor> = {};
  for (let i = 0; i < spec.numLayers; i++) {
    for (const name of [pastKey(i), pastValue(i)]) {
      tensors[name] = dtype === 'float32' ? new ortTensor('float32', new Float32Array(n), dims) : new ortTensor('float16', new Uint16Array(n), dims);
    }
  }
  return { tensors, capacity, batch };
}

export interface StepFeeds {
  input_ids: Int32Array;
  seqlens_k: Int32Array;
  total_sequence_length: number;
  logits_index: Int32Array;
  /** [B, S] and [B, R]. */
  seq: number;
  rows: number;
}

/**
 * Prefill of one prompt per row, right-padded to the longest (pad id 0). Returns the feeds for
 * the logits of each row's last real token.
 */
export function prefillFeeds(prompts: readonly (readonly number[])[], padId = 0): StepFeeds {
  const B = prompts.length;
  const S = Math.max(...prompts.map((p) => p.length));
  if (S === 0) throw new Error('prefillFeeds: empty prompt');
  const ids = new Int32Array(B * S).fill(padId);
  const seqlens = new Int32Array(B);
  const index = new Int32Array(B);
  prompts.forEach((p, b) => {
    if (p.length === 0) throw new Error(`prefillFeeds: prompt ${b} is empty`);
    ids.set(p, b * S);
    seqlens[b] = p.length - 1;
    index[b] = b * S + p.length - 1;
  });
  return { input_ids: ids, seqlens_k: seqlens, total_sequence_length: S, logits_index: index, seq: S, rows: 1 };
}

/** One call of a prefill schedule: its feeds, and for which rows it yields the final logits. */
export interface PrefillCall {
  feeds: StepFeeds;
  /** final[b]: this call processes row b's last prompt token (its logits are row b's result). */
  final: boolean[];
}

/**
 * Prefill as a schedule of graph calls, each of at most `maxChunk` tokens per row.
 * Batch 1: consecutive chunks of ≤ maxChunk tokens (GQA accepts multi-token calls after a
 * non-empty cache for batch 1). Batch > 1: the first min(longest prompt, maxChunk) tokens of
 * every row in one call (right-padded), then the remaining tokens one per call (decode-style,
 * S = 1); a row that has run out of prompt tokens is "parked": it is fed the pad id at
 * slot = its length, which the first generated token overwrites later (its logits are ignored).
 *
 * Why: ORT's GroupQueryAttention rejects multi-token calls after a non-empty cache when the
 * batch is > 1, so a CFG batch of 2 cannot be prefilled in several chunks; and the WebGPU EP's
 * dense prefill kernel (used for S ≥ 32) gives wrong results on adapters with 4-wide subgroups
 * (SwiftShader; found by tests/golden/lm-webgpu.test.ts), while calls with S < 32 take its
 * split-reduce kernels, which are right everywhere. `maxChunk = 31` keeps every call on that
 * path; Infinity (default) prefills in one call.
 */
export function prefillSchedule(prompts: readonly (readonly number[])[], maxChunk = Infinity, padId = 0): PrefillCall[] {
  const lens = prompts.map((p) => p.length);
  if (lens.some((l) => l === 0)) throw new Error('prefillSchedule: empty prompt');
  const longest = Math.max(...lens);
  const S0 = Math.max(1, Math.min(longest, maxChunk));
  const first = prefillFeeds(prompts.map((p) => p.slice(0, S0)), padId);
  const calls: PrefillCall[] = [{ feeds: first, final: lens.map((l) => l <= S0) }];
  if (prompts.length === 1) {
    const p = prompts[0]!;
    for (let start = S0; start < p.length; start += S0) {
      const S = Math.min(S0, p.length - start);
      const feeds: StepFeeds = {
        input_ids: Int32Array.from(p.slice(start, start + S)),
        seqlens_k: Int32Array.of(start + S - 1),
        total_sequence_length: start + S,
        logits_index: Int32Array.of(S - 1),
        seq: S,
        rows: 1,
      };
      calls.push({ feeds, final: [start + S === p.length] });
    }
    return calls;
  }
  for (let t = S0; t < longest; t++) {
    const tokens = prompts.map((p) => (t < p.length ? p[t]! : padId));
    const slots = lens.map((l) => Math.min(t, l));
    calls.push({ feeds: decodeFeeds(tokens, slots), final: lens.map((l) => t === l - 1) });
  }
  return calls;
}

/** One token per row, appended after `lengths[b]` tokens already in the cache. */
export function decodeFeeds(tokens: readonly number[], lengths: readonly number[]): StepFeeds {
  const B = tokens.length;
  const seqlens = Int32Array.from(lengths);
  return {
    input_ids: Int32Array.from(tokens),
    seqlens_k: seqlens,
    total_sequence_length: Math.max(...lengths) + 1,
    logits_index: Int32Array.from({ length: B }, (_, b) => b),
    seq: 1,
    rows: 1,
  };
}

/**
 * Slots by which a CPU runner's KV cache grows: 64, one latent row at 1024 px. After every run
 * onnxruntime-node copies each present_* output, the whole capacity of all 48 cache tensors, into
 * fresh ArrayBuffers, so a step costs time in proportion to the capacity, not the context.
 * Measured at full size (q4, batch 2, context ≈ 2080, 2 shared cores): each slot of capacity
 * costs 0.02–0.05 ms per step, and a growth (allocation + copy of the cache) 40–80 ms once. A
 * chunk of c slots costs c/2 idle slots per step plus one growth per c steps: the optimum is
 * c ≈ √(2 · growth / slot cost) ≈ 40–90. Against today's static 4608 slots, steps at context
 * ≈ P + 2048 are 15–20% faster with chunks of 64 or 256 alike (.prof measurements, alternating).
 */
export const KV_CACHE_CHUNK = 64;

/** The capacity a growing cache holds once `need` slots are in use: `need` rounded up to whole
 * chunks, at most `max` (chunk 0: always `max`, the static cache). */
export function grownCapacity(need: number, chunk: number, max: number): number {
  if (!(chunk > 0)) return max;
  return Math.min(max, Math.ceil(need / chunk) * chunk);
}

/** A copy of `cache` with `capacity` slots per row: the first min(old, new) slots of every
 * [b, h] block are kept, the rest are zero. */
export function resizeKvCache(ortTensor: TensorCtor, cache: KvCache, capacity: number): KvCache {
  const tensors: Record<string, Tensor> = {};
  const keep = Math.min(cache.capacity, capacity);
  for (const [name, t] of Object.entries(cache.tensors)) {
    const [B, H, oldCap, hd] = t.dims as [number, number, number, number];
    if (oldCap !== cache.capacity) throw new Error(`KV cache tensor ${name} has ${oldCap} slots, the cache ${cache.capacity}`);
    const src = t.data as Float32Array | Uint16Array;
    const dst = src instanceof Float32Array ? new Float32Array(B * H * capacity * hd) : new Uint16Array(B * H * capacity * hd);
    for (let bh = 0; bh < B * H; bh++) dst.set(src.subarray(bh * oldCap * hd, (bh * oldCap + keep) * hd), bh * capacity * hd);
    tensors[name] = src instanceof Float32Array ? new ortTensor('float32', dst as Float32Array, [B, H, capacity, hd]) : new ortTensor('float16', dst as Uint16Array, [B, H, capacity, hd]);
  }
  return { tensors, capacity, batch: cache.batch };
}

export interface LmRunnerOptions {
  /** Rows (2 for a CFG pair). Default 2. */
  batch?: number;
  /** The most cache slots per row the runner may use (≤ the graph's maxSeqLen): a call that needs
   * more throws "KV cache overflow". */
  capacity: number;
  /**
   * Growth of the cache: it holds `grownCapacity(slots in use, growBy, capacity)` slots, growing
   * (a bigger allocation and a copy of the old one) when a call needs more, and dropping back to
   * the prompt's size at each prefill. 0: `capacity` slots allocated once (a static cache).
   * Default KV_CACHE_CHUNK.
   */
  growBy?: number;
  dtype?: 'float32' | 'float16';
  /** Pass the cache tensors as the present_* fetches too (onnxruntime-node then writes them in
   * place). Default true. */
  preallocateOutputs?: boolean;
}

/**
 * Runs the LM graph on a CPU session (onnxruntime-node or the wasm EP) with a KV cache in JS
 * tensors. The cache tensors are passed as both `past_*` feeds and `present_*` fetches;
 * onnxruntime-node writes the present state into them in place. Where an ORT build returns fresh
 * output tensors instead (onnxruntime-web ignores pre-allocated CPU fetches; onnxruntime-node
 * also hands back a copy of each), the runner adopts them as the next step's past, so both
 * behaviours give the same results. The graph's cache dimension is symbolic, so the cache may
 * change size between calls (see LmRunnerOptions.growBy).
 */
export class LmRunner {
  readonly lengths: number[];
  /** The largest capacity the cache may grow to. */
  readonly maxCapacity: number;
  readonly growBy: number;
  private cache: KvCache;
  private readonly preallocate: boolean;
  private readonly dtype: 'float32' | 'float16';
  /** Growths so far (reallocations with a copy). */
  growths = 0;
  constructor(
    private readonly ort: { Tensor: TensorCtor },
    private readonly session: InferenceSession,
    private readonly spec: LmSpec,
    opts: LmRunnerOptions,
  ) {
    this.maxCapacity = opts.capacity;
    this.growBy = opts.growBy ?? KV_CACHE_CHUNK;
    this.dtype = opts.dtype ?? 'float32';
    this.cache = createKvCache(ort.Tensor, spec, opts.batch ?? 2, grownCapacity(1, this.growBy, this.maxCapacity), this.dtype);
    this.lengths = new Array(this.cache.batch).fill(0);
    this.preallocate = opts.preallocateOutputs ?? true;
  }

  /** Slots per row the cache holds now. */
  get capacity(): number {
    return this.cache.capacity;
  }

  /** Makes room for `need` slots per row (growing, with a copy of the cache), or throws. */
  private reserve(need: number): void {
    if (need > this.maxCapacity) throw new Error(`KV cache overflow: ${need} > ${this.maxCapacity}`);
    if (need <= this.cache.capacity) return;
    this.cache = resizeKvCache(this.ort.Tensor, this.cache, grownCapacity(need, this.growBy, this.maxCapacity));
    this.growths++;
  }

  /** Logits [B * R * visualCount] of one graph call. */
  async run(f: StepFeeds): Promise<Float32Array> {
    const { Tensor } = this.ort;
    const B = this.cache.batch;
    if (f.input_ids.length !== B * f.seq) throw new Error(`feeds for batch ${f.input_ids.length / f.seq}, runner has ${B}`);
    this.reserve(Math.max(Math.max(...Array.from(f.seqlens_k)) + 1, f.total_sequence_length));
    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int32', f.input_ids, [B, f.seq]),
      seqlens_k: new Tensor('int32', f.seqlens_k, [B]),
      total_sequence_length: new Tensor('int32', Int32Array.of(f.total_sequence_length), []),
      logits_index: new Tensor('int32', f.logits_index, [B, f.rows]),
      ...this.cache.tensors,
    };
    const fetches: Record<string, Tensor | null> = { logits: null };
    for (let i = 0; i < this.spec.numLayers; i++) {
      fetches[presentKey(i)] = this.preallocate ? this.cache.tensors[pastKey(i)]! : null;
      fetches[presentValue(i)] = this.preallocate ? this.cache.tensors[pastValue(i)]! : null;
    }
    const out = await this.session.run(feeds, fetches);
    for (let i = 0; i < this.spec.numLayers; i++) {
      const k = out[presentKey(i)];
      const v = out[presentValue(i)];
      // Same buffer (written in place) or a fresh output: either way it is the new past.
      if (k && k.data !== this.cache.tensors[pastKey(i)]!.data) this.adopt(pastKey(i), k);
      if (v && v.data !== this.cache.tensors[pastValue(i)]!.data) this.adopt(pastValue(i), v);
    }
    return out.logits!.data as Float32Array;
  }

  private adopt(name: string, t: Tensor): void {
    if (t.dims[2] !== this.cache.capacity) throw new Error(`${name}: the session returned ${t.dims[2]} cache slots, the runner has ${this.cache.capacity}`);
    this.cache.tensors[name] = t;
  }

  /**
   * Prefills one prompt per row; logits [B * visualCount] of each row's last token.
   * `maxChunk`: see prefillSchedule (31 on WebGPU adapters with narrow subgroups).
   */
  async prefill(prompts: readonly (readonly number[])[], maxChunk = Infinity): Promise<Float32Array> {
    const V = this.spec.visualCount;
    // A new sequence: a growing cache is sized afresh for the prompt (nothing to copy; a cache
    // grown by an earlier, longer generation would cost its whole capacity on every step).
    const longest = Math.max(...prompts.map((p) => p.length));
    if (longest > this.maxCapacity) throw new Error(`KV cache overflow: ${longest} > ${this.maxCapacity}`);
    const size = grownCapacity(longest, this.growBy, this.maxCapacity);
    if (size !== this.cache.capacity) this.cache = createKvCache(this.ort.Tensor, this.spec, this.cache.batch, size, this.dtype);
    const out = new Float32Array(prompts.length * V);
    for (const call of prefillSchedule(prompts, maxChunk)) {
      const logits = await this.run(call.feeds);
      call.final.forEach((f, b) => f && out.set(logits.subarray(b * V, (b + 1) * V), b * V));
    }
    prompts.forEach((p, b) => (this.lengths[b] = p.length));
    return out;
  }

  /**
   * Batch 1: runs `tokens` after the cached prefix WITHOUT counting them as prefix; logits
   * [S * visualCount], one row per token. `advance` then keeps the first tokens of the window;
   * the cache entries of the others are overwritten by the next run (speculative decoding).
   */
  async runWindow(tokens: readonly number[]): Promise<Float32Array> {
    if (this.cache.batch !== 1) throw new Error('runWindow: batch-1 runners only (GQA rejects multi-token calls after a cache for B > 1)');
    const L = this.lengths[0]!;
    const S = tokens.length;
    return this.run({
      input_ids: Int32Array.from(tokens),
      seqlens_k: Int32Array.of(L + S - 1),
      total_sequence_length: L + S,
      logits_index: Int32Array.from({ length: S }, (_, i) => i),
      seq: S,
      rows: S,
    });
  }

  /** Counts the first `count` tokens of the latest runWindow as cached prefix. */
  advance(count: number): void {
    this.lengths[0]! += count;
  }

  /** Appends one token per row; logits [B * visualCount]. */
  async step(tokens: readonly number[]): Promise<Float32Array> {
    const logits = await this.run(decodeFeeds(tokens, this.lengths));
    for (let b = 0; b < tokens.length; b++) this.lengths[b]! += 1;
    return logits;
  }
}

/** log_softmax(u + cfg·(c − u)) over one row of V logits (SPEC B.5.2: same distribution as the
 * log-prob form). */
export function cfgLogProbs(cond: Float32Array, uncond: Float32Array, cfg: number): Float64Array {
  const n = cond.length;
  const s = new Float64Array(n);
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    s[i] = uncond[i]! + cfg * (cond[i]! - uncond[i]!);
    if (s[i]! > max) max = s[i]!;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(s[i]! - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < n; i++) s[i]! -= lse;
  return s;
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}
