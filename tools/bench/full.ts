// `npm run bench:full`: every full-size figure side by side in one run, beside its target.
//
//   npm run bench:full -- [--ckpt DIR] [--bundle DIR] [--image-steps N | --full-image]
//                         [--quick] [--skip-reload] [--skip-webgpu] [--webgpu-timeout S] [--decode-timeout S]
//
// One measurement at a time, in this order:
//  1. the full-size random checkpoint (`npm run fixtures:full`, once, into --ckpt; default a temp
//     folder, removed at the end; --quick: 2 layers);
//  2. the Node CLI's q4 convert of it (GNU time: wall, peak RSS);
//  3. tools/bench/reload.ts in a child process (its own CLI: Node CLI load of the bundle, and per
//     backend prepare / reload / fresh-browser load through the page with Chromium's memory peak);
//  4. a Chromium profile without WebGPU: first visit through the page's client API from a local
//     server of the original files (phases, storage estimate at the peak and after, the request
//     log's bytes over the files' bytes), then a 1024² image on wasm (--image-steps decode steps,
//     extrapolated to the whole image and labelled so; --full-image for all of it), then the
//     decoder alone at 1024² in the page;
//  5. a Chromium profile on WebGPU (SwiftShader): the CLI's bundle prepared from a local server, a
//     32² image (4 tokens: the prefill, then 3 decode steps) for ms per step and dispatches;
//  6. the CLI's `generate --size 1024` (GNU time: wall, peak RSS; its own tokens/s and decoder
//     time).
// Chromium's processes are sampled from /proc every 250 ms (summed PSS, and RSS beside it: proc-memory.ts) during 4 and 5.
// Needs `npm run build` first (the page from dist/). Prints a table and a JSON summary last.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir, loadavg, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './chromium.ts';
import { emptyFigures, extrapolateImage, formatTable, parseGenerateLine, parseGnuTime, round, summaryJson, type FullFigures } from './full-summary.ts';
import { MemorySampler } from './proc-memory.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const { values: args } = parseArgs({
  options: {
    ckpt: { type: 'string' },
    bundle: { type: 'string' },
    'image-steps': { type: 'string', default: '4' },
    'full-image': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    'skip-reload': { type: 'boolean', default: false },
    'skip-webgpu': { type: 'boolean', default: false },
    'webgpu-timeout': { type: 'string', default: '1200' },
    'decode-timeout': { type: 'string', default: '600' },
  },
});

const quick = args.quick!;
const IMAGE_SIZE = quick ? 256 : 1024;
const IMAGE_TOKENS = (IMAGE_SIZE / 16) ** 2;
const PROMPT = { prompt: 'a red fox', negativePrompt: 'blurry', seed: 1 };
const figures: FullFigures = emptyFigures();
const details: Record<string, unknown> = { quick, loadAverage: loadavg().map((l) => round(l, 1)), cpus: cpus().length };
const log = (s: string) => console.log(`bench:full: ${s}`);
/** A browser image stopped after some steps: finished into an extrapolated time in main(). */
let partialImage: { decodeS: number; steps: number; rest: number; beforeS: number } | null = null;

// ---- child processes ---------------------------------------------------------------------------

/** Runs a command under GNU time; its output streamed with a prefix. */
async function timed(cmd: string[], label: string): Promise<{ out: string; wallS: number; peakRssGB: number }> {
  const report = join(mkdtempSync(join(tmpdir(), 'simplear-bench-time-')), 'time.txt');
  const out = await run(['/usr/bin/time', '-v', '-o', report, ...cmd], label);
  const t = parseGnuTime(readFileSync(report, 'utf8'));
  rmSync(resolve(report, '..'), { recursive: true, force: true });
  if (!t) throw new Error(`${label}: no GNU time report`);
  return { out, ...t };
}

