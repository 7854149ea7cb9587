// b. Generation in headless Chromium on WebGPU (SwiftShader without a GPU; bench/gpu.sh runs it
// on a real GPU): the built app's worker engine loads a checkpoint over HTTP and generates;
// seconds per phase, ms per step and the loop's stats; then N = 2 and 4 images per request
// (generateImages: one GPU pass of 2N rows), with images per minute beside N = 1 and the loop's
// counters per step for each.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './inputs.ts';
import { log } from './log.ts';
import { round } from './stats.ts';

export interface BrowserBenchOptions {
  /** Original checkpoint folders (HF SimpleAR; Cosmos decoder.jit), served over HTTP. */
  model: string;
  vq: string;
  size: number;
  /** Real GPU flags (Vulkan) instead of SwiftShader. */
  gpu: boolean;
  weights: 'q4' | 'q8' | 'f16' | 'f32';
  decoderDtype: 'f16' | 'f32';
  chromium: string;
  /** Images per request measured after the single image (default 2 and 4). */
  counts?: number[];
}

/** One generateImages call of `count` images, as the bench reports it. */
export interface BrowserBatchRow {
  count: number;
  seconds: number;
  imagesPerMinute: number;
  msPerStep: number;
  stats: Record<string, unknown>;
}

export async function benchBrowser(o: BrowserBenchOptions) {
  log(`b. Chromium WebGPU (${o.gpu ? 'GPU flags' : 'SwiftShader'}): ${o.model}, ${o.size}²`);
  const dist = join(ROOT, 'dist');
  if (!existsSync(join(dist, 'index.html'))) {
    log('  dist/ is missing: building (vite build)…');
    const r = spawnSync('npx', ['vite', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new Error('vite build failed');
  }
  if (!existsSync(o.chromium)) throw new Error(`no Chromium at ${o.chromium} (set CHROMIUM_PATH / CHROMIUM)`);
  const { chromium } = await import('playwright-core');
  const { startServer } = await import('../serve.ts');
  // The checkpoint files: the e2e tests' server (CORS on every answer, 404s included, ranges).
  const { startTestServer } = await import('../../tests/helpers/http-server.ts');
  const args = [
    '--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic', '--enable-unsafe-webgpu',
    ...(o.gpu ? ['--enable-features=Vulkan,VulkanFromANGLE', '--use-angle=vulkan', '--use-vulkan=native', '--ignore-gpu-blocklist', '--disable-vulkan-surface', '--enable-gpu'] : []),
  ];
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args });
  const app = await startServer({ root: dist, port: 0 });
  const modelServer = await startTestServer(o.model);
  const vqServer = o.vq === o.model ? modelServer : await startTestServer(o.vq);
  try {
    const page = await (await browser.newContext()).newPage();
    const consoleLines: string[] = [];
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    await page.goto(app.url);
    await page.locator('#status[data-tone]').waitFor({ timeout: 120_000 });
    const adapter = await page.evaluate(async () => {
      const a = await (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> } }).gpu?.requestAdapter();
      return a?.info ? { vendor: a.info.vendor, architecture: a.info.architecture, device: a.info.device, description: a.info.description } : null;
    });
    log(`  adapter: ${JSON.stringify(adapter)}`);
    if (!adapter) throw new Error('no WebGPU adapter in this Chromium (check the GPU flags, drivers and chrome://gpu)');
    if (o.gpu && adapter.architecture === 'swiftshader') log('  WARNING: --gpu asked for, but the adapter is SwiftShader (CPU): no real GPU was picked up');
    const t0 = performance.now();
    type Client = { loadModel(...a: unknown[]): Promise<unknown>; generate(...a: unknown[]): Promise<{ timings: unknown; stats: unknown; width: number }> };
    const info = await page.evaluate(
      ([model, vq, opts]) => (globalThis as unknown as { simplear: { client: Client } }).simplear.client.loadModel({ kind: 'original', model, vq }, opts),
      [modelServer.url, vqServer.url, { weights: o.weights, decoderDtype: o.decoderDtype, backend: 'webgpu', maxLatentSide: o.size / 16 }] as const,
    );
    const loadMs = performance.now() - t0;
    log(`  loaded in ${(loadMs / 1000).toFixed(1)} s: ${JSON.stringify(info)}`);
    const run = () =>
      page.evaluate(
        (size) =>
          (globalThis as unknown as { simplear: { client: Client } }).simplear.client.generate({ prompt: 'a red fox in a snowy forest', size, seed: 1 }).then((r) => ({
            timings: r.timings,
            stats: r.stats,
            width: r.width,
          })),
        o.size,
      );
    const first = await run();
    const r = o.size <= 64 ? await run() : first; // tiny images: a second, warm run (the first compiles shaders)
    const t = r.timings as { prefillMs: number; decodeMs: number; vqMs: number; totalMs: number };
    const stats = r.stats as { runs: number; steps: number };
    const batches: BrowserBatchRow[] = [{ count: 1, seconds: round(t.totalMs / 1000, 3), imagesPerMinute: round(60_000 / t.totalMs), msPerStep: round(t.decodeMs / Math.max(1, stats.runs)), stats: r.stats as Record<string, unknown> }];
    for (const count of o.counts ?? [2, 4]) {
      const started = performance.now();
      const batch = await page.evaluate(
        ([size, n]) =>
          (globalThis as unknown as { simplear: { client: { generateImages(...a: unknown[]): Promise<{ timings: { decodeMs: number }; stats: { runs: number } }[]> } } }).simplear.client
            .generateImages({ prompt: 'a red fox in a snowy forest', size, seed: 1, count: n })
            .then((results) => ({ decodeMs: results[0]!.timings.decodeMs, stats: results[0]!.stats })),
        [o.size, count] as const,
      );
      const seconds = (performance.now() - started) / 1000;
      const row: BrowserBatchRow = { count, seconds: round(seconds, 3), imagesPerMinute: round((count / seconds) * 60), msPerStep: round(batch.decodeMs / Math.max(1, batch.stats.runs)), stats: batch.stats };
      batches.push(row);
      log(`  N=${count}: ${row.seconds} s, ${row.imagesPerMinute} images/min, ${row.msPerStep} ms/step, ${JSON.stringify(batch.stats)}`);
    }
    return {
      chromium: o.chromium,
      mode: o.gpu ? 'gpu' : 'swiftshader',
      adapter,
      model: o.model,
      loaded: info,
      loadSeconds: round(loadMs / 1000),
      size: o.size,
      seconds: { prefill: round(t.prefillMs / 1000, 3), decode: round(t.decodeMs / 1000, 3), vqDecode: round(t.vqMs / 1000, 3), total: round(t.totalMs / 1000, 3) },
      msPerStep: round(t.decodeMs / Math.max(1, stats.runs)),
      stats: r.stats,
      batches,
      ...(r !== first ? { firstRun: first.timings } : {}),
      consoleProblems: consoleLines.filter((l) => l.startsWith('[error]') || l.startsWith('[warning]')).slice(0, 20),
    };
  } finally {
    await browser.close();
    await Promise.all([app.close(), modelServer.close(), vqServer !== modelServer ? vqServer.close() : undefined]);
  }
}
