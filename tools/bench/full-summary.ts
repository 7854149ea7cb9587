// The pure half of `npm run bench:full`: the summary's figures, the issue's targets for them,
// met / not met, and the printed table. No I/O, so it is unit-tested (tests/unit/bench-full.test.ts).

/** Every figure the summary carries; null where that part was skipped or failed. */
export interface FullFigures {
  nodeConvertS: number | null;
  nodeConvertPeakRssGB: number | null;
  browserPrepareS: number | null;
  browserPeakMemGB: number | null;
  storageAfterGB: number | null;
  storagePeakGB: number | null;
  reloadReadyS: number | null;
  webgpuReloadReadyS: number | null;
  webgpuFreshReadyS: number | null;
  nodeLoadS: number | null;
  bytesTransferredRatio: number | null;
  nodeTokensPerS: number | null;
  wasmTokensPerS: number | null;
  webgpuMsPerStep: number | null;
  webgpuDispatchesPerStep: number | null;
  image1024BrowserS: number | null;
  image1024BrowserExtrapolated: boolean;
  image1024CliS: number | null;
  image1024CliExtrapolated: boolean;
  cliPeakRssGB: number | null;
  decoder1024S: number | null;
  decoder1024BrowserS: number | null;
}

export const FIGURE_KEYS = [
  'nodeConvertS',
  'nodeConvertPeakRssGB',
  'browserPrepareS',
  'browserPeakMemGB',
  'storageAfterGB',
  'storagePeakGB',
  'reloadReadyS',
  'webgpuReloadReadyS',
  'webgpuFreshReadyS',
  'nodeLoadS',
  'bytesTransferredRatio',
  'nodeTokensPerS',
  'wasmTokensPerS',
  'webgpuMsPerStep',
  'webgpuDispatchesPerStep',
  'image1024BrowserS',
  'image1024BrowserExtrapolated',
  'image1024CliS',
  'image1024CliExtrapolated',
  'cliPeakRssGB',
  'decoder1024S',
  'decoder1024BrowserS',
] as const satisfies readonly (keyof FullFigures)[];

export function emptyFigures(): FullFigures {
  const f = Object.fromEntries(FIGURE_KEYS.map((k) => [k, null])) as unknown as FullFigures;
  f.image1024BrowserExtrapolated = false;
  f.image1024CliExtrapolated = false;
  return f;
}

type NumericKey = { [K in keyof FullFigures]: FullFigures[K] extends number | null ? K : never }[keyof FullFigures];

/** A target from the issue: `figure` ≤ or ≥ `factor` × (another figure, or 1 for an absolute bound). */
export interface Target {
  figure: NumericKey;
  op: '<=' | '>=';
  factor: number;
  /** Compared with factor × this figure; absent: with factor itself. */
  of?: NumericKey;
  /** How the target reads in the table. */
  text: string;
}

export const TARGETS: readonly Target[] = [
  { figure: 'browserPrepareS', op: '<=', factor: 1.5, of: 'nodeConvertS', text: '≤ 1.5× nodeConvertS' },
  { figure: 'browserPeakMemGB', op: '<=', factor: 2, text: '≤ 2 GB' },
  { figure: 'reloadReadyS', op: '<=', factor: 2, of: 'nodeLoadS', text: '≤ 2× nodeLoadS' },
  { figure: 'bytesTransferredRatio', op: '<=', factor: 1.01, text: '≤ 1.01' },
  { figure: 'wasmTokensPerS', op: '>=', factor: 0.9, of: 'nodeTokensPerS', text: '≥ 0.9× nodeTokensPerS' },
  { figure: 'cliPeakRssGB', op: '<=', factor: 1.5, text: '≤ 1.5 GB' },
];

export interface Verdict {
  figure: NumericKey;
  value: number | null;
  /** The bound the value is compared with (null if it or its reference is missing). */
  bound: number | null;
  target: string;
  /** null: not measured, so neither met nor not met. */
  met: boolean | null;
}

export function judge(figures: FullFigures, targets: readonly Target[] = TARGETS): Verdict[] {
  return targets.map((t) => {
    const value = figures[t.figure];
    const ref = t.of === undefined ? 1 : figures[t.of];
    const bound = ref === null ? null : Math.round(t.factor * ref * 1e6) / 1e6;
    const met = value === null || bound === null ? null : t.op === '<=' ? value <= bound : value >= bound;
    return { figure: t.figure, value, bound, target: t.text, met };
  });
}

const metText = (m: boolean | null) => (m === null ? 'not measured' : m ? 'met' : 'NOT MET');

