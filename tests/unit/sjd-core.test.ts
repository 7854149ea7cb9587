// Speculative Jacobi decoding, the algorithm alone (sampling/jacobi.ts), on a toy language model
// whose next-token distribution depends on the whole context. Small enough that the exact joint
// distribution of every emitted sequence can be enumerated: SJD must reproduce it (chi-square),
// and the same test must reject the reference's rule that forces the first draft through.
import { describe, expect, it } from 'vitest';
import {
  drawFrom,
  drawResidual,
  exactAcceptance,
  sjdUniforms,
  speculativeJacobiDecode,
  type AcceptRule,
  type WindowVerifier,
} from '../../src/core/sampling/jacobi.ts';
import { chiSquare, chiSquareCritical } from '../helpers/chi-square.ts';

const V = 3;
const STEPS = 5;

/** Toy next-token distribution: softmax of hashed logits of the whole context (temperature 0 = argmax). */
function target(context: readonly number[], temperature: number): Float32Array {
  let h = 0x9e3779b9;
  for (const t of context) h = Math.imul(h ^ (t + 1), 0x85ebca6b) ^ (h >>> 13);
  const logits = Array.from({ length: V }, (_, i) => {
    const x = Math.imul(h ^ Math.imul(i + 7, 0xc2b2ae35), 0x27d4eb2f) >>> 0;
    return (x / 2 ** 32) * 3; // in [0, 3): clearly different distributions per context
  });
  const out = new Float32Array(V);
  if (temperature === 0) {
    out[logits.indexOf(Math.max(...logits))] = 1;
    return out;
  }
  const w = logits.map((l) => Math.exp(l / temperature));
  const z = w.reduce((a, b) => a + b, 0);
  w.forEach((v, i) => (out[i] = v / z));
  return out;
}

/** A toy "model run": the target rows of [last, ...drafts] after the committed prefix. */
class ToyVerifier implements WindowVerifier {
  readonly prefix: number[] = [];
  private pending: number[] = [];
  constructor(private readonly temperature: number) {}
  async verify(last: number, drafts: Int32Array): Promise<readonly Float32Array[]> {
    this.pending = [last, ...drafts];
    return this.pending.map((_, i) => target([...this.prefix, ...this.pending.slice(0, i + 1)], this.temperature));
  }
  commit(count: number): void {
    this.prefix.push(...this.pending.slice(0, count));
  }
}

async function generate(seed: number, window: number, temperature: number, rule: AcceptRule = exactAcceptance) {
  const verifier = new ToyVerifier(temperature);
  const out = await speculativeJacobiDecode({
    first: target([], temperature),
    steps: STEPS,
    window,
    verifier,
    uniforms: sjdUniforms(seed),
    rule,
  });
  // The committed prefix is exactly the emitted tokens but the last (which is never fed).
  expect(verifier.prefix).toEqual(Array.from(out.codes.subarray(0, STEPS - 1)));
  return out;
}

/** Exact probability of every sequence of STEPS tokens, indexed base V (first token most significant). */
function exactJoint(temperature: number): Float64Array {
  const probs = new Float64Array(V ** STEPS);
  const walk = (context: number[], p: number) => {
    if (context.length === STEPS) {
      probs[context.reduce((a, t) => a * V + t, 0)] = p;
      return;
    }
    const next = target(context, temperature);
    for (let t = 0; t < V; t++) if (next[t]! > 0) walk([...context, t], p * next[t]!);
  };
  walk([], 1);
  return probs;
}

async function jointCounts(window: number, rule: AcceptRule, N: number, temperature: number) {
  const counts = new Float64Array(V ** STEPS);
  let iterations = 0;
  for (let seed = 0; seed < N; seed++) {
    const out = await generate(seed, window, temperature, rule);
    counts[Array.from(out.codes).reduce((a, t) => a * V + t, 0)]!++;
    iterations += out.iterations;
  }
  return { counts, acceptedPerRun: (N * (STEPS - 1)) / iterations };
}

describe('speculative Jacobi decoding (algorithm)', () => {
  const N = 24_000;
  const T = 1;
  const exact = exactJoint(T);

  for (const window of [1, 2, 4]) {
    it(`emits sequences with exactly the sampler's joint distribution (window ${window})`, async () => {
      const { counts, acceptedPerRun } = await jointCounts(window, exactAcceptance, N, T);
      const { stat, dof } = chiSquare(counts, exact, N);
      console.log(`sjd window ${window}: chi2=${stat.toFixed(1)} dof=${dof} critical(1e-6)=${chiSquareCritical(dof).toFixed(1)} accepted/run=${acceptedPerRun.toFixed(2)}`);
      expect(stat).toBeLessThan(chiSquareCritical(dof));
      // Jacobi drafts do get accepted on this toy model: more than one token per run.
      expect(acceptedPerRun).toBeGreaterThan(1.1);
    });
  }

  it("the same test rejects the reference's rule (first draft forced through): it has power", async () => {
    const forceFirst: AcceptRule = (slot, p, q, u) => slot === 1 || exactAcceptance(slot, p, q, u);
    for (const window of [1, 4]) {
      const { counts } = await jointCounts(window, forceFirst, N, T);
      const { stat, dof } = chiSquare(counts, exact, N);
      console.log(`forced first draft, window ${window}: chi2=${stat.toFixed(1)} dof=${dof} critical=${chiSquareCritical(dof).toFixed(1)}`);
      expect(stat).toBeGreaterThan(chiSquareCritical(dof));
    }
  });

  it('temperature 0 reproduces greedy decoding; every iteration emits its accepted drafts + 1', async () => {
    const greedy: number[] = [];
    for (let i = 0; i < STEPS; i++) greedy.push(target(greedy, 0).indexOf(1));
    for (const window of [1, 2, 3, 4, 8]) {
      for (const seed of [0, 1, 2]) {
        const out = await generate(seed, window, 0);
        expect(Array.from(out.codes)).toEqual(greedy);
        expect(out.iterations + out.draftsAccepted).toBe(STEPS - 1);
        expect(out.acceptedPerRun).toBeCloseTo((STEPS - 1) / out.iterations);
      }
    }
  });

  it('is reproducible per seed and differs across seeds', async () => {
    const a = await generate(11, 3, 1);
    expect(Array.from((await generate(11, 3, 1)).codes)).toEqual(Array.from(a.codes));
    const others = await Promise.all([12, 13, 14, 15, 16].map((s) => generate(s, 3, 1)));
    expect(others.some((o) => Array.from(o.codes).join() !== Array.from(a.codes).join())).toBe(true);
  });

  it('draws: inverse CDF in index order; the residual max(0, p − q), or p where none is left', () => {
    const p = Float32Array.from([0.5, 0.25, 0.25]);
    expect([0, 0.49, 0.5, 0.74, 0.75, 0.999].map((u) => drawFrom(p, u))).toEqual([0, 0, 1, 1, 2, 2]);
    const q = Float32Array.from([0.75, 0.25, 0]);
    // residual = [0, 0, 0.25]: only token 2 is possible
    expect([0, 0.5, 0.999].map((u) => drawResidual(p, q, u))).toEqual([2, 2, 2]);
    expect(drawResidual(p, p, 0.6)).toBe(1);
  });
});
