// Progress on stderr for long CLI commands (convert; generate will reuse it). On a terminal one
// line is redrawn in place (at most every `redrawMs`); elsewhere (CI logs, pipes) a line is
// printed when the label changes, then at most every `logEveryMs`, and when a task ends.
import type { Output } from './command.ts';

export interface ProgressOptions {
  redrawMs?: number;
  logEveryMs?: number;
  /** Width of the bar in characters (terminal only). */
  barWidth?: number;
  now?: () => number;
}

export class ProgressBar {
  private label = '';
  private lastDraw = -Infinity;
  private drawn = false;
  private readonly redrawMs: number;
  private readonly logEveryMs: number;
  private readonly barWidth: number;
  private readonly now: () => number;

  constructor(
    private readonly out: Output,
    options: ProgressOptions = {},
  ) {
    this.redrawMs = options.redrawMs ?? 100;
    this.logEveryMs = options.logEveryMs ?? 5000;
    this.barWidth = options.barWidth ?? 24;
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Shows `label`, a bar for `fraction` (0..1; undefined = indeterminate) and `detail`.
   * Throttled, except when the label changes or `force` is set.
   */
  update(label: string, fraction: number | undefined, detail = '', force = false): void {
    const t = this.now();
    const changed = label !== this.label;
    const every = this.out.isTTY ? this.redrawMs : this.logEveryMs;
    if (!changed && !force && t - this.lastDraw < every) return;
    this.label = label;
    this.lastDraw = t;
    const pct = fraction === undefined ? '' : `${Math.floor(Math.min(1, Math.max(0, fraction)) * 100)}%`.padStart(4);
    if (this.out.isTTY) {
      const filled = fraction === undefined ? 0 : Math.round(Math.min(1, Math.max(0, fraction)) * this.barWidth);
      const bar = fraction === undefined ? '' : ` [${'#'.repeat(filled)}${'.'.repeat(this.barWidth - filled)}]`;
      let line = `${label}${bar} ${pct}  ${detail}`.trimEnd();
      if (this.out.columns && line.length >= this.out.columns) line = line.slice(0, this.out.columns - 1);
      this.out.write(`\r\x1b[2K${line}`);
      this.drawn = true;
    } else {
      this.out.write(`${`${label} ${pct}  ${detail}`.replace(/\s+$/, '')}\n`);
    }
  }

  /** Prints a finished line (replacing the bar on a terminal). */
  log(line: string): void {
    this.clear();
    this.out.write(`${line}\n`);
  }

  /** Ends the bar's line on a terminal, leaving its last state visible (e.g. before an error). */
  end(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
    this.label = '';
    this.lastDraw = -Infinity;
  }

  /** Removes the bar from a terminal line (before other output or at the end). */
  clear(): void {
    if (this.drawn) this.out.write('\r\x1b[2K');
    this.drawn = false;
    this.label = '';
    this.lastDraw = -Infinity;
  }
}

/** Throughput of a task: bytes per second since `start` (performance.now()). */
export function rate(bytes: number, startMs: number, nowMs = performance.now()): number {
  const s = (nowMs - startMs) / 1000;
  return s > 0 ? bytes / s : 0;
}

/** 1234567 → "1.2 MB" (decimal units, as download sizes are shown). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = bytes / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
