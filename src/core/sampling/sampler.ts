// Repetition penalty + CFG + temperature + top-k + top-p + the draw, for one step, on the CPU.
//
// This is the reference for the WebGPU sampler (sampler-wgsl.ts): both do the same f32 arithmetic
// in the same order (chunked sums over SAMPLER_THREADS contiguous slices, then a sequential sum of
// the chunk sums), so a seed gives the same tokens on every backend, up to exp() rounding.
//
// CFG on logits, u + cfg·(c − u), gives the same distribution as the reference's log-softmax form
// (docs/model.md#cfg). Only the visual rows are sampled (docs/model.md#deviations: a deliberate
// deviation).

import { penalisedLogit, type SeenCodes } from './repetition.ts';

export interface SamplingParams {
  /**
   * Transformers' repetition penalty on the conditional stream (repetition.ts); 1 or undefined =
   * off. Needs the stream's seen codes.
   */
  repetitionPenalty?: number;
  /** Guidance scale; 1 = conditional logits only. */
  cfg: number;
  /** 0 = greedy (argmax). */
  temperature: number;
  /** Keep the k largest; >= vocabulary size = off. */
  topK: number;
  /** Nucleus mass in (0, 1]; 1 = off. */
  topP: number;
}

/** Work-group width of the GPU sampler; the CPU mirrors its summation order. */
export const SAMPLER_THREADS = 256;

