// Speculative Jacobi decoding on a CPU session (sampling/jacobi.ts does the drafting and the
// acceptance). Each CFG stream has its own batch-1 runner and KV cache, because ORT's
// GroupQueryAttention rejects multi-token calls after a non-empty cache for batch > 1: one window
// verification = one run per stream over [last token, drafts…], with the logits of every
// position. Only the accepted prefix is committed; rejected positions are overwritten next run.
import type { LmSpec } from '../model-spec.ts';
import { LmRunner } from '../convert/lm/session-io.ts';
import { speculativeJacobiDecode, type WindowVerifier } from '../sampling/jacobi.ts';
import type { CpuSampler } from '../sampling/sampler.ts';
import type { InferenceSession, OrtModule } from './ort.ts';
import { throwIfAborted, type SjdLoopOptions, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';

class CpuWindowVerifier implements WindowVerifier {
  /** Two banks of window + 1 rows: one iteration's rows are the next one's proposals. */
  private readonly banks: Float32Array[][];
  private bank = 0;
  sessionRuns = 0;

  constructor(
    private readonly cond: LmRunner,
    private readonly uncond: LmRunner,
    private readonly sampler: CpuSampler,
    private readonly spec: LmSpec,
    private readonly sampling: TokenLoopRequest['sampling'],
    window: number,
  ) {
    const V = spec.visualCount;
    this.banks = [0, 1].map(() => Array.from({ length: window + 1 }, () => new Float32Array(V)));
  }

  async verify(last: number, drafts: Int32Array): Promise<readonly Float32Array[]> {
    const V = this.spec.visualCount;
    const ids = [last, ...drafts].map((code) => code + this.spec.visualOffset);
    const c = await this.cond.runWindow(ids);
    const u = await this.uncond.runWindow(ids);
    this.sessionRuns += 2;
    this.bank ^= 1;
    const rows = this.banks[this.bank]!.slice(0, ids.length);
    rows.forEach((out, i) => this.sampler.probabilities(c.subarray(i * V, (i + 1) * V), u.subarray(i * V, (i + 1) * V), this.sampling, out));
    return rows;
  }

  commit(count: number): void {
    this.cond.advance(count);
    this.uncond.advance(count);
  }
}

export async function runCpuSjd(
  ort: OrtModule,
  session: InferenceSession,
  spec: LmSpec,
  sampler: CpuSampler,
  opts: { capacity: number; preallocateOutputs: boolean },
  req: TokenLoopRequest,
  sjd: SjdLoopOptions,
): Promise<TokenLoopResult> {
  const V = spec.visualCount;
  const t0 = performance.now();
  throwIfAborted(req.signal);
  // Fresh caches per generation: SJD-only memory, released with the generation.
  const runner = () => new LmRunner(ort, session, spec, { batch: 1, capacity: opts.capacity, preallocateOutputs: opts.preallocateOutputs });
  const cond = runner();
  const uncond = runner();
  const c = await cond.prefill([req.cond]);
  const u = await uncond.prefill([req.uncond]);
  const first = sampler.probabilities(c.subarray(0, V), u.subarray(0, V), req.sampling, new Float32Array(V));
  req.onPrefilled?.();
  const t1 = performance.now();
  const verifier = new CpuWindowVerifier(cond, uncond, sampler, spec, req.sampling, sjd.window);
  let reportedRows = 0;
  const out = await speculativeJacobiDecode({
    first,
    steps: req.steps,
    window: sjd.window,
    verifier,
    uniforms: sjd.uniforms,
    ...(sjd.rule ? { rule: sjd.rule } : {}),
    checkpoint: () => throwIfAborted(req.signal),
    onTokens: (codes, count) => {
      // One report per completed row (an iteration may complete several, or none).
      const rows = Math.floor(count / req.rowLength);
      if (rows > reportedRows || count === req.steps) {
        reportedRows = rows;
        req.onRow?.(codes, count);
      }
    },
  });
  const t2 = performance.now();
  return {
    codes: out.codes,
    prefillMs: t1 - t0,
    decodeMs: t2 - t1,
    runs: out.iterations,
    prefillRuns: 2,
    readbacks: verifier.sessionRuns + 2,
    steadyStateAllocations: 0,
    graphCapture: false,
    acceptedPerRun: out.acceptedPerRun,
    sjd: {
      window: sjd.window,
      iterations: out.iterations,
      sessionRuns: verifier.sessionRuns,
      draftsProposed: out.draftsProposed,
      draftsAccepted: out.draftsAccepted,
      acceptedPerRun: out.acceptedPerRun,
    },
  };
}
