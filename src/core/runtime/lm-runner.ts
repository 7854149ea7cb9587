// A CPU-side driver for the LM graph (model/lm-graph.ts): KV cache tensors, the feeds of prefill and
// decode steps, and the runner of the CPU engine, the tests and the benchmarks. The
// GPU-resident engine loop builds the same feeds from GPU buffers; model/lm-graph.ts documents the
// contract.
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import type { LmSpec } from '../base/model-spec.ts';
import { EventTurns } from '../base/event-turns.ts';
import { newKey, newValue, pastKey, pastValue, presentKey, presentValue, type KvCacheMode } from '../model/lm-graph.ts';

/** The `Tensor` constructor of whichever onnxruntime package is in use (node or web). */
export type TensorCtor = typeof Tensor;

export interface KvCache {
  /** past_key.{i}/past_value.{i} → tensor, [B, kvH, capacity, hd]; the values [B, kvH, hd,
   * capacity] when `transposedValues` (a read-only-cache graph's layout, model/lm-graph.ts). */
  tensors: Record<string, Tensor>;
  capacity: number;
  batch: number;
  transposedValues: boolean;
}

/** The shape of one cache tensor of `cache`'s layout at `capacity` slots. */
function cacheDims(spec: LmSpec, batch: number, capacity: number, transposed: boolean): number[] {
  return transposed ? [batch, spec.numKvHeads, spec.headDim, capacity] : [batch, spec.numKvHeads, capacity, spec.headDim];
}

function zeroTensor(ortTensor: TensorCtor, dtype: 'float32' | 'float16', dims: number[]): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return dtype === 'float32' ? new ortTensor('float32', new Float32Array(n), dims) : new ortTensor('float16', new Uint16Array(n), dims);
}

