// Download progress: bytes include what an earlier visit stored, the speed is measured over the
// last seconds only (a stall shows as a falling speed, not an average since the start), the ETA
// is what is left at that speed, and reports are spaced out.
import { describe, expect, it } from 'vitest';
import { DownloadMeter } from '../../src/core/store/download-meter.ts';
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
    const { m, reports, at } = meter(10_000_000, 4_000_000);
    at(1000);
    m.update(1_000_000, 'a.bin'); // 1 MB/s since the start
    expect(reports.at(-1)).toMatchObject({ bytes: 5_000_000, totalBytes: 10_000_000, fetchedBytes: 1_000_000, file: 'a.bin' });
    expect(reports.at(-1)!.bytesPerSecond).toBeCloseTo(1_000_000);
    expect(reports.at(-1)!.etaMs).toBeCloseTo(5000);
    // Later the link slows to 100 kB/s: after the window has passed, the speed says so.
    for (let t = 2000; t <= 12_000; t += 1000) {
      at(t);
      m.update(1_000_000 + ((t - 1000) / 1000) * 100_000, 'b.bin');
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
    const m = new DownloadMeter(10_000, 0, (p) => reports.push(p as Download), { intervalMs: 20, heartbeatMs: 30, windowMs: 5000 });
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
});
