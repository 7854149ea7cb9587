// Speculative Jacobi decoding on a CPU session (sjd-loop.ts): one batch-2 LmRunner for both CFG
// streams on a read-only-cache graph (the CPU engine's), else one batch-1 LmRunner per stream;
// the caches are allocated per generation and released with it.
import type { LmSpec } from '../base/model-spec.ts';
import { LmRunner, type LmRunnerOptions } from '../runtime/lm-runner.ts';
import type { CpuSampler } from '../sampling/sampler.ts';
import type { InferenceSession, OrtModule } from '../base/ort.ts';
import { runSjdLoop, separateStreams, type CfgLogits, type CfgRunner, type StreamRunner } from './sjd-loop.ts';
import type { SjdLoopOptions, TokenLoopRequest, TokenLoopResult } from './token-loop.ts';

export async function runCpuSjd(
  ort: OrtModule,
  session: InferenceSession,
  spec: LmSpec,
  sampler: CpuSampler,
  runnerOptions: Omit<LmRunnerOptions, 'batch'>,
  req: TokenLoopRequest,
  sjd: SjdLoopOptions,
): Promise<TokenLoopResult> {
  let prefillRuns = 0;
  let sessionRuns = 0;
  const counted = <T>(counter: 'prefill' | 'session', run: Promise<T>): Promise<T> => {
    if (counter === 'prefill') prefillRuns++;
    else sessionRuns++;
    return run;
  };
  const V = spec.visualCount;
  let runner: CfgRunner;
  if (runnerOptions.kvCache === 'read-only') {
    // One batch-2 runner: a read-only-cache graph takes multi-token windows after a cache at any
    // batch size, so each verification is one run (the weights are read once for both streams).
    const pair = new LmRunner(ort, session, spec, { ...runnerOptions, batch: 2 });
    const split = (logits: Float32Array, rows: number): CfgLogits => ({ cond: logits.subarray(0, rows * V), uncond: logits.subarray(rows * V, 2 * rows * V) });
    runner = {
      prefill: async (cond, uncond) => split(await counted('prefill', pair.prefill([cond, uncond])), 1),
      runWindow: async (ids) => split(await counted('session', pair.runWindow(ids)), ids.length),
      advance: (count) => pair.advance(count),
    };
  } else {
    const stream = (): StreamRunner => {
      const one = new LmRunner(ort, session, spec, { ...runnerOptions, batch: 1 });
      return {
        prefill: (prompt) => counted('prefill', one.prefill([prompt])), // one call: the CPU EP takes the whole prompt at once
        runWindow: (ids) => counted('session', one.runWindow(ids)),
        advance: (count) => one.advance(count),
      };
    };
    runner = separateStreams(stream(), stream());
  }
  return runSjdLoop(
    {
      runner,
      // Every CPU run hands its logits to JS.
      stats: () => ({ prefillRuns, sessionRuns, readbacks: prefillRuns + sessionRuns, steadyStateAllocations: 0 }),
    },
    spec,
    sampler,
    req,
    sjd,
  );
}
