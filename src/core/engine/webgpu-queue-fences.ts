// Keeps the CPU from queueing far ahead of a slow GPU: runs return once their work is queued,
// so the plain WebGPU loop (webgpu-loop.ts) marks each run with a queue-done fence and waits
// while more than about QUEUED_GPU_MS of work is pending; the fences also tell it when each
// run finished (step progress without a readback).

/**
 * How much GPU work the CPU may queue ahead: about this long (estimated from the runs seen to
 * finish so far), at least MIN_QUEUED_RUNS and at most MAX_QUEUED_RUNS runs. A fast GPU keeps a
 * deep queue (fence latency hidden); a slow one (SwiftShader: seconds per run) keeps two, so a
 * cancel or a page reload waits for at most about two runs of GPU time.
 */
export const QUEUED_GPU_MS = 500;
export const MIN_QUEUED_RUNS = 2;
export const MAX_QUEUED_RUNS = 16;

/** Fences on queued GPU work: waits while more is queued than QUEUED_GPU_MS of it. */
export class QueueFences {
  private readonly pending: Promise<void>[] = [];
  private finished = 0;
  private lastFinish = performance.now();
  /** Smoothed ms between finished runs, once one has been seen. */
  private msPerRun: number | undefined;
  constructor(private readonly queue: GPUQueue) {}

  private get limit(): number {
    if (this.msPerRun === undefined) return MIN_QUEUED_RUNS;
    return Math.max(MIN_QUEUED_RUNS, Math.min(MAX_QUEUED_RUNS, Math.floor(QUEUED_GPU_MS / Math.max(this.msPerRun, 0.01))));
  }

  /**
   * Marks the work submitted so far; resolves, once no more than the limit is pending, with the
   * number of marks completed (the runs known to have finished on the GPU).
   */
  async mark(): Promise<number> {
    this.pending.push(this.queue.onSubmittedWorkDone());
    while (this.pending.length > this.limit) await this.retire();
    return this.finished;
  }

  private async retire(): Promise<void> {
    await this.pending.shift();
    this.finished++;
    const now = performance.now();
    const ms = now - this.lastFinish;
    this.lastFinish = now;
    this.msPerRun = this.msPerRun === undefined ? ms : 0.7 * this.msPerRun + 0.3 * ms;
  }

  async drain(): Promise<void> {
    while (this.pending.length) await this.retire();
  }
}
