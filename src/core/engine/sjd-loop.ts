// Speculative Jacobi decoding as a token loop, for any backend that can run both CFG streams
// over a window and hand the logits of every window position to JS (sampling/jacobi.ts does the
// drafting and the acceptance, CpuSampler.probabilities gives the targets).
//
// One window verification runs [last token, drafts…] after each stream's prefix: in one batch-2
// run where the graph allows it (the CPU's read-only cache), else one batch-1 run per stream,
// each with its own KV cache (ORT's GroupQueryAttention rejects multi-token calls after a
// non-empty cache for batch > 1). Only the accepted prefix is committed; the cache entries of
// rejected positions are overwritten by the next run.
import type { LmSpec } from '../base/model-spec.ts';
import { speculativeJacobiDecode, type WindowVerifier } from '../sampling/jacobi.ts';
import type { CpuSampler, SamplingParams } from '../sampling/sampler.ts';
import { SeenCodes } from '../sampling/repetition.ts';
import { LoopProgress } from './loop-progress.ts';
import { throwIfAborted, type SjdLoopOptions, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';

/** One CFG stream with its own batch-1 cache. */
export interface StreamRunner {
  /** Prefills the prompt; logits [visualCount] of its last token. */
  prefill(prompt: readonly number[]): Promise<Float32Array>;
  /** Runs token ids after the committed prefix without committing them; logits [S × visualCount]. */
  runWindow(ids: readonly number[]): Promise<Float32Array>;
  /** The first `count` ids of the latest window are now prefix. */
  advance(count: number): void;
}

/** Both CFG streams, however the backend runs them. */
export interface CfgRunner {
  /** Prefills both prompts; logits [visualCount] of each one's last token. */
  prefill(cond: readonly number[], uncond: readonly number[]): Promise<CfgLogits>;
  /** Runs the same ids after each stream's committed prefix without committing them; logits
   * [S × visualCount] per stream. */
  runWindow(ids: readonly number[]): Promise<CfgLogits>;
  /** The first `count` ids of the latest window are now prefix, in both streams. */
  advance(count: number): void;
}

export interface CfgLogits {
  cond: Float32Array;
  uncond: Float32Array;
}

/** A CfgRunner over two batch-1 streams, one run each. */
export function separateStreams(cond: StreamRunner, uncond: StreamRunner): CfgRunner {
  return {
    prefill: async (c, u) => ({ cond: await cond.prefill(c), uncond: await uncond.prefill(u) }),
    runWindow: async (ids) => ({ cond: await cond.runWindow(ids), uncond: await uncond.runWindow(ids) }),
    advance: (count) => {
      cond.advance(count);
      uncond.advance(count);
    },
  };
}

/** Backend counters, read once the loop is done. */
export interface SjdBackendStats {
  prefillRuns: number;
  sessionRuns: number;
  readbacks: number;
  steadyStateAllocations: number;
}

class StreamsVerifier implements WindowVerifier {
  /** Two banks of window + 1 rows: one iteration's rows are the next one's proposals. */
  private readonly banks: Float32Array[][];
  private bank = 0;
  /** The drafts of the latest verify: commit() moves the accepted ones into `committed`. */
  private drafts = new Int32Array(0);
  /** Row i's seen codes: the committed ones and drafts 1 … i (its own prefix). */
  private readonly rowSeen: SeenCodes;

  constructor(
    private readonly runner: CfgRunner,
    private readonly sampler: CpuSampler,
    private readonly spec: LmSpec,
    private readonly sampling: SamplingParams,
    window: number,
    /** The conditional stream's codes so far (the repetition penalty's), the prompt's and the first code. */
    private readonly committed: SeenCodes,
  ) {
    const V = spec.visualCount;
    this.banks = [0, 1].map(() => Array.from({ length: window + 1 }, () => new Float32Array(V)));
    this.rowSeen = new SeenCodes(V);
  }

  async verify(last: number, drafts: Int32Array): Promise<readonly Float32Array[]> {
    const V = this.spec.visualCount;
    const ids = [last, ...drafts].map((code) => code + this.spec.visualOffset);
    const { cond: c, uncond: u } = await this.runner.runWindow(ids);
    this.bank ^= 1;
    const rows = this.banks[this.bank]!.slice(0, ids.length);
    // Each target is the plain sampler's distribution for its own prefix, penalty included: row i
    // follows `last` and drafts 1 … i.
    this.committed.add(last);
    this.drafts = drafts.slice();
    const seen = this.committed.copyTo(this.rowSeen);
    rows.forEach((out, i) => {
      if (i > 0) seen.add(drafts[i - 1]!);
      this.sampler.probabilities(c.subarray(i * V, (i + 1) * V), u.subarray(i * V, (i + 1) * V), this.sampling, out, seen);
    });
    return rows;
  }

  commit(count: number): void {
    // `last` (already in) and the count − 1 accepted drafts.
    for (let i = 0; i < count - 1; i++) this.committed.add(this.drafts[i]!);
    this.runner.advance(count);
  }
}

export async function runSjdLoop(
  streams: { runner: CfgRunner; stats: () => SjdBackendStats; onWarm?: () => void },
  spec: LmSpec,
  sampler: CpuSampler,
  req: TokenLoopRequest,
  sjd: SjdLoopOptions,
): Promise<TokenLoopResult> {
  const V = spec.visualCount;
  const progress = new LoopProgress(req);
  throwIfAborted(req.signal);
  const { cond: c, uncond: u } = await streams.runner.prefill(req.cond, req.uncond);
  // The conditional stream's seen codes: its prompt's, and the kept codes' ids that follow it.
  const seen = SeenCodes.ofTokens(req.cond, spec.visualOffset, V);
  const first = sampler.probabilities(c.subarray(0, V), u.subarray(0, V), req.sampling, new Float32Array(V), seen);
  progress.prefilled();
  const verifier = new StreamsVerifier(streams.runner, sampler, spec, req.sampling, sjd.window, seen);
  let reports = 0;
  const out = await speculativeJacobiDecode({
    first,
    steps: req.steps,
    ...(req.kept ? { kept: req.kept } : {}),
    window: sjd.window,
    verifier,
    uniforms: sjd.uniforms,
    ...(sjd.rule ? { rule: sjd.rule } : {}),
    checkpoint: () => throwIfAborted(req.signal),
    onTokens: (codes, count) => {
      if (reports++ === 1) streams.onWarm?.(); // after the first window run (report 0 is the prefill's token)
      // An iteration may complete several rows, or none: one report either way.
      progress.sampled(codes, count);
    },
  });
  const backend = streams.stats();
  return progress.result(out.codes, {
    runs: out.iterations,
    prefillRuns: backend.prefillRuns,
    readbacks: backend.readbacks,
    steadyStateAllocations: backend.steadyStateAllocations,
    graphCapture: false,
    acceptedPerRun: out.acceptedPerRun,
    sjd: {
      window: sjd.window,
      iterations: out.iterations,
      sessionRuns: backend.sessionRuns,
      draftsProposed: out.draftsProposed,
      draftsAccepted: out.draftsAccepted,
      acceptedPerRun: out.acceptedPerRun,
    },
  });
}