/** What each figure is, for the table. */
const LABELS: Record<keyof FullFigures, string> = {
  nodeConvertS: 'Node CLI convert (q4), s',
  nodeConvertPeakRssGB: 'Node CLI convert peak RSS, GB',
  browserPrepareS: 'Chromium first visit (download + convert + store), s',
  browserPeakMemGB: "Chromium's processes, peak PSS summed, GB",
  storageAfterGB: 'storage used after preparing (estimate()), GB',
  storagePeakGB: 'storage used at the peak while preparing, GB',
  reloadReadyS: 'wasm reload-to-ready, s',
  webgpuReloadReadyS: 'WebGPU reload-to-ready (same tab), s',
  webgpuFreshReadyS: 'WebGPU fresh-browser load (same profile), s',
  nodeLoadS: 'Node CLI load of the same bundle, s',
  bytesTransferredRatio: 'bytes transferred / bytes of the files',
  nodeTokensPerS: 'Node CLI tokens/s (1024² image)',
  wasmTokensPerS: 'Chromium wasm tokens/s (1024² image)',
  webgpuMsPerStep: 'WebGPU-SwiftShader ms per decode step',
  webgpuDispatchesPerStep: 'WebGPU dispatches per decode step',
  image1024BrowserS: '1024² image in Chromium (wasm), s',
  image1024BrowserExtrapolated: '',
  image1024CliS: '1024² image with the CLI, s',
  image1024CliExtrapolated: '',
  cliPeakRssGB: 'Node CLI 1024² peak RSS, GB',
  decoder1024S: 'VQ decoder at 1024² (Node CLI), s',
  decoder1024BrowserS: 'VQ decoder at 1024² (Chromium wasm), s',
};

const fmt = (v: number | null) => (v === null ? '—' : String(v));

/** The readable table: every figure, its target and verdict where the issue sets one. */
export function formatTable(figures: FullFigures, verdicts: Verdict[] = judge(figures)): string {
  const byFigure = new Map(verdicts.map((v) => [v.figure, v]));
  const rows: string[][] = [['figure', 'key', 'value', 'target', '']];
  for (const key of FIGURE_KEYS) {
    if (key === 'image1024BrowserExtrapolated' || key === 'image1024CliExtrapolated') continue;
    const value = figures[key] as number | null;
    let shown = fmt(value);
    if (key === 'image1024BrowserS' && figures.image1024BrowserExtrapolated && value !== null) shown += ' (extrapolated)';
    if (key === 'image1024CliS' && figures.image1024CliExtrapolated && value !== null) shown += ' (extrapolated)';
    const v = byFigure.get(key as NumericKey);
    const target = v ? `${v.target}${v.bound !== null && v.target.includes('×') ? ` (${Math.round(v.bound * 100) / 100})` : ''}` : '';
    rows.push([LABELS[key], key, shown, target, v ? metText(v.met) : '']);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** The last line's object: every figure, then `targets` with each verdict. */
export function summaryJson(figures: FullFigures, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...figures, targets: judge(figures).map(({ figure, value, bound, target, met }) => ({ figure, value, bound, target, met })), ...extra };
}

/**
 * A whole run's time from a measured part: `steps` of `totalSteps` decode steps took `decodeS`,
 * and the rest (prefill, decoder) `otherS`. Linear in the steps, so a lower bound: a step's
 * attention grows with the context.
 */
export function extrapolateImage(decodeS: number, steps: number, totalSteps: number, otherS: number): number {
  if (!(steps > 0)) throw new Error(`extrapolateImage: need a positive step count, got ${steps}`);
  return otherS + (decodeS / steps) * totalSteps;
}

/** Rounds to `digits` decimals (null stays null). */
export function round(x: number | null, digits = 2): number | null {
  return x === null || !Number.isFinite(x) ? null : Math.round(x * 10 ** digits) / 10 ** digits;
}

/** GNU time -v's report → wall seconds and peak RSS in GB. */
export function parseGnuTime(text: string): { wallS: number; peakRssGB: number } | null {
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/.exec(text);
  if (!rss || !wall) return null;
  const wallS = wall[1]!.split(':').reduce((s, p) => s * 60 + Number(p), 0);
  return { wallS, peakRssGB: (Number(rss[1]) * 1024) / 1e9 };
}

/** formatSeconds' text ("12.3 s", "2 min 48 s") → seconds. */
function durationS(text: string): number {
  const m = /^(?:(\d+) min )?([\d.]+) s$/.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1] ?? 0) * 60 + Number(m[2]);
}

/** `simplear generate`'s result line → its timings. */
export function parseGenerateLine(text: string): { tokens: number; prefillS: number; decodeS: number; tokensPerS: number; pixelsS: number; totalS: number } | null {
  const d = '((?:\\d+ min )?[\\d.]+ s)';
  const m = new RegExp(`(\\d+) tokens \\(prefill ${d}, decode ${d}, ([\\d.]+) tokens/s, pixels ${d}\\), ${d} in all`).exec(text);
  if (!m) return null;
  return { tokens: Number(m[1]), prefillS: durationS(m[2]!), decodeS: durationS(m[3]!), tokensPerS: Number(m[4]), pixelsS: durationS(m[5]!), totalS: durationS(m[6]!) };
}
