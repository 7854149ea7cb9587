// The memory of the processes a bench started (Chromium and its children), read from /proc: the
// summed RSS of this process's descendants, sampled every 250 ms, with its split by Chromium
// process type at the peak. Shared by full.ts and reload.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { round } from './stats.ts';

const PAGE = 4096;

/** RSS (bytes) of this process's descendants (Chromium and its children), by process type. */
export function descendantsRss(): Map<string, number> {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(name), Number(fields[1]));
    } catch {
      // gone since readdir
    }
  }
  const mine = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) if (!mine.has(pid) && mine.has(ppid)) (mine.add(pid), (grew = true));
  }
  mine.delete(process.pid);
  const byType = new Map<string, number>();
  for (const pid of mine) {
    try {
      const rss = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * PAGE;
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const type = /--type=([a-z-]+)/.exec(cmd)?.[1] ?? (cmd.includes('chrom') ? 'browser' : 'other');
      byType.set(type, (byType.get(type) ?? 0) + rss);
    } catch {
      // exited
    }
  }
  return byType;
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/** The peak of the summed RSS, and how it split by process type at that moment. */
export class MemorySampler {
  private peak = new Map<string, number>();
  private timer: NodeJS.Timeout;
  constructor() {
    this.timer = setInterval(() => this.sample(), 250);
  }
  private sample(): void {
    const now = descendantsRss();
    if (sum(now) > sum(this.peak)) this.peak = now;
  }
  /** The peak since the last call (or construction), and starts a new window: bytes in all, and
   * GB by process type (2 decimals). */
  take(): { total: number; byType: Record<string, number> } {
    this.sample();
    const peak = this.peak;
    this.peak = new Map();
    return { total: sum(peak), byType: Object.fromEntries([...peak].map(([k, v]) => [k, round(v / 1e9, 2)])) };
  }
  stop(): void {
    clearInterval(this.timer);
  }
}
