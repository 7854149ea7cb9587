import { describe, expect, it } from 'vitest';
import { CpuSampler, type SamplingParams } from '../../src/core/sampling/sampler.ts';
import { Pcg32, stepUniforms } from '../../src/core/sampling/prng.ts';
import { SeenCodes } from '../../src/core/sampling/repetition.ts';
import { chiSquare, chiSquareCritical } from '../helpers/chi-square.ts';

/**
 * The target distribution, computed independently in float64 the way the reference does it
 * (sort-based): the repetition penalty on the conditional logits of `seen` first.
 */
function expectedDistribution(cond: Float32Array, n: Float32Array, p: SamplingParams, seen: ReadonlySet<number> = new Set()): Float64Array {
  const V = cond.length;
  const penalty = p.repetitionPenalty ?? 1;
  const c = Array.from(cond, (v, i) => (seen.has(i) ? (v < 0 ? v * penalty : v / penalty) : v));
  const s = Array.from({ length: V }, (_, i) => (n[i]! + p.cfg * (c[i]! - n[i]!)) / p.temperature);
  const order = [...s.keys()].sort((a, b) => s[b]! - s[a]!);
  const keep = new Set(order.slice(0, Math.min(p.topK, V)));
  const max = s[order[0]!]!;
  const w = s.map((v, i) => (keep.has(i) ? Math.exp(v - max) : 0));
  const z = w.reduce((a, b) => a + b, 0);
  const probs = w.map((v) => v / z);
  if (p.topP < 1) {
    // HF TopP: drop the smallest tokens while the dropped mass stays <= 1 - top_p.
    const asc = [...order].reverse().filter((i) => probs[i]! > 0);
    let dropped = 0;
    for (const i of asc) {
      if (dropped + probs[i]! > 1 - p.topP) break;
      dropped += probs[i]!;
      probs[i] = 0;
    }
    const z2 = probs.reduce((a, b) => a + b, 0);
    for (let i = 0; i < V; i++) probs[i]! /= z2;
  }
  return Float64Array.from(probs);
}

function randomLogits(rng: Pcg32, V: number, scale: number): Float32Array {
  // Box-Muller normals from the PRNG: a deterministic, realistic logit spread.
  const out = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    const u1 = Math.max(rng.nextUniform(), 1e-9);
    const u2 = rng.nextUniform();
    out[i] = scale * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  return out;
}

