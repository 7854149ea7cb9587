// Download progress a person can trust: bytes stored (resumed bytes included) of the total,
// the speed over the last few seconds (not since the start: a resumed or stalled download
// would skew it), and the time left at that speed. Reports at most every `intervalMs`.
import type { PrepareProgress } from '../../client/protocol.ts';

export class DownloadMeter {
  private readonly samples: { t: number; fetched: number }[] = [];
  private lastReport = -Infinity;
  private fetched = 0;
  private file = '';
  private finished = false;

  constructor(
    private readonly totalBytes: number,
    private readonly storedBytes: number,
    private readonly onProgress?: (p: PrepareProgress) => void,
    private readonly options: { windowMs?: number; intervalMs?: number; now?: () => number } = {},
  ) {
    this.samples.push({ t: this.now(), fetched: 0 });
  }

  /** `fetchedBytes`: bytes received so far in this session; `file` the one being fetched. */
  update(fetchedBytes: number, file: string): void {
    if (this.finished) return;
    this.fetched = fetchedBytes;
    this.file = file;
    const t = this.now();
    this.samples.push({ t, fetched: fetchedBytes });
    const windowMs = this.options.windowMs ?? 5000;
    while (this.samples.length > 2 && this.samples[1]!.t < t - windowMs) this.samples.shift();
    if (t - this.lastReport >= (this.options.intervalMs ?? 200)) this.report(t);
  }

  /** The last report (100% when the download completed); later calls do nothing. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.report(this.now());
  }

  /** Bytes per second over the window. */
  speed(t = this.now()): number {
    const first = this.samples[0]!;
    const dt = (t - first.t) / 1000;
    return dt > 0 ? (this.fetched - first.fetched) / dt : 0;
  }

  private report(t: number): void {
    this.lastReport = t;
    const bytes = Math.min(this.totalBytes, this.storedBytes + this.fetched);
    const bytesPerSecond = this.speed(t);
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
