// Speculative Jacobi decoding on the real engine (onnxruntime-node, tiny fixture LM): greedy SJD
// gives exactly the reference's greedy tokens at every window; sampled SJD has the plain
// sampler's joint distribution of codes (chi-square against the exact distribution enumerated
// with the plain decode path), and the reference's forced-first-draft rule fails the same test;
// seeds reproduce; cancelling mid-SJD leaves the engine ready.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { CpuTokenLoop } from '../../src/core/engine/cpu-loop.ts';
import { lmGraphBytes } from '../../src/core/runtime/model.ts';
import type { GenerationProgress } from '../../src/core/engine/types.ts';
import { LmRunner } from '../../src/core/runtime/lm-runner.ts';
import { encodePrompt } from '../../src/core/model/prompt.ts';
import { exactAcceptance, sjdUniforms, type AcceptRule } from '../../src/core/sampling/jacobi.ts';
import { stepUniforms } from '../../src/core/sampling/prng.ts';
import { CpuSampler, type SamplingParams } from '../../src/core/sampling/sampler.ts';
import { DEFAULT_SETTINGS, SJD_WINDOW_LIMITS } from '../../src/core/engine/settings.ts';
import { chiSquare, chiSquareCritical } from '../helpers/chi-square.ts';
import { goldenGreedy, loadFixtureModel } from '../helpers/fixture-model.ts';

const V_ALL = DEFAULT_SETTINGS.topK;