describe('CpuSampler', () => {
  const V = 200;
  const rng = new Pcg32(7);
  const cond = randomLogits(rng, V, 1.2);
  const uncond = randomLogits(rng, V, 1.2);
  const cases: [string, SamplingParams][] = [
    ['plain CFG, T=1', { cfg: 6, temperature: 1, topK: V, topP: 1 }],
    ['T=0.7, top-k 40', { cfg: 3, temperature: 0.7, topK: 40, topP: 1 }],
    ['top-p 0.8', { cfg: 2, temperature: 1.3, topK: V, topP: 0.8 }],
    ['top-k 60 and top-p 0.9', { cfg: 6, temperature: 2, topK: 60, topP: 0.9 }],
    ['cfg 1 (conditional only)', { cfg: 1, temperature: 1, topK: V, topP: 1 }],
  ];

  for (const [name, params] of cases) {
    it(`draws follow softmax(CFG/T) restricted by top-k/top-p: ${name}`, () => {
      const sampler = new CpuSampler(V);
      const N = 60_000;
      const u = stepUniforms(1234, N);
      const counts = new Float64Array(V);
      for (let i = 0; i < N; i++) counts[sampler.sample(cond, uncond, params, u[i]!)]!++;
      const probs = expectedDistribution(cond, uncond, params);
      // Nothing outside the allowed set is ever drawn.
      for (let i = 0; i < V; i++) if (probs[i] === 0) expect(counts[i], `token ${i} is excluded`).toBe(0);
      const { stat, dof } = chiSquare(counts, probs, N);
      console.log(`sampler ${name}: chi2=${stat.toFixed(1)} dof=${dof} critical(1e-6)=${chiSquareCritical(dof).toFixed(1)}`);
      expect(stat).toBeLessThan(chiSquareCritical(dof));
    });
  }

  it('probabilities() is the distribution sample() draws from (what SJD verifies against)', () => {
    const sampler = new CpuSampler(V);
    const out = new Float32Array(V);
    for (const [, params] of cases) {
      const probs = expectedDistribution(cond, uncond, params);
      sampler.probabilities(cond, uncond, params, out);
      let sum = 0;
      for (let i = 0; i < V; i++) {
        sum += out[i]!;
        expect(out[i]! > 0, `support of token ${i}`).toBe(probs[i]! > 0);
        expect(Math.abs(out[i]! - probs[i]!)).toBeLessThan(1e-5);
      }
      expect(Math.abs(sum - 1)).toBeLessThan(1e-5);
    }
    const greedy = sampler.sample(cond, uncond, { cfg: 3, temperature: 0, topK: V, topP: 1 }, 0.5);
    sampler.probabilities(cond, uncond, { cfg: 3, temperature: 0, topK: V, topP: 1 }, out);
    expect(out[greedy]).toBe(1);
    expect(out.reduce((a, b) => a + b, 0)).toBe(1);
  });

  it('detects a wrong distribution (the test has power)', () => {
    const sampler = new CpuSampler(V);
    const N = 60_000;
    const u = stepUniforms(99, N);
    const counts = new Float64Array(V);
    const params = { cfg: 6, temperature: 1, topK: V, topP: 1 };
    for (let i = 0; i < N; i++) counts[sampler.sample(cond, uncond, params, u[i]!)]!++;
    const wrong = expectedDistribution(cond, uncond, { ...params, temperature: 1.1 });
    const { stat, dof } = chiSquare(counts, wrong, N);
    expect(stat).toBeGreaterThan(chiSquareCritical(dof));
  });

  it('temperature 0 is greedy over the CFG scores, first index on ties', () => {
    const sampler = new CpuSampler(4);
    const c = Float32Array.from([0, 3, 3, 1]);
    const n = Float32Array.from([0, 0, 0, 0]);
    expect(sampler.sample(c, n, { cfg: 2, temperature: 0, topK: 4, topP: 1 }, 0.99)).toBe(1);
    // CFG pushes away from the negative stream: 0 + 2·(1 − 5) < 0 + 2·(0 − (−1)).
    const c2 = Float32Array.from([1, 0]);
    const n2 = Float32Array.from([5, -1]);
    expect(sampler.sample(c2, n2, { cfg: 2, temperature: 0, topK: 2, topP: 1 }, 0.5)).toBe(1);
  });

  describe('repetition penalty (Transformers: seen ids of the conditional stream, before CFG)', () => {
    // The 20 best conditional logits and a spread of others, positive and negative, as seen codes.
    const order = [...cond.keys()].sort((a, b) => cond[b]! - cond[a]!);
    const seenIds = new Set([...order.slice(0, 20), ...order.filter((_, i) => i % 9 === 0)]);
    const seen = new SeenCodes(V);
    for (const id of seenIds) seen.add(id);

    it('draws follow the penalised distribution (chi-square), and the test has power against the unpenalised one', () => {
      const sampler = new CpuSampler(V);
      const params: SamplingParams = { cfg: 3, temperature: 1, topK: 80, topP: 0.95, repetitionPenalty: 1.3 };
      const N = 60_000;
      const u = stepUniforms(555, N);
      const counts = new Float64Array(V);
      for (let i = 0; i < N; i++) counts[sampler.sample(cond, uncond, params, u[i]!, seen)]!++;
      const probs = expectedDistribution(cond, uncond, params, seenIds);
      for (let i = 0; i < V; i++) if (probs[i] === 0) expect(counts[i], `token ${i} is excluded`).toBe(0);
      const { stat, dof } = chiSquare(counts, probs, N);
      expect(stat).toBeLessThan(chiSquareCritical(dof));
      const unpenalised = expectedDistribution(cond, uncond, { ...params, repetitionPenalty: 1 });
      expect(chiSquare(counts, unpenalised, N).stat).toBeGreaterThan(chiSquareCritical(chiSquare(counts, unpenalised, N).dof));
      // probabilities() gives the same penalised target (SJD verifies against it).
      const out = sampler.probabilities(cond, uncond, params, new Float32Array(V), seen);
      for (let i = 0; i < V; i++) expect(Math.abs(out[i]! - probs[i]!)).toBeLessThan(1e-5);
    });

    it('divides a positive seen logit, multiplies a negative one, leaves the negative stream and unseen codes alone; 1 or no set = off', () => {
      const sampler = new CpuSampler(3);
      const greedy = (c: number[], n: number[], penalty: number, seenCodes?: number[]) => {
        const set = seenCodes ? new SeenCodes(3) : undefined;
        for (const code of seenCodes ?? []) set!.add(code);
        return sampler.sample(Float32Array.from(c), Float32Array.from(n), { cfg: 1, temperature: 0, topK: 3, topP: 1, repetitionPenalty: penalty }, 0.5, set);
      };
      // 2 / 1.5 < 1.5: the seen best code loses to the next.
      expect(greedy([2, 1.5, 0], [0, 0, 0], 1.5, [0])).toBe(1);
      expect(greedy([2, 1.5, 0], [0, 0, 0], 1, [0])).toBe(0);
      expect(greedy([2, 1.5, 0], [0, 0, 0], 1.5)).toBe(0);
      // Negative: −1 · 1.5 < −1.2, so code 1 now beats it.
      expect(greedy([-5, -1.2, -1], [0, 0, 0], 1.5, [2])).toBe(1);
      // A penalty below 1 favours seen codes.
      expect(greedy([2, 1.5, 0], [0, 0, 0], 0.5, [1])).toBe(1);
      // cfg 2 on a seen code: s = u + 2·(c/p − u) with the negative logit as it is.
      const s = (c: number, n: number) => n + 2 * (c - n);
      const sampler2 = new CpuSampler(2);
      const set = new SeenCodes(2);
      set.add(0);
      // Unpenalised: 0 wins (s = 2·3 − 1 = 5 against 2·2 − 0 = 4); penalised c0 = 2: s = 3 < 4.
      expect(s(3, 1)).toBeGreaterThan(s(2, 0));
      expect(s(3 / 1.5, 1)).toBeLessThan(s(2, 0));
      expect(sampler2.sample(Float32Array.of(3, 2), Float32Array.of(1, 0), { cfg: 2, temperature: 0, topK: 2, topP: 1, repetitionPenalty: 1.5 }, 0, set)).toBe(1);
      expect(sampler2.sample(Float32Array.of(3, 2), Float32Array.of(1, 0), { cfg: 2, temperature: 0, topK: 2, topP: 1 }, 0, set)).toBe(0);
    });

    it('SeenCodes keeps one bit per visual code; a prompt contributes only its ids in the visual range', () => {
      const seenCodes = SeenCodes.ofTokens([3, 99, 100, 131, 132, 400], 100, 33);
      expect([...Array(33).keys()].filter((c) => seenCodes.has(c))).toEqual([0, 31, 32]);
      expect(seenCodes.words.length).toBe(2);
    });
  });

  it('top-k 1 always returns the best token whatever the uniform', () => {
    const sampler = new CpuSampler(V);
    const params = { cfg: 6, temperature: 1, topK: 1, topP: 1 };
    const greedy = sampler.sample(cond, uncond, { ...params, temperature: 0 }, 0);
    for (const u of [0, 0.25, 0.5, 0.999999]) expect(sampler.sample(cond, uncond, params, u)).toBe(greedy);
  });
});

describe('stepUniforms', () => {
  it('is reproducible per seed, differs across seeds, and stays in [0, 1) as exact f32', () => {
    const a = stepUniforms(42, 4096);
    expect(stepUniforms(42, 4096)).toEqual(a);
    expect(stepUniforms(43, 4096)).not.toEqual(a);
    for (const v of a) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(1);
      expect(Math.fround(v)).toBe(v);
    }
    const mean = a.reduce((x, y) => x + y, 0) / a.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
  });
});