const f = Math.fround;
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Order-preserving map from f32 to u32: a < b ⇔ key(a) < key(b). */
export function floatKey(v: number): number {
  f32[0] = v;
  const b = u32[0]!;
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

function bitsToFloat(b: number): number {
  u32[0] = b >>> 0;
  return f32[0]!;
}

export class CpuSampler {
  private readonly scores: Float32Array;
  private readonly weights: Float32Array;
  private readonly keys: Uint32Array;
  private readonly chunk: number;

  constructor(readonly vocab: number) {
    this.scores = new Float32Array(vocab);
    this.weights = new Float32Array(vocab);
    this.keys = new Uint32Array(vocab);
    this.chunk = Math.ceil(vocab / SAMPLER_THREADS);
  }

  /**
   * Picks a visual code from the conditional and negative logits of one step.
   * `u` is this step's uniform in [0, 1). `seen`: the conditional stream's codes so far, for
   * the repetition penalty (none: nothing is penalised). Returns an index in [0, vocab).
   */
  sample(cond: Float32Array, uncond: Float32Array, p: SamplingParams, u: number, seen?: SeenCodes): number {
    const weighed = this.weigh(cond, uncond, p, seen);
    return weighed.greedy !== undefined ? weighed.greedy : this.draw(weighed.floor, u);
  }

  /**
   * The distribution `sample` draws from, normalised into `out` (length vocab): the kept
   * weights over their total; temperature 0 gives a point mass on the argmax. Speculative
   * decoding verifies drafts against exactly this.
   */
  probabilities(cond: Float32Array, uncond: Float32Array, p: SamplingParams, out: Float32Array, seen?: SeenCodes): Float32Array {
    const weighed = this.weigh(cond, uncond, p, seen);
    if (weighed.greedy !== undefined) {
      out.fill(0);
      out[weighed.greedy] = 1;
      return out;
    }
    const { weights: w, vocab: V } = this;
    const floor = weighed.floor;
    const total = this.massAbove(floor);
    for (let i = 0; i < V; i++) out[i] = w[i]! >= floor && w[i]! > 0 ? w[i]! / total : 0;
    return out;
  }

  /** Penalty, CFG, temperature, top-k and top-p into `weights`; the nucleus floor (or the greedy pick). */
  private weigh(cond: Float32Array, uncond: Float32Array, p: SamplingParams, seen: SeenCodes | undefined): { floor: number; greedy?: number } {
    const { scores: s, vocab: V } = this;
    const cfg = f(p.cfg);
    const penalty = p.repetitionPenalty ?? 1;
    const penalised = penalty !== 1 && seen !== undefined ? seen : undefined;
    for (let i = 0; i < V; i++) {
      const c = penalised?.has(i) ? penalisedLogit(cond[i]!, penalty) : cond[i]!;
      const n = uncond[i]!;
      s[i] = f(n + f(cfg * f(c - n)));
    }
    if (p.temperature === 0) return { floor: 0, greedy: argmax(s) };
    const invT = f(1 / p.temperature);
    let max = -Infinity;
    for (let i = 0; i < V; i++) {
      s[i] = f(s[i]! * invT);
      if (s[i]! > max) max = s[i]!;
    }
    const kMin = p.topK < V ? this.kthLargestKey(Math.max(1, Math.floor(p.topK))) : 0;
    const w = this.weights;
    for (let i = 0; i < V; i++) w[i] = floatKey(s[i]!) >= kMin ? f(Math.exp(f(s[i]! - max))) : 0;
    return { floor: p.topP < 1 ? this.nucleusFloor(f(p.topP)) : 0 };
  }

  /** Sum of weights >= floor, in the GPU's order. */
  massAbove(floor: number): number {
    const { weights: w, vocab: V, chunk } = this;
    let total = 0;
    for (let t = 0; t < SAMPLER_THREADS; t++) {
      let acc = 0;
      const end = Math.min(V, (t + 1) * chunk);
      for (let i = t * chunk; i < end; i++) if (w[i]! >= floor && w[i]! > 0) acc = f(acc + w[i]!);
      total = f(total + acc);
    }
    return total;
  }

  /** Key of the k-th largest score (exact: radix select over 8-bit digits, as on the GPU). */
  private kthLargestKey(k: number): number {
    const { scores: s, keys, vocab: V } = this;
    for (let i = 0; i < V; i++) keys[i] = floatKey(s[i]!);
    let prefix = 0;
    let prefixMask = 0;
    let remaining = k;
    const hist = new Uint32Array(256);
    for (let shift = 24; shift >= 0; shift -= 8) {
      hist.fill(0);
      for (let i = 0; i < V; i++) {
        const key = keys[i]!;
        if (((key & prefixMask) >>> 0) === prefix) hist[(key >>> shift) & 0xff]!++;
      }
      let digit = 255;
      for (; digit > 0; digit--) {
        if (hist[digit]! >= remaining) break;
        remaining -= hist[digit]!;
      }
      prefix = (prefix | (digit << shift)) >>> 0;
      prefixMask = (prefixMask | (0xff << shift)) >>> 0;
    }
    return prefix;
  }

  /** Largest weight floor v with mass(w >= v) >= p·mass(all): the nucleus, by bisection on f32 bits. */
  private nucleusFloor(topP: number): number {
    const target = f(topP * this.massAbove(0));
    let lo = 0; // bits of 0.0: everything kept, mass >= target
    let hi = 0x3f800001; // just above 1.0 (the largest weight): nothing kept
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (this.massAbove(bitsToFloat(mid)) >= target) lo = mid;
      else hi = mid;
    }
    return bitsToFloat(lo);
  }

  /** Inverse-CDF draw in index order: chunk prefix sums first, then within the chunk. */
  private draw(floor: number, u: number): number {
    const { weights: w, vocab: V, chunk } = this;
    const sums = new Float32Array(SAMPLER_THREADS);
    let total = 0;
    for (let t = 0; t < SAMPLER_THREADS; t++) {
      let acc = 0;
      const end = Math.min(V, (t + 1) * chunk);
      for (let i = t * chunk; i < end; i++) if (w[i]! >= floor && w[i]! > 0) acc = f(acc + w[i]!);
      sums[t] = acc;
      total = f(total + acc);
    }
    const target = f(u * total);
    let prefix = 0;
    let last = -1;
    for (let t = 0; t < SAMPLER_THREADS; t++) {
      const next = f(prefix + sums[t]!);
      if (next > target) {
        let acc = prefix;
        const end = Math.min(V, (t + 1) * chunk);
        for (let i = t * chunk; i < end; i++) {
          if (!(w[i]! >= floor && w[i]! > 0)) continue;
          acc = f(acc + w[i]!);
          last = i;
          if (acc > target) return i;
        }
        return last;
      }
      prefix = next;
      if (sums[t]! > 0) last = lastKept(w, floor, t * chunk, Math.min(V, (t + 1) * chunk), last);
    }
    return last; // rounding put the target at the very end: the last kept token
  }
}

function lastKept(w: Float32Array, floor: number, start: number, end: number, fallback: number): number {
  for (let i = end - 1; i >= start; i--) if (w[i]! >= floor && w[i]! > 0) return i;
  return fallback;
}

/** First index of the maximum. */
export function argmax(s: Float32Array): number {
  let best = 0;
  for (let i = 1; i < s.length; i++) if (s[i]! > s[best]!) best = i;
  return best;
}