/** Zeroed CPU cache tensors (f32, or f16 as Uint16Array bits). */
export function createKvCache(
  ortTensor: TensorCtor,
  spec: LmSpec,
  batch: number,
  capacity: number,
  dtype: 'float32' | 'float16' = 'float32',
  transposedValues = false,
): KvCache {
  const tensors: Record<string, Tensor> = {};
  for (let i = 0; i < spec.numLayers; i++) {
    tensors[pastKey(i)] = zeroTensor(ortTensor, dtype, cacheDims(spec, batch, capacity, false));
    tensors[pastValue(i)] = zeroTensor(ortTensor, dtype, cacheDims(spec, batch, capacity, transposedValues));
  }
  return { tensors, capacity, batch, transposedValues };
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
 * (SwiftShader; found by an opt-in WebGPU check of the LM graph since folded into
 * tests/e2e/engine-webgpu.test.ts), while calls with S < 32 take its
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

/**
 * Whether prefilling each prompt on its own (batch 1, chunks of ≤ maxChunk tokens) takes fewer
 * calls than prefilling them together (prefillSchedule: after the first chunk, one token per
 * call). Past one chunk the batch's one-token calls dominate: a 45- and a 40-token prompt at
 * maxChunk 31 take 4 calls apart against 15 together.
 */
export function prefillApart(prompts: readonly (readonly number[])[], maxChunk: number): boolean {
  const apart = prompts.reduce((n, p) => n + Math.ceil(p.length / maxChunk), 0);
  return prompts.length > 1 && apart < prefillSchedule(prompts, maxChunk).length;
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
 * Slots by which a CPU runner's KV cache grows: 128, two latent rows at 1024 px. Attention reads
 * the whole cache (the read-only graph's MatMuls run over every slot, masked), so a step costs
 * time in proportion to the capacity, not the context. `npm run bench` at full size (q4, batch 2,
 * f32 read-only cache, context ≈ 2080, 2 shared cores): a static 4608-slot cache costs ×1.19 the
 * step of a 2112-slot one, ≈ 0.002 ms per slot; a growth (allocation + copy) ≈ 27 ms. A chunk of
 * c slots costs c/2 idle slots per step plus one growth per c steps: the optimum is
 * c ≈ √(2 · growth / slot cost) ≈ 150; at 128 both terms come to ≈ 0.35 ms per step (1%).
 */
export const KV_CACHE_CHUNK = 128;

/** The capacity a growing cache holds once `need` slots are in use: `need` rounded up to whole
 * chunks, at most `max` (chunk 0: always `max`, the static cache). */
export function grownCapacity(need: number, chunk: number, max: number): number {
  if (!(chunk > 0)) return max;
  return Math.min(max, Math.ceil(need / chunk) * chunk);
}

/** A copy of `cache` with `capacity` slots per row: the first min(old, new) slots of every
 * row are kept, the rest are zero. */
export function resizeKvCache(ortTensor: TensorCtor, cache: KvCache, capacity: number): KvCache {
  const keep = Math.min(cache.capacity, capacity);
  // The slot axis is 2 ([B, kvH, C, hd]: hd values per slot) or, for transposed values, 3
  // ([B, kvH, hd, C]: one value per slot).
  const resized = (name: string, slotAxis: 2 | 3): Tensor => {
    const t = cache.tensors[name]!;
    if (t.dims[slotAxis] !== cache.capacity) throw new Error(`KV cache tensor ${name} has ${t.dims[slotAxis]} slots, the cache ${cache.capacity}`);
    const inner = slotAxis === 2 ? t.dims[3]! : 1;
    const rows = t.dims.slice(0, slotAxis).reduce((a, b) => a * b, 1);
    const dims = [...t.dims];
    dims[slotAxis] = capacity;
    const next = zeroTensor(ortTensor, t.type as 'float32' | 'float16', dims);
    const src = t.data as Float32Array | Uint16Array;
    const dst = next.data as Float32Array | Uint16Array;
    for (let r = 0; r < rows; r++) dst.set(src.subarray(r * cache.capacity * inner, (r * cache.capacity + keep) * inner), r * capacity * inner);
    return next;
  };
  const tensors: Record<string, Tensor> = {};
  for (let i = 0; pastKey(i) in cache.tensors; i++) {
    tensors[pastKey(i)] = resized(pastKey(i), 2);
    tensors[pastValue(i)] = resized(pastValue(i), cache.transposedValues ? 3 : 2);
  }
  return { tensors, capacity, batch: cache.batch, transposedValues: cache.transposedValues };
}

/**
 * The first cache slot each row's tokens of a call go to (they fill S consecutive slots): 0 for
 * a first prompt (GroupQueryAttention's rule, S == total_sequence_length, padding included),
 * else seqlens_k[b] + 1 - S. The same rule as readonly-attention.ts (the `new_*` outputs' slots).
 */
export function newEntrySlots(f: StepFeeds): number[] {
  const first = f.seq === f.total_sequence_length;
  return Array.from(f.seqlens_k, (k) => (first ? 0 : k + 1 - f.seq));
}

/**
 * Writes a call's new entries [B, kvH, S, hd] (new_key/new_value.{i}) into a cache tensor
 * [B, kvH, C, hd] at `slots`, or (`transposed`) into a value cache kept as [B, kvH, hd, C].
 */
export function writeNewEntries(cache: Tensor, entries: Tensor, slots: readonly number[], transposed = false): void {
  const [B, H] = cache.dims as [number, number];
  const C = cache.dims[transposed ? 3 : 2]!;
  const hd = cache.dims[transposed ? 2 : 3]!;
  const S = entries.dims[2]!;
  const dst = cache.data as Float32Array | Uint16Array;
  const src = entries.data as Float32Array | Uint16Array;
  if (entries.dims[0] !== B || entries.dims[1] !== H || entries.dims[3] !== hd || src.constructor !== dst.constructor) {
    throw new Error(`new cache entries [${entries.dims.join(', ')}] ${entries.type} do not fit the cache [${cache.dims.join(', ')}] ${cache.type}`);
  }
  for (let b = 0; b < B; b++) {
    const slot = slots[b]!;
    if (slot < 0 || slot + S > C) throw new Error(`new cache entries at slots ${slot}..${slot + S - 1}: the cache holds ${C}`);
    for (let h = 0; h < H; h++) {
      const from = (b * H + h) * S * hd;
      if (!transposed) {
        dst.set(src.subarray(from, from + S * hd), ((b * H + h) * C + slot) * hd);
        continue;
      }
      // value dimension d of token s goes to row d, column slot + s (a few values: a plain loop)
      const base = (b * H + h) * hd * C + slot;
      for (let s = 0; s < S; s++) for (let d = 0; d < hd; d++) dst[base + d * C + s] = src[from + s * hd + d]!;
    }
  }
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
  /** The graph's LmGraphOptions.kvCache: 'read-only' graphs return only each call's entries,
   * which the runner writes into its cache. Default 'in-place'. */
  kvCache?: KvCacheMode;
}

/**
 * Runs the LM graph on a CPU session (onnxruntime-node or the wasm EP) with a KV cache in JS
 * tensors. A read-only-cache graph (the CPU engine's) takes them as `past_*` feeds and returns
 * each call's entries, which the runner writes into them. An in-place graph (GroupQueryAttention,
 * as on the GPU) gets them as both `past_*` feeds and `present_*` fetches: onnxruntime-node writes
 * them in place; where an ORT build returns fresh output tensors instead (onnxruntime-web ignores
 * pre-allocated CPU fetches; onnxruntime-node also hands back a copy of each), the runner adopts
 * them as the next step's past, so both behaviours give the same results. The graph's cache
 * dimension is symbolic, so the cache may change size between calls (LmRunnerOptions.growBy).
 */
export class LmRunner {
  readonly lengths: number[];
  /** The largest capacity the cache may grow to. */
  readonly maxCapacity: number;
  readonly growBy: number;
  private cache: KvCache;
  private readonly preallocate: boolean;
  private readonly dtype: 'float32' | 'float16';
  private readonly kvCache: KvCacheMode;
  /** Growths so far (reallocations with a copy). */
  growths = 0;
  /** The event loop's turns between runs, so that a cancel can arrive (base/event-turns.ts). */
  private readonly turns = new EventTurns();
  constructor(
    private readonly ort: { Tensor: TensorCtor },
    private readonly session: InferenceSession,
    private readonly spec: LmSpec,
    opts: LmRunnerOptions,
  ) {
    this.maxCapacity = opts.capacity;
    this.growBy = opts.growBy ?? KV_CACHE_CHUNK;
    this.dtype = opts.dtype ?? 'float32';
    this.kvCache = opts.kvCache ?? 'in-place';
    this.cache = createKvCache(ort.Tensor, spec, opts.batch ?? 2, grownCapacity(1, this.growBy, this.maxCapacity), this.dtype, this.kvCache === 'read-only');
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
    await this.turns.give();
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
    if (this.kvCache === 'read-only') return this.runNewEntries(feeds, newEntrySlots(f));
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

  /** A run of a read-only-cache graph: ORT only reads the cache; the call's entries are written
   * into it here. */
  private async runNewEntries(feeds: Record<string, Tensor>, slots: number[]): Promise<Float32Array> {
    const fetches: Record<string, Tensor | null> = { logits: null };
    for (let i = 0; i < this.spec.numLayers; i++) {
      fetches[newKey(i)] = null;
      fetches[newValue(i)] = null;
    }
    const out = await this.session.run(feeds, fetches);
    for (let i = 0; i < this.spec.numLayers; i++) {
      writeNewEntries(this.cache.tensors[pastKey(i)]!, out[newKey(i)]!, slots);
      writeNewEntries(this.cache.tensors[pastValue(i)]!, out[newValue(i)]!, slots, true);
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
    // A batch that repeatRows grew goes back to one row per prompt.
    if (size !== this.cache.capacity || prompts.length !== this.cache.batch) {
      this.cache = createKvCache(this.ort.Tensor, this.spec, prompts.length, size, this.dtype, this.cache.transposedValues);
      this.lengths.length = prompts.length;
    }
    const out = new Float32Array(prompts.length * V);
    for (const call of prefillSchedule(prompts, maxChunk)) {
      const logits = await this.run(call.feeds);
      call.final.forEach((f, b) => f && out.set(logits.subarray(b * V, (b + 1) * V), b * V));
    }
    prompts.forEach((p, b) => (this.lengths[b] = p.length));
    return out;
  }

  /**
   * Repeats every row's cache and length `times` over (rows [r0, r1] become [r0, r1, r0, r1, …]):
   * one prefill of a CFG pair serves N images, whose pairs then diverge. The batch grows to
   * B × times; feeds must match it from here on (the next prefill keeps it).
   */
  repeatRows(times: number): void {
    if (!Number.isInteger(times) || times < 1) throw new Error(`repeatRows: times must be a whole number >= 1 (got ${times})`);
    if (times === 1) return;
    const tensors: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(this.cache.tensors)) {
      const src = t.data as Float32Array | Uint16Array;
      const data = new (src.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(src.length * times);
      for (let k = 0; k < times; k++) data.set(src, k * src.length);
      const dims = [...t.dims];
      dims[0] = dims[0]! * times;
      tensors[name] = new this.ort.Tensor(t.type as 'float32', data as Float32Array, dims);
    }
    this.cache = { ...this.cache, tensors, batch: this.cache.batch * times };
    const lengths = this.lengths.slice();
    this.lengths.length = 0;
    for (let k = 0; k < times; k++) this.lengths.push(...lengths);
  }

  /** Rows the runner's cache holds (its batch). */
  get batch(): number {
    return this.cache.batch;
  }

  /**
   * Runs the same `tokens` after each row's cached prefix WITHOUT counting them as prefix; logits
   * [B × S × visualCount], one row per token. `advance` then keeps the first tokens of the window;
   * the cache entries of the others are overwritten by the next run (speculative decoding).
   * Batch 1 only on an in-place graph: ORT's GQA rejects multi-token calls after a cache for B > 1.
   */
  async runWindow(tokens: readonly number[]): Promise<Float32Array> {
    const B = this.cache.batch;
    if (B !== 1 && this.kvCache !== 'read-only') throw new Error('runWindow: batch-1 runners only on an in-place cache (GQA rejects multi-token calls after a cache for B > 1)');
    const S = tokens.length;
    const ids = new Int32Array(B * S);
    for (let b = 0; b < B; b++) ids.set(tokens, b * S);
    return this.run({
      input_ids: ids,
      seqlens_k: Int32Array.from(this.lengths, (L) => L + S - 1),
      total_sequence_length: Math.max(...this.lengths) + S,
      logits_index: Int32Array.from({ length: B * S }, (_, i) => i),
      seq: S,
      rows: S,
    });
  }

  /** Counts the first `count` tokens of the latest runWindow as cached prefix, in every row. */
  advance(count: number): void {
    for (let b = 0; b < this.lengths.length; b++) this.lengths[b]! += count;
  }

  /** Appends one token per row; logits [B * visualCount]. */
  async step(tokens: readonly number[]): Promise<Float32Array> {
    const logits = await this.run(decodeFeeds(tokens, this.lengths));
    for (let b = 0; b < tokens.length; b++) this.lengths[b]! += 1;
    return logits;
  }
}

/** log_softmax(u + cfg·(c − u)) over one row of V logits (docs/model.md#cfg: same distribution as the
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
