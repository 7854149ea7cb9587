// Reload-to-ready at full size: how long a page that already holds the model in IndexedDB takes
// to be ready again, next to the Node CLI's load of the same bundle.
//
//   npx tsx tools/bench/reload.ts [--model-dir DIR] [--bundle DIR] [--backends wasm,webgpu]
//                                 [--skip-node] [--skip-fresh]
//
// --model-dir: a full-size checkpoint in the original formats (written with `npm run
// fixtures:full -- --out DIR` when missing; default $TMPDIR/simplear-full). --bundle: the CLI's
// q4 bundle of it (converted with `npm run cli -- convert` when missing; default
// $TMPDIR/simplear-full-q4). Needs `npm run build` first.
//
// For each backend, in its own Chromium profile (wasm: Chromium with WebGPU off): the model is
// prepared once through the page's client API (download from a local server, convert, store),
// then the page is reloaded and the model prepared again, from storage (the server's log must
// show no request), then (WebGPU; --skip-fresh to skip) the browser is closed and started again
// on the same profile and the model loaded once more. Each phase reports its wall time, the
// worker's own breakdown (LoadTimings) and the peak of the summed PSS of Chromium's processes
// (this process's descendants, sampled every 250 ms from /proc: proc-memory.ts). The Node figure (nodeLoadS) is
// `simplear generate`'s load: open the bundle, read it, create the CPU engine on onnxruntime-node,
// in a child process of its own.
//
// Prints one line per figure and a JSON summary as the last line.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { BrowserContext, Page } from 'playwright-core';
import type { LoadTimings } from '../../src/client/protocol.ts';
import { launchChromium } from './chromium.ts';
import { MemorySampler } from './proc-memory.ts';
import { round } from './stats.ts';

const ROOT = resolve(import.meta.dirname, '../..');

const { values: args } = parseArgs({
  options: {
    'model-dir': { type: 'string', default: join(tmpdir(), 'simplear-full') },
    bundle: { type: 'string', default: join(tmpdir(), 'simplear-full-q4') },
    backends: { type: 'string', default: 'wasm,webgpu' },
    'skip-node': { type: 'boolean', default: false },
    'skip-fresh': { type: 'boolean', default: false },
    'node-load': { type: 'string' },
    ort: { type: 'string', default: 'node' },
  },
});

/** Milliseconds as seconds to a tenth. */
const seconds = (ms: number) => round(ms / 1000, 1);

// ---- The Node side: the CLI's load of the bundle (child process) -------------------------------

interface NodeLoad {
  ort: string;
  readS: number;
  engineS: number;
  totalS: number;
  peakRssMB: number;
}

async function nodeLoadChild(bundleDir: string, which: string): Promise<NodeLoad> {
  const { openFolder } = await import('../../src/core/formats/byte-source.ts');
  const { openModelBundle } = await import('../../src/core/runtime/model-bundle.ts');
  const { createCpuEngine } = await import('../../src/core/engine/create-cpu.ts');
  const t0 = performance.now();
  const bundle = await openModelBundle(openFolder(bundleDir));
  const model = await bundle.loadModel();
  const t1 = performance.now();
  let engine;
  if (which === 'web') {
    const web = await import('onnxruntime-web/webgpu');
    web.env.wasm.numThreads = 1;
    engine = await createCpuEngine(web, model, { backend: 'wasm' });
  } else {
    // As `simplear generate` opens it (a 1024² image): sessions from temporary model files, the
    // decoder's opened once the tokens are in (oneShot), so it is not part of the load.
    const { tempModelFiles } = await import('../../src/cli/model-files.ts');
    engine = await createCpuEngine(await import('onnxruntime-node'), model, { oneShot: true, files: tempModelFiles });
  }
  const t2 = performance.now();
  await engine.dispose();
  return { ort: which, readS: seconds(t1 - t0), engineS: seconds(t2 - t1), totalS: seconds(t2 - t0), peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024) };
}

