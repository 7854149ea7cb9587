// A token loop turns the two prompts into `steps` visual codes: prefill, then one LM run per
// token (runPlain) or per speculative window (runSjd), sampling with the step's uniform; the
// engine picks which. Backends: CPU (cpu-loop.ts, any ORT CPU/wasm session) and WebGPU
// (webgpu-loop.ts, GPU-resident).
import type { SamplingParams } from '../sampling/sampler.ts';
import type { AcceptRule, SjdUniforms } from '../sampling/jacobi.ts';

/** Speculative Jacobi decoding for one generation (sampling/jacobi.ts). */
export interface SjdLoopOptions {
  /** Drafts verified per window run. */
  window: number;
  /** The draft / acceptance / emission draws, from the seed. */
  uniforms: SjdUniforms;
  /** Tests only (the biased reference rule as a negative control); the engine never sets it. */
  rule?: AcceptRule;
}

export interface TokenLoopRequest {
  /** Each stream's prompt ids, followed by the ids of the `kept` codes when there are any. */
  cond: readonly number[];
  uncond: readonly number[];
  /** Codes of the image (latent side²), the kept ones included. */
  steps: number;
  /**
   * Redraw below a row: the image's first codes, given (their ids already end `cond` and
   * `uncond`, so the one prefill feeds them). The loop samples from step kept.length on; the
   * result's codes start with them. Absent or empty: everything is sampled.
   */
  kept?: Int32Array;
  /** Codes per latent row: progress is reported once per row. */
  rowLength: number;
  sampling: SamplingParams;
  /** One uniform per step, from the seed, keyed on the absolute step (kept steps' go unused). */
  uniforms: Float32Array;
  signal?: AbortSignal;
  /** Called after each completed row (and at the end) with the codes so far. */
  onRow?: (codes: Int32Array, count: number) => void;
  /** Called once the prefill is done. */
  onPrefilled?: () => void;
  /** Called as prefill runs finish (`done` of `total` LM runs), so a slow prefill shows progress. */
  onPrefillRun?: (done: number, total: number) => void;
  /**
   * Called as steps finish between rows: `count` codes sampled so far (no codes: they are read
   * once per row). Lets a slow device show progress within a row.
   */
  onStep?: (count: number) => void;
}

export interface TokenLoopResult {
  codes: Int32Array;
  prefillMs: number;
  decodeMs: number;
  /** LM runs of the decode loop, and of the prefill. */
  runs: number;
  prefillRuns: number;
  readbacks: number;
  steadyStateAllocations: number;
  graphCapture: boolean;
  acceptedPerRun: number;
  /** GPU compute dispatches per decode step (the LM's kernels and the sampler), where counted. */
  dispatchesPerStep?: number;
  /** Present for an SJD generation. */
  sjd?: SjdStats;
}

export interface SjdStats {
  window: number;
  /** Window verifications; each is one LM session.run per CFG stream (see sessionRuns). */
  iterations: number;
  /** LM session.run calls of the SJD decode loop. */
  sessionRuns: number;
  draftsProposed: number;
  draftsAccepted: number;
  /** Tokens emitted per window verification (1 … window + 1). */
  acceptedPerRun: number;
}

/**
 * Several images of one request in one pass: 2N streams (image i's CFG pair is rows 2i, 2i + 1),
 * so each step reads the weights once for all of them. The images share the prompts and the
 * kept codes; each has its own uniforms (its own seed) and its own codes.
 */
export interface BatchLoopRequest extends Omit<TokenLoopRequest, 'uniforms' | 'onRow'> {
  /** One uniform array per image: the batch has uniforms.length images. */
  uniforms: readonly Float32Array[];
  /** Called after each completed row (and at the end) for every image, with that image's codes so far. */
  onRow?: (image: number, codes: Int32Array, count: number) => void;
}

export interface BatchLoopResult extends Omit<TokenLoopResult, 'codes'> {
  /** One codes array per image, in the order of the request's uniforms. */
  codes: Int32Array[];
}

export interface TokenLoop {
  /** One token per image per LM run, for the request's N ≥ 1 images in one pass. */
  runPlain(request: BatchLoopRequest): Promise<BatchLoopResult>;
  /** Speculative Jacobi decoding (sjd-loop.ts): up to window + 1 tokens per LM run. */
  runSjd(request: TokenLoopRequest, sjd: SjdLoopOptions): Promise<TokenLoopResult>;
  dispose(): Promise<void>;
}

/** The rejection of a cancelled generation: a DOMException named AbortError, as fetch() uses. */
export function abortError(): DOMException {
  return new DOMException('Generation cancelled', 'AbortError');
}

/** The step the loop's sampling starts at: the number of kept codes. */
export function firstSampledStep(req: Pick<TokenLoopRequest, 'kept'>): number {
  return req.kept?.length ?? 0;
}

/** The loop's codes array: `steps` codes, the kept ones already in. */
export function codesWithKept(req: Pick<TokenLoopRequest, 'kept' | 'steps'>): Int32Array {
  const codes = new Int32Array(req.steps);
  if (req.kept) codes.set(req.kept);
  return codes;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError();
}
