// The repetition penalty in speculative Jacobi decoding (engine/sjd-loop.ts): every window row is
// the plain sampler's distribution for its own prefix, so row i's seen codes are the committed
// codes and drafts 1 … i. On a toy LM whose logits favour a few codes strongly, greedy SJD accepts
// many drafts and must give the plain greedy tokens, which are computed here independently
// (float64 argmax of u + cfg·(c' − u), c' penalised on the conditional stream's seen ids).
import { describe, expect, it } from 'vitest';
import { SIMPLEAR_05B, type LmSpec } from '../../src/core/base/model-spec.ts';
import { runSjdLoop, type CfgRunner } from '../../src/core/engine/sjd-loop.ts';
import { sjdUniforms } from '../../src/core/sampling/jacobi.ts';
import { CpuSampler, type SamplingParams } from '../../src/core/sampling/sampler.ts';

const V = 24;
const OFFSET = 10;
const spec: LmSpec = { ...SIMPLEAR_05B, vocabSize: OFFSET + V, visualOffset: OFFSET, visualCount: V };
const STEPS = 20;

/** The conditional stream's fixed preference per code (the negative stream's is flat). */
let condBase: (code: number) => number = () => 0;

/** Toy logits of a stream after `context`: its fixed preference plus a small context hash. */
function logits(context: readonly number[], stream: 0 | 1): Float32Array {
  let h = 0x9e3779b9 + stream;
  for (const t of context) h = Math.imul(h ^ (t + 1), 0x85ebca6b) ^ (h >>> 13);
  return Float32Array.from({ length: V }, (_, i) => {
    const x = Math.imul(h ^ Math.imul(i + 7, 0xc2b2ae35), 0x27d4eb2f) >>> 0;
    return (stream === 0 ? condBase(i) : 0) + (x / 2 ** 32) * 0.05;
  });
}

/** Both streams with their own committed prefixes; a window's rows follow [prefix, ids[0..i]]. */
class ToyRunner implements CfgRunner {
  private readonly prefix: [number[], number[]] = [[], []];
  private window: number[] = [];
  async prefill(cond: readonly number[], uncond: readonly number[]) {
    this.prefix[0].push(...cond);
    this.prefix[1].push(...uncond);
    return { cond: logits(this.prefix[0], 0), uncond: logits(this.prefix[1], 1) };
  }
  async runWindow(ids: readonly number[]) {
    this.window = [...ids];
    const rows = (s: 0 | 1) => {
      const out = new Float32Array(ids.length * V);
      ids.forEach((_, i) => out.set(logits([...this.prefix[s], ...ids.slice(0, i + 1)], s), i * V));
      return out;
    };
    return { cond: rows(0), uncond: rows(1) };
  }
  advance(count: number): void {
    for (const s of [0, 1] as const) this.prefix[s].push(...this.window.slice(0, count));
  }
}

/** Plain greedy decoding with the penalty, in float64, independent of the engine's code. */
function plainGreedy(cond: number[], uncond: number[], cfg: number, penalty: number): number[] {
  const streams = [[...cond], [...uncond]];
  const codes: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    const c = logits(streams[0]!, 0);
    const u = logits(streams[1]!, 1);
    const seen = new Set(streams[0]);
    const s = Array.from(c, (x, i) => {
      const p = seen.has(OFFSET + i) ? (x < 0 ? x * penalty : x / penalty) : x;
      return u[i]! + cfg * (p - u[i]!);
    });
    const code = s.indexOf(Math.max(...s));
    codes.push(code);
    for (const stream of streams) stream.push(OFFSET + code);
  }
  return codes;
}

async function sjdGreedy(cond: number[], uncond: number[], sampling: SamplingParams, window: number) {
  return runSjdLoop(
    { runner: new ToyRunner(), stats: () => ({ prefillRuns: 1, sessionRuns: 0, readbacks: 0, steadyStateAllocations: 0 }) },
    spec,
    new CpuSampler(V),
    { cond, uncond, steps: STEPS, rowLength: STEPS, sampling, uniforms: new Float32Array(STEPS) },
    { window, uniforms: sjdUniforms(1) },
  );
}

describe('repetition penalty in SJD (each window row penalised for its own prefix)', () => {
  // A visual id in the conditional prompt is penalised from the first step; the negative prompt's is not.
  const cond = [1, 2, OFFSET + 0, 3];
  const uncond = [1, OFFSET + 1, 4];

  // Positive conditional logits (divided when seen), then negative ones (multiplied): a seen code
  // drops below several unseen ones, so the greedy tokens run through new codes.
  const cases: [string, number, (code: number) => number][] = [
    ['positive logits', 1.6, (i) => 2 - i * 0.08],
    ['negative logits', 1.6, (i) => -0.5 - i * 0.03],
  ];
  for (const [name, penalty, base] of cases) {
    it(`greedy SJD gives the plain greedy tokens at every window (${name}, penalty ${penalty})`, async () => {
      condBase = base;
      const expected = plainGreedy(cond, uncond, 2, penalty);
      // The penalty matters here: without it the tokens differ.
      expect(expected).not.toEqual(plainGreedy(cond, uncond, 2, 1));
      let accepted = 0;
      for (const window of [1, 3, 6]) {
        const out = await sjdGreedy(cond, uncond, { cfg: 2, temperature: 0, topK: V, topP: 1, repetitionPenalty: penalty }, window);
        expect(Array.from(out.codes), `window ${window}`).toEqual(expected);
        accepted += out.sjd!.draftsAccepted;
      }
      // Drafts were accepted, so rows after accepted drafts were checked too.
      expect(accepted).toBeGreaterThan(STEPS / 2);
    });
  }
});
