// The decode loop on a CPU session (onnxruntime-node, or ORT's wasm EP in a browser without
// WebGPU): logits come back to JS every step anyway, so sampling runs in JS (CpuSampler).
import type { LmSpec } from '../base/model-spec.ts';
import { LmRunner, type LmRunnerOptions } from '../runtime/lm-runner.ts';
import { CpuSampler } from '../sampling/sampler.ts';
import { runCpuSjd } from './cpu-sjd.ts';
import type { InferenceSession, OrtModule } from '../base/ort.ts';
import { throwIfAborted, type TokenLoop, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';

export class CpuTokenLoop implements TokenLoop {
  /** The CFG pair's runner, which holds the KV cache: dropped by dispose() so it can be freed
   * while the engine lives on (a one-shot engine decodes after it, engine.ts). */
  private pair: LmRunner | undefined;
  private readonly sampler: CpuSampler;
  readonly supportsSjd = true;

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

  async run(req: TokenLoopRequest): Promise<TokenLoopResult> {
    if (req.sjd) return runCpuSjd(this.ort, this.session, this.spec, this.sampler, this.runnerOptions, req, req.sjd);
    const V = this.spec.visualCount;
    const codes = new Int32Array(req.steps);
    const t0 = performance.now();
    throwIfAborted(req.signal);
    let logits = await this.runner.prefill([req.cond, req.uncond]);
    req.onPrefilled?.();
    const t1 = performance.now();
    let runs = 0;
    for (let step = 0; step < req.steps; step++) {
      throwIfAborted(req.signal);
      const code = this.sampler.sample(logits.subarray(0, V), logits.subarray(V, 2 * V), req.sampling, req.uniforms[step]!);
      codes[step] = code;
      if ((step + 1) % req.rowLength === 0 || step + 1 === req.steps) req.onRow?.(codes, step + 1);
      else req.onStep?.(step + 1);
      if (step + 1 === req.steps) break;
      const id = code + this.spec.visualOffset;
      logits = await this.runner.step([id, id]);
      runs++;
    }
    const t2 = performance.now();
    return {
      codes,
      prefillMs: t1 - t0,
      decodeMs: t2 - t1,
      runs,
      prefillRuns: 1,
      readbacks: runs + 1, // every CPU run hands its logits to JS
      steadyStateAllocations: 0,
      graphCapture: false,
      acceptedPerRun: 1,
    };
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