function run(cmd: string[], label: string): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      for (const line of String(d).split('\n')) if (line.trim()) console.log(`  [${label}] ${line.slice(0, 400)}`);
    });
    child.stderr.on('data', (d: Buffer) => (err = (err + d).slice(-4000)));
    child.on('close', (code) => (code === 0 ? resolveRun(out) : reject(new Error(`${label} exited ${code}: ${err.slice(-2000)}`))));
  });
}

const cli = (argv: string[]) => [process.execPath, '--import', 'tsx', 'src/cli/main.ts', ...argv];

/**
 * The peak summed PSS of Chromium's processes since the last call, GB, also folded into the
 * run's peak (browserPeakMemGB); their summed RSS's peak goes to the details.
 */
function peakGB(memory: MemorySampler): number {
  const m = memory.take();
  const gb = m.total / 1e9;
  figures.browserPeakMemGB = round(Math.max(figures.browserPeakMemGB ?? 0, gb));
  details.browserPeakRssSumGB = round(Math.max(Number(details.browserPeakRssSumGB ?? 0), m.rssTotal / 1e9));
  return gb;
}

// ---- the page ----------------------------------------------------------------------------------

async function launch(profile: string, webgpu: boolean): Promise<{ context: BrowserContext; page: Page }> {
  const context = await launchChromium(profile, webgpu);
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(3_600_000);
  return { context, page };
}

/** In the page: prepareModel with its phases and the storage estimate polled during it. */
function prepareScript(source: object, options: object): string {
  return `(async () => {
    const t0 = performance.now();
    const phases = {};
    let peak = 0;
    const poll = setInterval(() => navigator.storage.estimate().then((e) => (peak = Math.max(peak, e.usage ?? 0))), 1000);
    const info = await globalThis.simplear.client.prepareModel(${JSON.stringify(source)}, {
      ...${JSON.stringify(options)},
      onProgress: (p) => { if (!(p.phase in phases)) phases[p.phase] = Math.round(performance.now() - t0) / 1000; },
    });
    clearInterval(poll);
    const after = (await navigator.storage.estimate()).usage ?? 0;
    return { wallS: (performance.now() - t0) / 1000, phases, storagePeak: Math.max(peak, after), storageAfter: after, backend: info.backend, timings: info.timings ?? null };
  })()`;
}

/**
 * In the page: a generation that stops after `stopAfter` decode tokens (0: runs to the end).
 * Returns when the first and last decode reports came (ms, the worker's elapsedMs) and their counts.
 */
function generateScript(request: object, stopAfter: number): string {
  return `(async () => {
    const t0 = performance.now();
    const abort = new AbortController();
    let first = null, last = null;
    const onProgress = (p) => {
      if (p.phase !== 'decode') return;
      const r = { done: p.done, ms: performance.now() - t0 };
      if (first === null && p.done > 0) first = r;
      if (p.done > 0) last = r;
      if (${stopAfter} > 0 && p.done >= ${stopAfter}) abort.abort();
    };
    try {
      const res = await globalThis.simplear.client.generate(${JSON.stringify(request)}, { onProgress, signal: abort.signal });
      return { completed: true, wallS: (performance.now() - t0) / 1000, first, last, timings: res.timings, stats: res.stats };
    } catch (e) {
      if (!abort.signal.aborted) throw e;
      return { completed: false, wallS: (performance.now() - t0) / 1000, first, last };
    }
  })()`;
}

interface PageGeneration {
  completed: boolean;
  wallS: number;
  first: { done: number; ms: number } | null;
  last: { done: number; ms: number } | null;
  timings?: { prefillMs: number; decodeMs: number; vqMs: number; totalMs: number };
  stats?: { steps: number; runs: number; dispatchesPerStep?: number; graphCapture: boolean };
}

async function openApp(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.waitForFunction('globalThis.simplear?.client !== undefined');
}

// ---- the parts ---------------------------------------------------------------------------------

