// The memory of the processes a bench started (Chromium and its children), read from /proc every
// 250 ms: each process's PSS (proportional set size, /proc/PID/smaps_rollup) summed, with its split
// by Chromium process type at the peak. PSS counts a page shared by several processes once in all
// (each pays its share); summed RSS counts it in every process that maps it, so Chromium's shared
// code and its zygote's pages came in up to ten times: on this machine a WebGPU-less Chromium's
// non-renderer processes read 0.68 GB as summed RSS against 0.29 GB as PSS. The summed RSS is
// still taken, beside it, for comparison with figures measured before. Shared by full.ts and reload.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { round } from './stats.ts';

/** Bytes of one process's memory: resident (RSS) and proportional (PSS). */
interface ProcMemory {
  rss: number;
  pss: number;
}

/** The pids of this process's descendants (Chromium and its children). */
function descendants(): number[] {
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
  return [...mine];
}

/** RSS and PSS from smaps_rollup (kB lines), in bytes. */
function readMemory(pid: number): ProcMemory {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0) * 1024;
  return { rss: kb('Rss'), pss: kb('Pss') };
}

/** Memory of this process's descendants by process type (renderer, gpu-process, …, browser). */
export function descendantsMemory(): Map<string, ProcMemory> {
  const byType = new Map<string, ProcMemory>();
  for (const pid of descendants()) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const type = /--type=([a-z-]+)/.exec(cmd)?.[1] ?? (cmd.includes('chrom') ? 'browser' : 'other');
      const m = readMemory(pid);
      const seen = byType.get(type) ?? { rss: 0, pss: 0 };
      byType.set(type, { rss: seen.rss + m.rss, pss: seen.pss + m.pss });
    } catch {
      // exited
    }
  }
  return byType;
}

const total = (m: Map<string, ProcMemory>, key: keyof ProcMemory) => [...m.values()].reduce((a, b) => a + b[key], 0);

/** The peak of the summed PSS (and, apart, of the summed RSS), and how the PSS split by process type at its peak. */
export class MemorySampler {
  private peak = new Map<string, ProcMemory>();
  private peakRss = 0;
  private timer: NodeJS.Timeout;
  constructor() {
    this.timer = setInterval(() => this.sample(), 250);
  }
  private sample(): void {
    const now = descendantsMemory();
    if (total(now, 'pss') > total(this.peak, 'pss')) this.peak = now;
    this.peakRss = Math.max(this.peakRss, total(now, 'rss'));
  }
  /**
   * The peaks since the last call (or construction), and starts a new window: `total` the summed
   * PSS in bytes, `rssTotal` the summed RSS's own peak in bytes, `byType` the PSS by process type
   * at its peak in GB (2 decimals).
   */
  take(): { total: number; rssTotal: number; byType: Record<string, number> } {
    this.sample();
    const peak = this.peak;
    const rssTotal = this.peakRss;
    this.peak = new Map();
    this.peakRss = 0;
    return { total: total(peak, 'pss'), rssTotal, byType: Object.fromEntries([...peak].map(([k, v]) => [k, round(v.pss / 1e9, 2)])) };
  }
  stop(): void {
    clearInterval(this.timer);
  }
}
