// The decode loop on a CPU session (onnxruntime-node, or ORT's wasm EP in a browser without
// WebGPU): logits come back to JS every step anyway, so sampling runs in JS (CpuSampler).
import type { LmSpec } from '../base/model-spec.ts';
import { LmRunner, type LmRunnerOptions } from '../runtime/lm-runner.ts';
import { CpuSampler } from '../sampling/sampler.ts';
import { SeenCodes } from '../sampling/repetition.ts';
import { runCpuSjd } from './cpu-sjd.ts';
import type { InferenceSession, OrtModule } from '../base/ort.ts';
import { LoopProgress } from './loop-progress.ts';
import { firstSampledStep, throwIfAborted, type BatchLoopRequest, type BatchLoopResult, type SjdLoopOptions, type TokenLoop, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';

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

  /**
   * N images in one pass: one prefill of the CFG pair, its cache repeated N times, then 2N rows
   * per step (image i's pair is rows 2i, 2i + 1), so the weights are read once per step for all.
   */
  async runPlain(req: BatchLoopRequest): Promise<BatchLoopResult> {
    const V = this.spec.visualCount;
    const n = req.uniforms.length;
    const { progress, codes } = LoopProgress.ofImages(req);
    throwIfAborted(req.signal);
    const runner = this.runner;
    let logits = await runner.prefill([req.cond, req.uncond]);
    if (n > 1) {
      // Every image starts from the same prompts (and kept codes): one prefill serves them all.
      runner.repeatRows(n);
      const pair = logits;
      logits = new Float32Array(2 * n * V);
      for (let i = 0; i < n; i++) logits.set(pair, 2 * i * V);
    }
    progress.prefilled();
    let runs = 0;
    // Each conditional stream's ids so far, for the repetition penalty: its prompt (and the kept
    // codes' ids after it), then each code.
    const seen = Array.from({ length: n }, () => SeenCodes.ofTokens(req.cond, this.spec.visualOffset, V));
    const ids = new Array<number>(2 * n);
    for (let step = firstSampledStep(req); step < req.steps; step++) {
      throwIfAborted(req.signal);
      for (let i = 0; i < n; i++) {
        const at = 2 * i * V;
        const code = this.sampler.sample(logits.subarray(at, at + V), logits.subarray(at + V, at + 2 * V), req.sampling, req.uniforms[i]![step]!, seen[i]);
        codes[i]![step] = code;
        seen[i]!.add(code);
        ids[2 * i] = ids[2 * i + 1] = code + this.spec.visualOffset;
      }
      progress.sampled(codes[0]!, step + 1);
      if (step + 1 === req.steps) break;
      logits = await runner.step(ids);
      runs++;
    }
    // Every CPU run hands its logits to JS.
    return progress.imagesResult(codes, { runs, prefillRuns: 1, readbacks: runs + 1, steadyStateAllocations: 0, graphCapture: false });
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
