// Download progress a person can trust: bytes stored (resumed bytes included) of the total,
// the speed over the last few seconds (not since the start: a resumed or stalled download
// would skew it), and the time left at that speed. Neither is reported until the sample means
// something (a second and a MiB, or a whole window): the first kilobytes after a request's
// latency once gave "683 bytes · 30.2 KiB/s · about 12 h left". Reports at most every
// `intervalMs`, never leaves the latest bytes unreported, and keeps reporting while nothing
// arrives, so a stalled connection shows as a falling speed rather than a frozen bar. stop()
// (or finish()) ends it.
import type { PrepareProgress } from './types.ts';

export interface DownloadMeterOptions {
  /** Speed is measured over this window (default 5 s). */
  windowMs?: number;
  /** Least time between reports (default 200 ms). */
  intervalMs?: number;
  /** A report at least this often while running (default 1 s; 0 = only on updates). */
  heartbeatMs?: number;
  /** Speed and ETA are reported once this long has passed… (default 1 s) */
  minSampleMs?: number;
  /** …and this many bytes have arrived, or a whole window has passed with some (default 1 MiB). */
  minSampleBytes?: number;
  now?: () => number;
}

export class DownloadMeter {
  private readonly samples: { t: number; fetched: number }[] = [];
  private lastReport = -Infinity;
  private fetched = 0;
  private file = '';
  private finished = false;
  private readonly start: number;
  private rateKnown = false;
  private trailing: ReturnType<typeof setTimeout> | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly totalBytes: number,
    private readonly storedBytes: number,
    private readonly onProgress?: (p: PrepareProgress) => void,
    private readonly options: DownloadMeterOptions = {},
  ) {
    this.start = this.now();
    this.samples.push({ t: this.start, fetched: 0 });
    const every = options.heartbeatMs ?? 1000;
    if (every > 0 && onProgress) this.heartbeat = setInterval(() => this.report(this.now()), every);
  }

  /** `fetchedBytes`: bytes received so far in this session; `file` the one being fetched. */
  update(fetchedBytes: number, file: string): void {
    if (this.finished) return;
    this.fetched = fetchedBytes;
    this.file = file;
    const t = this.now();
    this.samples.push({ t, fetched: fetchedBytes });
    const wait = this.lastReport + (this.options.intervalMs ?? 200) - t;
    if (wait <= 0) this.report(t);
    else this.trailing ??= setTimeout(() => this.report(this.now()), wait);
  }

  /** The last report (100% when the download completed); later calls do nothing. */
  finish(): void {
    if (this.finished) return;
    this.report(this.now());
    this.stop();
  }

  /** Ends the reports (a failed or cancelled download reports nothing more). */
  stop(): void {
    this.finished = true;
    clearTimeout(this.trailing);
    clearInterval(this.heartbeat);
  }

  /**
   * Whether the speed can be told at `t`: enough time and bytes, or a whole window with some bytes
   * (a slow link). Once known it stays known (a stall then shows as a falling speed).
   */
  rateKnownAt(t = this.now()): boolean {
    if (this.rateKnown) return true;
    const elapsed = t - this.start;
    const enoughBytes = this.fetched >= (this.options.minSampleBytes ?? 1024 * 1024);
    const wholeWindow = elapsed >= (this.options.windowMs ?? 5000) && this.fetched > 0;
    this.rateKnown = elapsed >= (this.options.minSampleMs ?? 1000) && (enoughBytes || wholeWindow);
    return this.rateKnown;
  }

  /** Bytes per second over the window ending at `t`. */
  speed(t = this.now()): number {
    const windowMs = this.options.windowMs ?? 5000;
    while (this.samples.length > 2 && this.samples[1]!.t < t - windowMs) this.samples.shift();
    const first = this.samples[0]!;
    const dt = (t - first.t) / 1000;
    return dt > 0 ? (this.fetched - first.fetched) / dt : 0;
  }

  private report(t: number): void {
    if (this.finished) return;
    clearTimeout(this.trailing);
    this.trailing = undefined;
    this.lastReport = t;
    const bytes = Math.min(this.totalBytes, this.storedBytes + this.fetched);
    const bytesPerSecond = this.rateKnownAt(t) ? this.speed(t) : 0;
    const left = this.totalBytes - bytes;
    this.onProgress?.({
      phase: 'download',
      bytes,
      totalBytes: this.totalBytes,
      fetchedBytes: this.fetched,
      bytesPerSecond,
      etaMs: left === 0 ? 0 : bytesPerSecond > 0 ? (left / bytesPerSecond) * 1000 : null,
      file: this.file,
    });
  }

  private now(): number {
    return (this.options.now ?? (() => performance.now()))();
  }
}
