// The cost of one speculative Jacobi verification at the plain step's context, against the plain
// step: the accepted tokens per run above which SJD pays.
import { LmRunner } from '../../../src/core/runtime/lm-runner.ts';
import { median, round } from '../stats.ts';
import type { StepBench } from './step-bench.ts';

const SJD_BENCH_WINDOWS = [4, 8] as const;

export interface SjdWindowTiming {
  window: number;
  msPerIteration: number;
  /** Plain steps timed in turn with the windows (a shared machine drifts; the ratio holds). */
  msPerStepAlongside: number;
  /** Accepted tokens per run above which SJD is faster: msPerIteration / msPerStepAlongside. */
  breakEvenTokensPerRun: number;
}

/**
 * The cost of one SJD verification at the same context as the plain step, run as cpu-sjd.ts does
 * it: window + 1 tokens after each CFG stream's prefix, in one batch-2 run on a read-only cache,
 * else in two batch-1 runs; timed alternately with plain batch-2 steps. SJD only pays where the
 * accepted tokens per run exceed the ratio.
 */
export async function sjdWindowRuns({ ort, session, spec, capacity, lengths, token, plainStep, quick, dtype, kvCache }: StepBench): Promise<SjdWindowTiming[]> {
  const out: SjdWindowTiming[] = [];
  // Each runner's rows take lengths[offset + row] as their prefix.
  const runners =
    kvCache === 'read-only'
      ? [{ runner: new LmRunner(ort, session, spec, { batch: 2, capacity, dtype, kvCache }), offset: 0 }]
      : lengths.map((_, b) => ({ runner: new LmRunner(ort, session, spec, { batch: 1, capacity, dtype, kvCache }), offset: b }));
  for (const window of SJD_BENCH_WINDOWS) {
    const ids = new Array<number>(window + 1).fill(token);
    const windows: number[] = [];
    const steps: number[] = [];
    for (let i = 0; i < (quick ? 4 : 6); i++) {
      // nothing committed: the same context every time
      for (const { runner, offset } of runners) runner.lengths.forEach((_, row) => (runner.lengths[row] = lengths[offset + row]!));
      let t = performance.now();
      for (const { runner } of runners) await runner.runWindow(ids);
      const w = performance.now() - t;
      t = performance.now();
      await plainStep();
      const st = performance.now() - t;
      if (i > 0) {
        // the first call of a new shape warms up
        windows.push(w);
        steps.push(st);
      }
    }
    const msPerIteration = median(windows);
    const msPerStep = median(steps);
    out.push({ window, msPerIteration: round(msPerIteration), msPerStepAlongside: round(msPerStep), breakEvenTokensPerRun: round(msPerIteration / msPerStep) });
  }
  return out;
}
