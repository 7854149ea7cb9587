// The decode loop on a CPU session (onnxruntime-node, or ORT's wasm EP in a browser without
// WebGPU): logits come back to JS every step anyway, so sampling runs in JS (CpuSampler).
import type { LmSpec } from '../base/model-spec.ts';
import { LmRunner, type LmRunnerOptions } from '../runtime/lm-runner.ts';
import { CpuSampler } from '../sampling/sampler.ts';
import { SeenCodes } from '../sampling/repetition.ts';
import { runCpuSjd } from './cpu-sjd.ts';
import type { InferenceSession, OrtModule } from '../base/ort.ts';
import { LoopProgress } from './loop-progress.ts';
import { codesWithKept, firstSampledStep, throwIfAborted, type SjdLoopOptions, type TokenLoop, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';

export class CpuTokenLoop implements TokenLoop {
  /** The CFG pair's runner, which holds the KV cache: dropped by dispose() so it can be freed
   * while the engine lives on (a one-shot engine decodes after it, engine.ts). */
  private pair: LmRunner | undefined;
  private readonly sampler: CpuSampler;

  constructor(
    private readonly ort: OrtModule,
    private readonly session: InferenceSession,
    private readonly spec: LmSpec,
    /** The runners' options (the CFG pair's, and SJD's runners: cpu-sjd.ts sets their batch);
     * they must match the session's graph (dtype, kvCache). */
    private readonly runnerOptions: Omit<LmRunnerOptions, 'batch'>,
  ) {
    this.pair = new LmRunner(ort, session, spec, runnerOptions);
    this.sampler = new CpuSampler(spec.visualCount);
  }

  async runPlain(req: TokenLoopRequest): Promise<TokenLoopResult> {
    const V = this.spec.visualCount;
    const codes = codesWithKept(req);
    const progress = new LoopProgress(req);
    throwIfAborted(req.signal);
    let logits = await this.runner.prefill([req.cond, req.uncond]);
    progress.prefilled();
    let runs = 0;
    // The conditional stream's ids so far, for the repetition penalty: its prompt (and the kept
    // codes' ids after it), then each code.
    const seen = SeenCodes.ofTokens(req.cond, this.spec.visualOffset, V);
    for (let step = firstSampledStep(req); step < req.steps; step++) {
      throwIfAborted(req.signal);
      const code = this.sampler.sample(logits.subarray(0, V), logits.subarray(V, 2 * V), req.sampling, req.uniforms[step]!, seen);
      codes[step] = code;
      seen.add(code);
      progress.sampled(codes, step + 1);
      if (step + 1 === req.steps) break;
      const id = code + this.spec.visualOffset;
      logits = await this.runner.step([id, id]);
      runs++;
    }
    // Every CPU run hands its logits to JS.
    return progress.result(codes, { runs, prefillRuns: 1, readbacks: runs + 1, steadyStateAllocations: 0, graphCapture: false });
  }

  runSjd(req: TokenLoopRequest, sjd: SjdLoopOptions): Promise<TokenLoopResult> {
    return runCpuSjd(this.ort, this.session, this.spec, this.sampler, this.runnerOptions, req, sjd);
  }

  private get runner(): LmRunner {
    if (!this.pair) throw new Error('this token loop was disposed');
    return this.pair;
  }

  async dispose(): Promise<void> {
    this.pair = undefined;
    await this.session.release();
  }
}