describe('speculative Jacobi decoding on the CPU engine', () => {
  for (const [checkpoint, cosmos] of [
    ['tiny-simplear', 'tiny-cosmos'],
    ['tiny-simplear-b', 'tiny-cosmos-b'],
  ] as const) {
    it(`greedy SJD gives exactly the reference tokens at every window (${checkpoint})`, async () => {
      const ref = goldenGreedy(checkpoint);
      const engine = await createCpuEngine(ort, await loadFixtureModel(checkpoint, cosmos, 'f32'), { maxLatentSide: 8 });
      const side = Math.sqrt(ref.greedy.steps);
      const plain = await engine.generate({ prompt: ref.prompt, size: side * 16, temperature: 0, seed: 1 });
      expect(Array.from(plain.codes)).toEqual(ref.greedy.codes);
      for (const window of [1, 2, 5, SJD_WINDOW_LIMITS.max]) {
        const progress: GenerationProgress[] = [];
        const result = await engine.generate(
          { prompt: ref.prompt, size: side * 16, temperature: 0, seed: 1, sjd: { window } },
          { onProgress: (p) => progress.push(p) },
        );
        expect(Array.from(result.codes), `window ${window}`).toEqual(ref.greedy.codes);
        expect(result.rgba).toEqual(plain.rgba);
        const s = result.stats;
        expect(s.sjd).toBeDefined();
        // Every verification emits its accepted drafts plus one token; the first code is the prefill's.
        expect(s.runs + s.sjd!.draftsAccepted).toBe(ref.greedy.steps - 1);
        // The engine's read-only cache: both CFG streams in one batch-2 run, per window and for the prefill
        expect(s.sjd!.sessionRuns).toBe(s.runs);
        expect(s.acceptedPerRun).toBeCloseTo((ref.greedy.steps - 1) / s.runs);
        expect(s.prefillRuns).toBe(1);
        // Decode progress reaches every row and ends at the last token.
        const done = progress.filter((p) => p.phase === 'decode' && p.codes).map((p) => p.done);
        expect(done.at(-1)).toBe(ref.greedy.steps);
        expect(new Set(done.map((d) => Math.floor(d / side))).size).toBe(done.length);
      }
      await engine.dispose();
    });
  }

  it('greedy SJD with a KV cache growing by 4 slots (windows cross chunk boundaries) gives the reference tokens', async () => {
    const ref = goldenGreedy('tiny-simplear');
    const engine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8, kvCacheChunk: 4 });
    const side = Math.sqrt(ref.greedy.steps);
    for (const window of [1, 3, 7]) {
      const result = await engine.generate({ prompt: ref.prompt, size: side * 16, temperature: 0, seed: 1, sjd: { window } });
      expect(Array.from(result.codes), `window ${window}`).toEqual(ref.greedy.codes);
    }
    await engine.dispose();
  });

  it("greedy SJD on an in-place graph (a batch-1 runner per CFG stream) is the same, where the runtime returns fresh cache tensors (onnxruntime-web's behaviour) and the cache grows", async () => {
    const ref = goldenGreedy('tiny-simplear');
    const model = await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32');
    const { cond, uncond } = encodePrompt(model.tokenizer, ref.prompt);
    const capacity = Math.max(cond.length, uncond.length) + ref.greedy.steps;
    const session = await ort.InferenceSession.create(lmGraphBytes(model, 'f32', capacity), { executionProviders: ['cpu'], logSeverityLevel: 3 });
    // Not pre-allocated: each run's present_* come back as new tensors, which the runners adopt
    // (and copy into a bigger cache every 4 slots).
    const loop = new CpuTokenLoop(ort, session, model.lm, { capacity, preallocateOutputs: false, growBy: 4 });
    const side = Math.sqrt(ref.greedy.steps);
    const sampling: SamplingParams = { cfg: 6, temperature: 0, topK: V_ALL, topP: 1 };
    const out = await loop.runSjd(
      {
        cond,
        uncond,
        steps: ref.greedy.steps,
        rowLength: side,
        sampling,
        uniforms: stepUniforms(1, ref.greedy.steps),
      },
      { window: 3, uniforms: sjdUniforms(1) },
    );
    expect(Array.from(out.codes)).toEqual(ref.greedy.codes);
    expect(out.sjd!.sessionRuns).toBe(2 * out.runs); // GQA takes no batch-2 windows: one run per stream
    await loop.dispose();
  });

  it("sampled SJD has the plain sampler's joint distribution; the forced-first-draft rule does not", async () => {
    const model = await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32');
    const STEPS = 4;
    const { cond, uncond } = encodePrompt(model.tokenizer, 'a red fox in the snow');
    const capacity = Math.max(cond.length, uncond.length) + STEPS;
    // The CPU engine's graph: a read-only cache, both CFG streams in one batch-2 window run.
    const session = await ort.InferenceSession.create(lmGraphBytes(model, 'f32', capacity, { kvCache: 'read-only' }), {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      // One thread: the runs are tiny, and a thread pool only adds contention on a shared machine.
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    const V = model.lm.visualCount;
    const sampling: SamplingParams = { cfg: 2, temperature: 1.5, topK: 3, topP: 1 };

    // The exact joint distribution of the STEPS codes, enumerated with the plain (batch-2,
    // one-token-per-run) decode path and the sampler's own distribution.
    const sampler = new CpuSampler(V);
    const K = sampling.topK;
    const support: number[][] = [];
    const joint = new Map<string, number>();
    const walk = async (prefix: number[], p: number) => {
      if (prefix.length === STEPS) {
        joint.set(prefix.join(), p);
        return;
      }
      const runner = new LmRunner(ort, session, model.lm, { capacity, kvCache: 'read-only' });
      let logits = await runner.prefill([cond, uncond]);
      for (const code of prefix) logits = await runner.step([code + model.lm.visualOffset, code + model.lm.visualOffset]);
      const probs = sampler.probabilities(logits.subarray(0, V), logits.subarray(V, 2 * V), sampling, new Float32Array(V));
      const kept = [...probs.keys()].filter((i) => probs[i]! > 0);
      expect(kept).toHaveLength(K);
      support.push(kept);
      for (const code of kept) await walk([...prefix, code], p * probs[code]!);
    };
    await walk([], 1);
    // Plus one cell for "anything else", probability 0: a code outside the sampler's support.
    const cells = [...joint.keys()];
    const exact = [...cells.map((c) => joint.get(c)!), 0];

    const loop = new CpuTokenLoop(ort, session, model.lm, { capacity, kvCache: 'read-only' });
    const N = 600;
    const counts = async (window: number, rule: AcceptRule) => {
      const tally = new Float64Array(cells.length + 1);
      let runs = 0;
      for (let seed = 0; seed < N; seed++) {
        const out = await loop.runSjd(
          {
            cond,
            uncond,
            steps: STEPS,
            rowLength: STEPS,
            sampling,
            uniforms: stepUniforms(seed, STEPS),
          },
          { window, uniforms: sjdUniforms(seed), rule },
        );
        const cell = cells.indexOf(Array.from(out.codes).join());
        tally[cell >= 0 ? cell : cells.length]!++;
        runs += out.runs;
      }
      return { tally, acceptedPerRun: (N * (STEPS - 1)) / runs };
    };

    const ok = await counts(2, exactAcceptance);
    const fit = chiSquare(ok.tally, exact, N);
    console.log(`tiny LM, SJD window 2: chi2=${fit.stat.toFixed(1)} dof=${fit.dof} critical(1e-6)=${chiSquareCritical(fit.dof).toFixed(1)} accepted/run=${ok.acceptedPerRun.toFixed(2)}`);
    expect(fit.stat).toBeLessThan(chiSquareCritical(fit.dof));
    expect(ok.tally[cells.length], 'codes outside the top-k support').toBe(0);

    const forceFirst: AcceptRule = (slot, p, q, u) => slot === 1 || exactAcceptance(slot, p, q, u);
    const biased = await counts(2, forceFirst);
    const miss = chiSquare(biased.tally, exact, N);
    console.log(
      `tiny LM, forced first draft: chi2=${miss.stat.toFixed(1)} dof=${miss.dof} critical(1e-6)=${chiSquareCritical(miss.dof).toFixed(1)}, ` +
        `${biased.tally[cells.length]} of ${N} images with a code outside the top-${K} support`,
    );
    expect(miss.stat).toBeGreaterThan(chiSquareCritical(miss.dof));
    await loop.dispose();
  }, 120_000);

  it('is reproducible per seed, differs across seeds; cancel mid-SJD leaves the engine ready', async () => {
    const engine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    const req = { prompt: 'a blue dog', size: 64, seed: 7, topK: 50, sjd: { window: 4 } };
    const a = await engine.generate(req);
    const b = await engine.generate(req);
    const c = await engine.generate({ ...req, seed: 8 });
    expect(Array.from(b.codes)).toEqual(Array.from(a.codes));
    expect(Array.from(c.codes)).not.toEqual(Array.from(a.codes));
    expect(a.stats.sjd).toMatchObject({ window: 4 });
    expect(a.stats.acceptedPerRun).toBeGreaterThanOrEqual(1);

    const controller = new AbortController();
    let reports = 0;
    const cancelled = engine.generate(
      { ...req, size: 128 },
      { signal: controller.signal, onProgress: (p) => p.phase === 'decode' && p.done >= 8 && ++reports && controller.abort() },
    );
    await expect(cancelled).rejects.toMatchObject({ name: 'AbortError' });
    expect(reports).toBe(1); // stopped at the next window, not after the whole image
    const again = await engine.generate(req);
    expect(Array.from(again.codes)).toEqual(Array.from(a.codes));
    const plain = await engine.generate({ ...req, sjd: null });
    expect(plain.stats.sjd).toBeUndefined();
    expect(plain.stats.acceptedPerRun).toBe(1);
    await engine.dispose();
  });

  it('rejects a bad window before any work, naming the field', async () => {
    const engine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    for (const window of [0, SJD_WINDOW_LIMITS.max + 1, 2.5, Number.NaN, '4' as unknown as number]) {
      expect(() => engine.generate({ prompt: 'x', size: 64, sjd: { window } }), String(window)).toThrow(
        expect.objectContaining({ code: 'InvalidSettings', message: expect.stringContaining('sjd: window must be a whole number from 1 to 30') }),
      );
    }
    expect(() => engine.generate({ prompt: 'x', size: 64, sjd: {} as { window: number } })).toThrow(/sjd: window/);
    await engine.dispose();
  });
});
