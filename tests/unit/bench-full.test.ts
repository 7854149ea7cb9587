// The pure parts of `npm run bench:full` (tools/bench/full-summary.ts): targets judged against the
// figures they refer to, the summary's shape, and the parsers of GNU time's and the CLI's output.
import { describe, expect, it } from 'vitest';
import { emptyFigures, extrapolateImage, FIGURE_KEYS, formatTable, judge, parseGenerateLine, parseGnuTime, summaryJson, TARGETS } from '../../tools/bench/full-summary.ts';

describe('bench:full summary', () => {
  it('judges relative targets against the figure they name, absolute ones against the bound', () => {
    const f = { ...emptyFigures(), nodeConvertS: 30, browserPrepareS: 46, nodeLoadS: 4, reloadReadyS: 8, browserPeakMemGB: 2.5, bytesTransferredRatio: 1.0, nodeTokensPerS: 20, wasmTokensPerS: 18, cliPeakRssGB: 1.2 };
    const v = Object.fromEntries(judge(f).map((x) => [x.figure, x]));
    expect(v.browserPrepareS).toMatchObject({ bound: 45, met: false }); // 46 > 1.5 × 30
    expect(v.reloadReadyS).toMatchObject({ bound: 8, met: true }); // equal to the bound is met
    expect(v.browserPeakMemGB).toMatchObject({ bound: 2, met: false });
    expect(v.bytesTransferredRatio!.met).toBe(true);
    expect(v.wasmTokensPerS).toMatchObject({ bound: 18, met: true }); // ≥ 0.9 × 20
    expect(v.cliPeakRssGB!.met).toBe(true);
    expect(judge({ ...f, wasmTokensPerS: 17.9 }).find((x) => x.figure === 'wasmTokensPerS')!.met).toBe(false);
  });

  it('a missing figure or reference is neither met nor not met', () => {
    const f = { ...emptyFigures(), browserPrepareS: 10 };
    for (const v of judge(f)) expect(v.met).toBeNull();
    expect(judge(f).find((v) => v.figure === 'browserPrepareS')!.bound).toBeNull();
  });

  it('the JSON summary holds every figure the issue asks for, and each target with its verdict', () => {
    const s = summaryJson({ ...emptyFigures(), cliPeakRssGB: 1.6 }, { details: { quick: true } });
    for (const k of ['nodeConvertS', 'browserPrepareS', 'browserPeakMemGB', 'reloadReadyS', 'nodeLoadS', 'bytesTransferredRatio', 'nodeTokensPerS', 'wasmTokensPerS', 'webgpuMsPerStep', 'image1024BrowserS', 'image1024CliS', 'cliPeakRssGB', 'decoder1024S', 'image1024BrowserExtrapolated']) {
      expect(s, k).toHaveProperty(k);
    }
    const targets = s.targets as { figure: string; met: boolean | null }[];
    expect(targets.map((t) => t.figure)).toEqual(TARGETS.map((t) => t.figure));
    expect(targets.find((t) => t.figure === 'cliPeakRssGB')!.met).toBe(false);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s); // one JSON line
  });

  it('the table has a row per figure, labels an extrapolated image and says which targets are not met', () => {
    const f = { ...emptyFigures(), image1024BrowserS: 5000, image1024BrowserExtrapolated: true, browserPeakMemGB: 3 };
    const table = formatTable(f);
    const rows = table.split('\n');
    expect(rows.length).toBe(1 + FIGURE_KEYS.length - 2);
    expect(rows.find((r) => r.includes('image1024BrowserS'))).toContain('5000 (extrapolated)');
    expect(rows.find((r) => r.includes('browserPeakMemGB'))).toContain('NOT MET');
    expect(rows.find((r) => r.includes('reloadReadyS'))).toContain('not measured');
  });

  it('extrapolates a partial run linearly in the steps', () => {
    expect(extrapolateImage(10, 50, 4096, 7)).toBeCloseTo(7 + 0.2 * 4096);
    expect(() => extrapolateImage(1, 0, 4096, 0)).toThrow();
  });

  it('reads GNU time -v and the CLI generate line', () => {
    const time = '\tElapsed (wall clock) time (h:mm:ss or m:ss): 2:48.70\n\tMaximum resident set size (kbytes): 1269000\n';
    const t = parseGnuTime(time)!;
    expect(t.wallS).toBeCloseTo(168.7);
    expect(t.peakRssGB).toBeCloseTo((1269000 * 1024) / 1e9);
    expect(parseGnuTime('nothing')).toBeNull();
    const line = 'wrote x.png: 1024×1024, seed 1, 4096 tokens (prefill 0.4 s, decode 2 min 28 s, 27.5 tokens/s, pixels 6.7 s), 2 min 48 s in all\n';
    expect(parseGenerateLine(line)).toEqual({ tokens: 4096, prefillS: 0.4, decodeS: 148, tokensPerS: 27.5, pixelsS: 6.7, totalS: 168 });
    expect(parseGenerateLine('no result')).toBeNull();
  });
});