async function wasmPart(appUrl: string, ckpt: string, memory: MemorySampler): Promise<void> {
  const { startTestServer } = await import('../../tests/helpers/http-server.ts');
  const files = await startTestServer(ckpt);
  const profile = mkdtempSync(join(tmpdir(), 'simplear-bench-wasm-'));
  const { context, page } = await launch(profile, false);
  try {
    await openApp(page, appUrl);
    log('wasm: first visit (download + convert + store)…');
    const prep = (await page.evaluate(prepareScript({ kind: 'original', model: files.url, vq: files.url }, { weights: 'q4', backend: 'wasm' }))) as {
      wallS: number;
      phases: Record<string, number>;
      storagePeak: number;
      storageAfter: number;
      backend: string;
    };
    const prepareMem = peakGB(memory);
    const gets = files.requests.filter((r) => r.method === 'GET');
    const fetched = [...new Set(gets.map((r) => r.path))];
    const fileBytes = fetched.reduce((s, p) => s + statSync(join(ckpt, decodeURIComponent(p))).size, 0);
    const sent = gets.reduce((s, r) => s + r.bytesSent, 0);
    figures.bytesTransferredRatio = round(sent / fileBytes, 4);
    figures.storagePeakGB = round(prep.storagePeak / 1e9);
    figures.storageAfterGB = round(prep.storageAfter / 1e9);
    details.wasmFirstVisit = { wallS: round(prep.wallS, 1), phases: prep.phases, backend: prep.backend, peakMemGB: round(prepareMem), gets: gets.length, bytesSent: sent, fileBytes };
    log(`wasm first visit: ${round(prep.wallS, 1)} s, phases ${JSON.stringify(prep.phases)}, ${gets.length} GETs, ${sent} bytes for ${fileBytes} (×${figures.bytesTransferredRatio}), storage peak ${figures.storagePeakGB} GB, after ${figures.storageAfterGB} GB, Chromium peak ${round(prepareMem)} GB`);

    const steps = args['full-image'] ? 0 : Math.min(Number(args['image-steps']), IMAGE_TOKENS - 1);
    log(`wasm: ${IMAGE_SIZE}² image, ${steps ? `${steps} decode steps (then extrapolated)` : 'all of it'}…`);
    const gen = (await page.evaluate(generateScript({ ...PROMPT, size: IMAGE_SIZE }, steps))) as PageGeneration;
    if (!gen.first || !gen.last || gen.last.done <= gen.first.done) throw new Error(`wasm generation: too few decode reports (${JSON.stringify(gen)})`);
    const tokensPerS = ((gen.last.done - gen.first.done) / (gen.last.ms - gen.first.ms)) * 1000;
    details.wasmGeneration = gen;

    if (gen.completed && gen.timings) {
      figures.wasmTokensPerS = round((gen.stats!.steps / gen.timings.decodeMs) * 1000);
      figures.image1024BrowserS = round(gen.wallS, 1);
    } else {
      figures.wasmTokensPerS = round(tokensPerS);
      // Up to the first decode report is the prefill (and the first token); the decoder's time is
      // added in main() once known (the page's own, or else the CLI's).
      partialImage = { decodeS: (gen.last.ms - gen.first.ms) / 1000, steps: gen.last.done - gen.first.done, rest: IMAGE_TOKENS - gen.first.done, beforeS: gen.first.ms / 1000 };
      figures.image1024BrowserExtrapolated = true;
    }
    log(`wasm: ${figures.wasmTokensPerS} tokens/s over decode tokens ${gen.first.done}..${gen.last.done} (${gen.completed ? 'whole image' : 'then stopped'})`);

    const genMem = peakGB(memory);
    details.wasmGenerationPeakMemGB = round(genMem);
    log(`wasm: Chromium peak during generation ${round(genMem)} GB`);

    // The page's decoder alone, where the client has it (older builds do not).
    if (await page.evaluate('typeof globalThis.simplear.client.decode === "function"')) {
      log(`wasm: the decoder alone at ${IMAGE_SIZE}² in the page…`);
      const side = IMAGE_SIZE / 16;
      const limitS = Number(args['decode-timeout']);
      let timer: NodeJS.Timeout | undefined;
      const decodeS = (await Promise.race([page.evaluate(`(async () => {
        const codes = new Int32Array(${side * side});
        for (let i = 0; i < codes.length; i++) codes[i] = (i * 7919) % 64000;
        const t0 = performance.now();
        await globalThis.simplear.client.decode(codes, ${side});
        return (performance.now() - t0) / 1000;
      })()`),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`the page's decoder gave no result in ${limitS} s`)), limitS * 1000))),
      ]).finally(() => clearTimeout(timer))) as number;
      figures.decoder1024BrowserS = round(decodeS, 1);
      // A whole generation ends with this decode: its memory counts.
      const decodeMem = peakGB(memory);
      log(`wasm: decoder ${figures.decoder1024BrowserS} s, Chromium peak ${round(decodeMem)} GB`);
    } else {
      log('wasm: this build of the page has no client.decode: the decoder in the page is not measured');
    }
  } finally {
    await context.close().catch(() => {});
    await files.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

async function webgpuPart(appUrl: string, bundle: string, memory: MemorySampler): Promise<void> {
  const { startTestServer } = await import('../../tests/helpers/http-server.ts');
  const files = await startTestServer(bundle);
  const profile = mkdtempSync(join(tmpdir(), 'simplear-bench-webgpu-'));
  const { context, page } = await launch(profile, true);
  try {
    await openApp(page, appUrl);
    log('webgpu: the CLI bundle prepared from a local server…');
    const prep = (await page.evaluate(prepareScript({ kind: 'bundle', url: files.url }, { weights: 'q4', backend: 'webgpu' }))) as { wallS: number; backend: string };
    details.webgpuBundlePrepare = { wallS: round(prep.wallS, 1), backend: prep.backend };
    log(`webgpu: prepared in ${round(prep.wallS, 1)} s on ${prep.backend}; a 32² image (prefill + 3 steps)…`);
    // A full-size WebGPU generation has been seen to hang: give up after --webgpu-timeout s.
    const limitS = Number(args['webgpu-timeout']);
    let timer: NodeJS.Timeout | undefined;
    const gen = (await Promise.race([
      page.evaluate(generateScript({ ...PROMPT, size: 32, temperature: 0 }, 0)),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no result in ${limitS} s`)), limitS * 1000))),
    ]).finally(() => clearTimeout(timer))) as PageGeneration;
    if (!gen.timings || !gen.stats || gen.stats.runs < 1) throw new Error(`webgpu generation: ${JSON.stringify(gen)}`);
    figures.webgpuMsPerStep = round(gen.timings.decodeMs / gen.stats.runs, 0);
    figures.webgpuDispatchesPerStep = gen.stats.dispatchesPerStep ?? null;
    peakGB(memory);
    details.webgpuGeneration = { timings: gen.timings, stats: gen.stats };
    log(`webgpu: prefill ${round(gen.timings.prefillMs / 1000, 1)} s, ${gen.stats.runs} steps in ${round(gen.timings.decodeMs / 1000, 1)} s: ${figures.webgpuMsPerStep} ms/step, graph capture ${gen.stats.graphCapture}, dispatches/step ${figures.webgpuDispatchesPerStep ?? 'not reported'}`);
  } finally {
    await context.close().catch(() => {});
    await files.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { DIST } = await import('../../tests/e2e/browser.ts');
  if (!existsSync(join(DIST, 'index.html'))) throw new Error(`no built app in ${DIST}: npm run build first`);
  const temp = mkdtempSync(join(tmpdir(), 'simplear-bench-full-'));
  const ckpt = resolve(args.ckpt ?? join(temp, 'ckpt'));
  const bundle = resolve(args.bundle ?? join(temp, 'bundle-q4'));
  log(`load average ${details.loadAverage} on ${details.cpus} CPUs (figures are from a shared machine when that is high)`);
  try {
    if (!existsSync(join(ckpt, 'config.json'))) {
      log(`writing the full-size checkpoint to ${ckpt}…`);
      await run(['npm', 'run', '-s', 'fixtures:full', '--', '--out', ckpt, ...(quick ? ['--layers', '2'] : [])], 'fixtures');
    }
    log('Node CLI convert (q4)…');
    const conv = await timed(cli(['convert', '--model', ckpt, '--vq', ckpt, '--out', bundle, '--force']), 'convert');
    figures.nodeConvertS = round(conv.wallS, 1);
    figures.nodeConvertPeakRssGB = round(conv.peakRssGB);
    log(`convert: ${figures.nodeConvertS} s, peak RSS ${figures.nodeConvertPeakRssGB} GB`);

    if (!args['skip-reload']) {
      log('tools/bench/reload.ts (prepare / reload / fresh load per backend, Node load)…');
      try {
        const out = await run([process.execPath, '--import', 'tsx', 'tools/bench/reload.ts', '--model-dir', ckpt, '--bundle', bundle, ...(args['skip-webgpu'] ? ['--backends', 'wasm'] : [])], 'reload');
        const r = JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
        const num = (k: string) => (typeof r[k] === 'number' ? (r[k] as number) : null);
        figures.nodeLoadS = num('nodeLoadS');
        figures.reloadReadyS = num('reloadReadyS');
        figures.webgpuReloadReadyS = num('webgpuReloadReadyS');
        figures.webgpuFreshReadyS = num('webgpuFreshReadyS');
        figures.browserPrepareS = num('browserPrepareS');
        figures.browserPeakMemGB = num('browserPeakMemGB');
        details.reload = r;
      } catch (e) {
        log(`reload.ts failed: ${(e as Error).message}`);
      }
    }

    const { startServer } = await import('../serve.ts');
    const app = await startServer({ root: DIST, port: 0 });
    const memory = new MemorySampler();
    try {
      await wasmPart(app.url, ckpt, memory).catch((e: Error) => log(`wasm part failed: ${e.message}`));
      if (figures.browserPrepareS === null) figures.browserPrepareS = (details.wasmFirstVisit as { wallS: number } | undefined)?.wallS ?? null;
      if (!args['skip-webgpu']) await webgpuPart(app.url, bundle, memory).catch((e: Error) => log(`webgpu part failed: ${e.message}`));
    } finally {
      memory.stop();
      await app.close();
    }

    log(`Node CLI generate --size ${IMAGE_SIZE} (the whole image)…`);
    const gen = await timed(cli(['generate', '--bundle', bundle, '--prompt', PROMPT.prompt, '--negative', PROMPT.negativePrompt, '--seed', String(PROMPT.seed), '--size', String(IMAGE_SIZE), '--out', join(temp, 'cli.png')]), 'generate');
    const line = parseGenerateLine(gen.out);
    figures.image1024CliS = round(gen.wallS, 1);
    figures.cliPeakRssGB = round(gen.peakRssGB);
    if (line) {
      figures.nodeTokensPerS = round(line.tokensPerS);
      figures.decoder1024S = round(line.pixelsS, 1);
      details.cliGenerate = line;
    }
  } finally {
    rmSync(temp, { recursive: true, force: true }); // holds only what --ckpt / --bundle did not name
  }
  if (partialImage) {
    const decoderS = figures.decoder1024BrowserS ?? figures.decoder1024S ?? 0;
    details.image1024BrowserDecoderFrom = figures.decoder1024BrowserS !== null ? 'page' : figures.decoder1024S !== null ? 'Node CLI' : 'none';
    figures.image1024BrowserS = round(extrapolateImage(partialImage.decodeS, partialImage.steps, partialImage.rest, partialImage.beforeS + decoderS), 1);
  }
  details.loadAverageAfter = loadavg().map((l) => round(l, 1));
  console.log('');
  console.log(`Full size${quick ? ' (--quick: 2 layers, 256² images; NOT the released shapes)' : ''}, measured in one run; load average before ${details.loadAverage}, after ${details.loadAverageAfter}:`);
  console.log(formatTable(figures));
  console.log(JSON.stringify(summaryJson(figures, { details })));
}

await main();
// ORT's threads and Playwright's handles would keep the event loop alive.
process.exit(0);
