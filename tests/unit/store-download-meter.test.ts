// Download progress: bytes include what an earlier visit stored, the speed is measured over the
// last seconds only (a stall shows as a falling speed, not an average since the start), the ETA
// is what is left at that speed, neither is shown before the sample means something, and reports
// are spaced out.
import { describe, expect, it } from 'vitest';
import { DownloadMeter } from '../../src/core/store/download-meter.ts';
import { describePrepare } from '../../src/app/progress-text.ts';
import type { PrepareProgress } from '../../src/client/protocol.ts';

type Download = Extract<PrepareProgress, { phase: 'download' }>;

function meter(total: number, stored: number) {
  let now = 0;
  const reports: Download[] = [];
  const m = new DownloadMeter(total, stored, (p) => reports.push(p as Download), { now: () => now, windowMs: 5000, intervalMs: 200, heartbeatMs: 0 });
  return { m, reports, at: (t: number) => (now = t) };
}

describe('DownloadMeter', () => {
  it('counts resumed bytes, measures speed over the window, and gives the time left at that speed', () => {
    const { m, reports, at } = meter(10_000_000, 3_000_000);
    at(1000);
    m.update(2_000_000, 'a.bin'); // 2 MB/s since the start
    expect(reports.at(-1)).toMatchObject({ bytes: 5_000_000, totalBytes: 10_000_000, fetchedBytes: 2_000_000, file: 'a.bin' });
    expect(reports.at(-1)!.bytesPerSecond).toBeCloseTo(2_000_000);
    expect(reports.at(-1)!.etaMs).toBeCloseTo(2500);
    // Later the link slows to 100 kB/s: after the window has passed, the speed says so.
    for (let t = 2000; t <= 12_000; t += 1000) {
      at(t);
      m.update(2_000_000 + ((t - 1000) / 1000) * 100_000, 'b.bin');
    }
    const last = reports.at(-1)!;
    expect(last.bytesPerSecond).toBeCloseTo(100_000, -3);
    expect(last.etaMs).toBeCloseTo(((10_000_000 - last.bytes) / last.bytesPerSecond) * 1000, -2);
  });

  it('reports at most every interval; finish() sends one last report and nothing follows it', () => {
    const { m, reports, at } = meter(1000, 0);
    for (let t = 1; t <= 100; t++) {
      at(t);
      m.update(t * 5, 'x');
    }
    expect(reports).toHaveLength(1); // the first update; the next 99 were within 200 ms of it
    at(150);
    m.finish(); // (also cancels the report that was due for the latest bytes)
    m.finish();
    at(400);
    m.update(1000, 'x'); // nothing after the final report
    expect(reports).toHaveLength(2);
    expect(reports.at(-1)).toMatchObject({ bytes: 500, fetchedBytes: 500 });
  });

  it('the latest bytes are reported after the interval even if nothing more arrives; a stall lowers the speed', async () => {
    const reports: Download[] = [];
    const m = new DownloadMeter(10_000, 0, (p) => reports.push(p as Download), { intervalMs: 20, heartbeatMs: 30, windowMs: 5000, minSampleMs: 0, minSampleBytes: 0 });
    m.update(1000, 'x');
    m.update(2000, 'x'); // within the interval: held back…
    expect(reports.at(-1)!.fetchedBytes).toBe(1000);
    await new Promise((r) => setTimeout(r, 40));
    expect(reports.at(-1)!.fetchedBytes).toBe(2000); // …and sent once it has passed
    const speed = reports.at(-1)!.bytesPerSecond;
    await new Promise((r) => setTimeout(r, 120));
    const stalled = reports.at(-1)!;
    expect(stalled.fetchedBytes).toBe(2000);
    expect(stalled.bytesPerSecond).toBeLessThan(speed); // heartbeats while nothing arrives
    m.stop();
    const count = reports.length;
    await new Promise((r) => setTimeout(r, 80));
    expect(reports).toHaveLength(count);
  });

  it('no speed yet: the ETA is unknown (null), not zero or infinite', () => {
    const { m, reports } = meter(1000, 0);
    m.update(0, 'x');
    expect(reports.at(-1)).toMatchObject({ bytesPerSecond: 0, etaMs: null });
  });

  it('the first bytes give no speed and no ETA: only after a second and a MiB (or a whole window on a slow link)', () => {
    const total = 1.3 * 2 ** 30;
    const { m, reports, at } = meter(total, 0);
    const line = () => describePrepare(reports.at(-1)!).detail;
    // A small file arrives 22 ms in, then the first big block starts.
    at(22);
    m.update(683, 'config.json');
    expect(reports.at(-1)).toMatchObject({ bytes: 683, bytesPerSecond: 0, etaMs: null });
    expect(line()).toMatch(/^683 bytes of 1\.3 GiB/);
    expect(line()).not.toMatch(/\/s|left/);
    // Plenty of bytes but under a second: still no rate.
    at(800);
    m.update(40 * 2 ** 20, 'model.safetensors');
    expect(reports.at(-1)).toMatchObject({ bytesPerSecond: 0, etaMs: null });
    expect(line()).not.toMatch(/\/s|left/);
    // A second and more: the speed over what arrived, and the time left at it.
    at(1200);
    m.update(100 * 2 ** 20, 'model.safetensors');
    const known = reports.at(-1)!;
    expect(known.bytesPerSecond).toBeCloseTo((100 * 2 ** 20) / 1.2, -3);
    expect(known.etaMs).toBeCloseTo(((total - 100 * 2 ** 20) / known.bytesPerSecond) * 1000, -2);
    expect(line()).toMatch(/MiB\/s · about \d+ s left$/);

    // A slow link that never reaches a MiB: the rate is told once a whole window has passed.
    const slow = meter(10 * 2 ** 20, 0);
    for (let t = 1000; t <= 4000; t += 1000) {
      slow.at(t);
      slow.m.update(t * 20, 'x'); // 20 kB/s
    }
    expect(slow.reports.at(-1)).toMatchObject({ bytesPerSecond: 0, etaMs: null });
    slow.at(5000);
    slow.m.update(100_000, 'x');
    expect(slow.reports.at(-1)!.bytesPerSecond).toBeCloseTo(20_000);
    expect(slow.reports.at(-1)!.etaMs).toBeGreaterThan(0);
  });
});
