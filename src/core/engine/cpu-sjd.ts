// Speculative Jacobi decoding on a CPU session (sjd-loop.ts): each CFG stream is a batch-1
// LmRunner with its own cache, allocated per generation and released with it.
import type { LmSpec } from '../model-spec.ts';
import { LmRunner, type LmRunnerOptions } from '../convert/lm/session-io.ts';
import type { CpuSampler } from '../sampling/sampler.ts';
import type { InferenceSession, OrtModule } from './ort.ts';
import { runSjdLoop, type StreamRunner } from './sjd-loop.ts';
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
  const stream = (): StreamRunner => {
    const runner = new LmRunner(ort, session, spec, { ...runnerOptions, batch: 1 });
    return {
      prefill: (prompt) => {
        prefillRuns++; // one call: the CPU EP takes the whole prompt at once
        return runner.prefill([prompt]);
      },
      runWindow: (ids) => {
        sessionRuns++;
        return runner.runWindow(ids);
      },
      advance: (count) => runner.advance(count),
    };
  };
  return runSjdLoop(
    {
      cond: stream(),
      uncond: stream(),
      // Every CPU run hands its logits to JS.
      stats: () => ({ prefillRuns, sessionRuns, readbacks: prefillRuns + sessionRuns, steadyStateAllocations: 0 }),
    },
    spec,
    sampler,
    req,
    sjd,
  );
}
