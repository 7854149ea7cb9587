// Progress and result of one token-loop run, the same for every backend and strategy: one row
// report (onRow, with the codes) per completed latent row and at the end, step reports (onStep)
// between rows that never go backwards, and the prefill and decode times of the result.
import { codesWithKept, firstSampledStep, type BatchLoopRequest, type BatchLoopResult, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';

/** What a loop counted: the result less the codes and times; acceptedPerRun is 1 unless given. */
export type LoopCounts = Omit<TokenLoopResult, 'codes' | 'prefillMs' | 'decodeMs' | 'acceptedPerRun'> & { acceptedPerRun?: number };

export class LoopProgress {
  /** Created as the run starts: the prefill time counts from here. */
  private readonly start = performance.now();
  private prefilledAt: number | undefined;
  private rowsReported: number;
  /** Codes last reported (row or step). */
  private shown: number;

  constructor(private readonly req: Pick<TokenLoopRequest, 'steps' | 'rowLength' | 'onRow' | 'onStep' | 'onPrefilled' | 'kept'>) {
    // Kept rows were given, not sampled: the reports start below them.
    this.shown = firstSampledStep(req);
    this.rowsReported = Math.floor(this.shown / req.rowLength);
  }

  /** The prefill is done: the request hears it, and the decode time counts from here. */
  prefilled(): void {
    this.req.onPrefilled?.();
    this.prefilledAt = performance.now();
  }

  /** Whether `count` codes complete a latent row not reported yet, or are all the steps. */
  completesRow(count: number): boolean {
    return Math.floor(count / this.req.rowLength) > this.rowsReported || count === this.req.steps;
  }

  /** The row report: the first `count` of `codes`. */
  row(codes: Int32Array, count: number): void {
    this.rowsReported = Math.floor(count / this.req.rowLength);
    this.shown = count;
    this.req.onRow?.(codes, count);
  }

  /** A step report, if `count` is past the last report (a GPU fence can count fewer codes than a row read). */
  step(count: number): void {
    if (count <= this.shown) return;
    this.shown = count;
    this.req.onStep?.(count);
  }

  /** For a loop that holds its codes as it goes: a row report where `count` completes a row, else a step report. */
  sampled(codes: Int32Array, count: number): void {
    if (this.completesRow(count)) this.row(codes, count);
    else this.step(count);
  }

  /**
   * A pass of several images stepping together (rows complete for all of them at once): one
   * progress whose row reports go to every image, with each image's codes, which it returns.
   */
  static ofImages(req: BatchLoopRequest): { progress: LoopProgress; codes: Int32Array[] } {
    const codes = Array.from(req.uniforms, () => codesWithKept(req));
    const progress = new LoopProgress({ ...req, onRow: (_first, count) => codes.forEach((c, i) => req.onRow?.(i, c, count)) });
    return { progress, codes };
  }

  /** The result of a pass of several images (ofImages); the decode time ends now. */
  imagesResult(codes: Int32Array[], counts: LoopCounts): BatchLoopResult {
    return { ...this.result(codes[0]!, counts), codes };
  }

  /** The run's result; the decode time ends now. */
  result(codes: Int32Array, counts: LoopCounts): TokenLoopResult {
    const end = performance.now();
    const prefilledAt = this.prefilledAt ?? end;
    return { codes, prefillMs: prefilledAt - this.start, decodeMs: end - prefilledAt, acceptedPerRun: 1, ...counts };
  }
}