function runNodeLoad(bundleDir: string, which: string): NodeLoad {
  const r = spawnSync(process.execPath, ['--import', 'tsx', resolve(import.meta.filename), '--node-load', bundleDir, '--ort', which], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !last.startsWith('{')) throw new Error(`node load failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(last) as NodeLoad;
}

// ---- The browser side -----------------------------------------------------------------------------

interface PhaseResult {
  wallS: number;
  /** The worker's LoadTimings, ms. */
  timings?: LoadTimings;
  /** When each prepare phase (download, convert, verify, load) was first reported, s from the start. */
  phases?: Record<string, number>;
  fromCache: boolean;
  backend: string;
  requests: number;
  /** Chromium's processes' summed PSS at its peak (proc-memory.ts), GB. */
  peakMemGB: number;
  /** Their summed RSS at its own peak (shared pages counted in each process), GB. */
  peakRssSumGB: number;
  /** The PSS at its peak, by Chromium process type (renderer, gpu-process, …), GB. */
  peakMemByType: Record<string, number>;
}

/** Runs in the page (a string, so no bundler helpers leak in): prepareModel and its phases. */
function prepareScript(source: object, options: object): string {
  return `(async () => {
    const t0 = performance.now();
    const phases = {};
    const info = await globalThis.simplear.client.prepareModel(${JSON.stringify(source)}, {
      ...${JSON.stringify(options)},
      onProgress: (p) => { if (!(p.phase in phases)) phases[p.phase] = Math.round(performance.now() - t0) / 1000; },
    });
    return { info, phases };
  })()`;
}

async function benchBackend(backend: 'wasm' | 'webgpu', appUrl: string, files: { url: string; requests: unknown[] }, memory: MemorySampler, fresh: boolean) {
  const profile = mkdtempSync(join(tmpdir(), 'simplear-reload-'));
  const source = { kind: 'original', model: files.url, vq: files.url };
  const options = { weights: 'q4', backend };
  const timeout = 1_800_000;
  const out: Record<string, PhaseResult> = {};
  let context = await launchChromium(profile, backend === 'webgpu');
  const lines: string[] = [];
  const watch = (c: BrowserContext) => c.on('console', (m) => lines.push(`[${m.type()}] ${m.text()}`));
  watch(context);
  const open = async (page: Page, how: () => Promise<unknown>) => {
    page.setDefaultTimeout(timeout);
    await how();
    await page.waitForFunction('globalThis.simplear?.client !== undefined');
  };
  const phase = async (name: string, page: Page, navigate: () => Promise<unknown>) => {
    memory.take();
    const before = files.requests.length;
    const t0 = performance.now();
    await open(page, navigate);
    const r = (await page.evaluate(prepareScript(source, options))) as { info: { timings?: PhaseResult['timings']; fromCache: boolean; backend: string }; phases: Record<string, number> };
    const wallS = seconds(performance.now() - t0);
    const mem = memory.take();
    out[name] = {
      wallS,
      ...(r.info.timings ? { timings: r.info.timings } : {}),
      phases: r.phases,
      fromCache: r.info.fromCache,
      backend: r.info.backend,
      requests: files.requests.length - before,
      peakMemGB: round(mem.total / 1e9, 2),
      peakRssSumGB: round(mem.rssTotal / 1e9, 2),
      peakMemByType: mem.byType,
    };
    console.log(`${backend} ${name}: ${wallS} s, ${out[name]!.requests} requests, peak ${out[name]!.peakMemGB} GB PSS (RSS summed ${out[name]!.peakRssSumGB}) ${JSON.stringify(mem.byType)}, ${JSON.stringify(r.info.timings ?? {})} phases ${JSON.stringify(r.phases)}`);
  };
  try {
    let page = context.pages()[0] ?? (await context.newPage());
    await phase('prepare', page, () => page.goto(appUrl));
    await phase('reload', page, () => page.reload());
    if (fresh) {
      await context.close();
      context = await launchChromium(profile, backend === 'webgpu');
      watch(context);
      page = context.pages()[0] ?? (await context.newPage());
      await phase('fresh', page, () => page.goto(appUrl));
    }
  } catch (e) {
    console.error(lines.slice(-30).join('\n'));
    throw e;
  } finally {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
  return out;
}

// ---- Main -----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const modelDir = resolve(args['model-dir']!);
  const bundleDir = resolve(args.bundle!);
  const npm = (argv: string[]) => {
    const r = spawnSync('npm', argv, { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`npm ${argv.join(' ')} failed`);
  };
  if (!existsSync(join(modelDir, 'config.json'))) npm(['run', 'fixtures:full', '--', '--out', modelDir]);
  if (!existsSync(join(bundleDir, 'manifest.json')) && !args['skip-node']) {
    npm(['run', 'cli', '--', 'convert', '--model', modelDir, '--vq', modelDir, '--out', bundleDir]);
  }
  const summary: Record<string, unknown> = {};
  if (!args['skip-node']) {
    const node = runNodeLoad(bundleDir, 'node');
    console.log(`Node CLI load (onnxruntime-node): read ${node.readS} s + engine ${node.engineS} s = ${node.totalS} s, peak RSS ${node.peakRssMB} MB`);
    summary.nodeLoadS = node.totalS;
    summary.nodeLoad = node;
  }
  const { startServer } = await import('../serve.ts');
  const { startTestServer } = await import('../../tests/helpers/http-server.ts');
  const { DIST } = await import('../../tests/e2e/browser.ts');
  const [app, files] = await Promise.all([startServer({ root: DIST, port: 0 }), startTestServer(modelDir)]);
  const memory = new MemorySampler();
  const browser: Record<string, Record<string, PhaseResult>> = {};
  try {
    for (const backend of args.backends!.split(',') as ('wasm' | 'webgpu')[]) {
      browser[backend] = await benchBackend(backend, app.url, files, memory, backend === 'webgpu' && !args['skip-fresh']);
    }
  } finally {
    memory.stop();
    await Promise.all([app.close(), files.close()]);
  }
  const wasm = browser.wasm;
  const webgpu = browser.webgpu;
  if (wasm) {
    summary.reloadReadyS = wasm.reload!.wallS;
    if (typeof summary.nodeLoadS === 'number') summary.reloadVsNodeLoad = round(wasm.reload!.wallS / summary.nodeLoadS, 2);
  }
  if (webgpu) {
    summary.webgpuReloadReadyS = webgpu.reload!.wallS;
    if (webgpu.fresh) summary.webgpuFreshReadyS = webgpu.fresh.wallS;
  }
  const all = Object.values(browser).flatMap((b) => Object.entries(b));
  const prepares = all.filter(([n]) => n === 'prepare').map(([, r]) => r);
  if (prepares.length) summary.browserPrepareS = Math.min(...prepares.map((r) => r.wallS));
  summary.browserPeakMemGB = Math.max(...all.map(([, r]) => r.peakMemGB));
  summary.reloadRequests = all.filter(([n]) => n !== 'prepare').reduce((s, [, r]) => s + r.requests, 0);
  summary.browser = browser;
  console.log(JSON.stringify(summary));
}

if (args['node-load']) {
  console.log(JSON.stringify(await nodeLoadChild(args['node-load'], args.ort!)));
} else {
  await main();
}
// Keep the event loop from waiting on ORT's threads.
process.exit(0);
