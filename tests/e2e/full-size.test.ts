// The released model's shapes end to end in a real Chromium, from a full-size random-weight
// checkpoint written in beforeAll by `npm run fixtures:full`'s generator and served by a local
// mirror whose request log is checked. One browser profile on disk, used twice: first by a
// Chromium without WebGPU (the wasm backend), then by one with WebGPU (SwiftShader here):
//  a. through the page: Check download size → download (one connection dropped mid-file, one
//     reply corrupted in transit, both recovered) → conversion → IndexedDB → ready on wasm; each
//     (path, range) asked once but the injected failures', bytes sent ≤ 1.01× the files' (+ the
//     lost bytes);
//  b. reload: the stored model is ready with no request to the mirror;
//  c. without WebGPU, the full-size model generates (a 2×2 greedy image), with the tokens of
//     Node's CPU engine at the same precision (q4, f32 activations, MatMulNBits accuracy level 0);
//  d. the full-width VQ decoder on a 64×64 latent in the page, within one level of Node's
//     decoder on the same codes (wasm here, WebGPU in f);
//  e. the same profile in a Chromium with WebGPU: the stored model is ready with no request, and
//     a short greedy q4 generation gives Node's tokens;
//  f. the decoder of d on WebGPU.
// The main thread never blocks for more than 200 ms (long-task observer, every page load). Each
// phase's time is logged. SwiftShader runs a full-size LM step in seconds and a captured graph
// takes the prompts one token per run, so the generations are 2×2 latents with short prompts.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineClient } from '../../src/client/engine-client.ts';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { loadOriginalModel } from '../../src/core/engine/load-original.ts';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import type { SimpleAREngine } from '../../src/core/engine/engine.ts';
import type { RunningServer } from '../../tools/serve.ts';
import { startTestServer, type RequestRecord, type TestServer } from '../helpers/http-server.ts';
import { BASE_ARGS, CHROMIUM_PATH, ConsoleWatch, serveDist, waitForReady } from './browser.ts';

declare const simplear: { client: EngineClient };

const ROOT = resolve(import.meta.dirname, '../..');
/** The page's default formats, named so the API calls below address the same stored model. */
const FORMATS = { weights: 'q4', decoderDtype: 'f16' } as const;
/** Short prompts (a captured graph reads them one token per run) and a 2×2 latent, greedy. */
const GREEDY = { prompt: 'a red fox', negativePrompt: 'blurry', size: 32, temperature: 0, seed: 1 };
const DECODE_SIDE = 64;
/** Body bytes the dropped connection sends before the socket is destroyed (mid-block). */
const DROP_AFTER = 3 * 2 ** 20;
const LONG_TASK_LIMIT_MS = 200;

/** Each long task (start, duration) and each change of the progress title, with Date.now(). */
const OBSERVE = `
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longTasks.push({ start: Math.round(e.startTime), ms: Math.round(e.duration) });
  }).observe({ type: 'longtask', buffered: true });
  window.__titles = [];
  new MutationObserver(() => {
    for (const view of document.querySelectorAll('.progress:not([hidden])')) {
      const title = view.querySelector('.progress-title')?.textContent ?? '';
      if (window.__titles.at(-1)?.title !== title) window.__titles.push({ t: Date.now(), title });
    }
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
`;

let dir: string;
/** The browser profile (IndexedDB) both launches share. */
let profileDir: string;
let appUrl: string;
let app: RunningServer;
let files: TestServer;
/** Serves Node's decoder image to the page (apart from the mirror, whose request log is checked). */
let reference: TestServer;
let referenceDir: string;
let context: BrowserContext | undefined;
let watch: ConsoleWatch;
let page: Page;
/** Node's CPU engine on the same checkpoint (f32 activations, accuracy level 0). */
let node: Promise<SimpleAREngine> | undefined;
let nodeCodes: number[] | undefined;
/** The codes of the 64×64 decode, and Node's image of them. */
let decodeCodes: Int32Array;
let nodeImage: Promise<Uint8Array> | undefined;
const timings: Record<string, number> = {};

const seconds = (ms: number) => Math.round(ms / 100) / 10;
function timed(name: string, ms: number): void {
  timings[name] = seconds(ms);
  console.log(`full-size: ${name} ${seconds(ms)} s`);
}
async function time<T>(name: string, work: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await work();
  timed(name, performance.now() - t0);
  return result;
}

const gets = (): RequestRecord[] => files.requests.filter((r) => r.method === 'GET');
const key = (r: RequestRecord) => `${r.path} ${r.range ?? ''}`;
const rangeOf = (r: RequestRecord) => /^bytes=(\d+)-(\d+)$/.exec(r.range ?? '')!.slice(1).map(Number) as [number, number];

/** The page's long tasks so far (logged); those over the limit are returned, for the test to assert on. */
async function collectLongTasks(where: string): Promise<{ start: number; ms: number }[]> {
  const tasks = await page.evaluate(() => (window as unknown as { __longTasks: { start: number; ms: number }[] }).__longTasks);
  console.log(`full-size: long tasks (${where}): ${tasks.length}, longest ${Math.max(0, ...tasks.map((t) => t.ms))} ms`);
  return tasks.filter((t) => t.ms > LONG_TASK_LIMIT_MS);
}

/**
 * Waits for the model to be ready (and Generate enabled), logging the status and progress lines every 15 s, so that a
 * slow phase can be told from a stuck one in CI's output.
 */
async function generateEnabled(timeout: number): Promise<void> {
  const t0 = Date.now();
  const timer = setInterval(() => {
    void page
      .evaluate(() => {
        const view = document.querySelector('.progress:not([hidden])');
        const line = view ? `${view.querySelector('.progress-title')?.textContent} · ${view.querySelector('.progress-detail')?.textContent}` : '';
        return `${document.querySelector('#status')?.textContent ?? ''} | ${line}`;
      })
      .then((text) => console.log(`full-size: ${seconds(Date.now() - t0)} s: ${text}`), () => {});
  }, 15_000);
  try {
    // Generate enabled, or the page says the preparation failed (then fail now, with its reason).
    const handle = await page.waitForFunction(
      () => {
        const generate = document.querySelector('button.generate') as HTMLButtonElement | null;
        if (generate && !generate.disabled) return 'ready';
        if (document.querySelector('.model-loaded:not([hidden])')) return 'ready';
        return /could not/.test(document.querySelector('#status')?.textContent ?? '') ? document.querySelector('#model-plan')?.textContent ?? 'failed' : false;
      },
      undefined,
      { timeout, polling: 500 },
    );
    expect(await handle.jsonValue()).toBe('ready');
  } finally {
    clearInterval(timer);
  }
  // Without WebGPU the page then times a 4×4 test image for its estimates (minutes at full size
  // on this machine): the user may cancel it, and so does the test, to keep within its time.
  const next = await page.waitForFunction(
    () =>
      !(document.querySelector('button.generate') as HTMLButtonElement).disabled ? 'enabled'
      : /Measuring/.test(document.querySelector('.engine-notice')?.textContent ?? '') ? 'measuring'
      : false,
    undefined,
    { timeout: 60_000, polling: 200 },
  );
  if ((await next.jsonValue()) === 'measuring') {
    await page.locator('button.cancel').click();
    await page.locator('.engine-notice', { hasText: /speed test was cancelled/ }).waitFor({ timeout: 60_000 });
  }
  await page.locator('button.generate:not([disabled])').waitFor({ timeout: 60_000 });
}

/** Node's CPU engine on the checkpoint, converted in memory with the same converters (q4, f16 decoder). */
function nodeEngine(): Promise<SimpleAREngine> {
  node ??= time('Node: convert in memory + CPU engine', async () => {
    const model = await loadOriginalModel(openFolder(dir), openFolder(dir), { ...FORMATS, name: 'full-size' });
    return createCpuEngine(ort, model, { activations: 'f32', accuracyLevel: 0, maxLatentSide: DECODE_SIDE });
  });
  return node;
}

/** Node's decoder on `decodeCodes` (once). */
function nodeDecode(): Promise<Uint8Array> {
  nodeImage ??= nodeEngine().then((e) => time('Node decoder 64×64', () => e.decode(decodeCodes, DECODE_SIDE, DECODE_SIDE))).then((r) => r.rgba);
  return nodeImage;
}

/**
 * The page decodes `decodeCodes` and compares its pixels with Node's image of them, which it
 * fetches from `reference` (a local server): only the figures cross back to the test, since
 * returning 4 MB of pixels through page.evaluate serialises them on the page's main thread.
 */
async function decodeInPage(): Promise<{ ms: number; width: number; height: number; fallback: string | null; length: number; expectedLength: number; maxDiff: number }> {
  const url = new URL(await writeReference(), reference.url).href;
  return page.evaluate(
    async ([codes, side, url]) => {
      const [image, expected] = await Promise.all([
        simplear.client.decode(Int32Array.from(codes), side),
        fetch(url).then(async (r) => new Uint8Array(await r.arrayBuffer())),
      ]);
      let maxDiff = image.rgba.length === expected.length ? 0 : Infinity;
      for (let i = 0; i < image.rgba.length && maxDiff !== Infinity; i++) maxDiff = Math.max(maxDiff, Math.abs(image.rgba[i]! - expected[i]!));
      return { ms: image.ms, width: image.width, height: image.height, fallback: image.fallback?.reason ?? null, length: image.rgba.length, expectedLength: expected.length, maxDiff };
    },
    [Array.from(decodeCodes), DECODE_SIDE, url] as const,
  );
}

/** Node's image of `decodeCodes`, written once into the reference server's folder; its file name. */
async function writeReference(): Promise<string> {
  const name = 'node-decoder.rgba';
  await writeFile(join(referenceDir, name), await nodeDecode());
  return name;
}

/**
 * d and f: the page's backend decodes the 64×64 latent within one level of Node's decoder, with no
 * request to the mirror and no long task since `since` (the long tasks' log label).
 */
async function decoderMatchesNode(backend: string, since: string): Promise<void> {
  await nodeDecode();
  const image = await time(`${backend} decoder 64×64 (round trip)`, decodeInPage);
  console.log(`full-size: ${backend} decoder ${image.ms} ms in the worker${image.fallback ? `, f32 rerun: ${image.fallback}` : ''}`);
  // Node's image reached the page whole (a wrong URL or a short read would show here, not as a difference).
  expect([image.width, image.height, image.length, image.expectedLength]).toEqual([DECODE_SIDE * 16, DECODE_SIDE * 16, DECODE_SIDE * DECODE_SIDE * 256 * 4, DECODE_SIDE * DECODE_SIDE * 256 * 4]);
  console.log(`full-size: ${backend} decoder vs Node: max difference ${image.maxDiff} levels`);
  expect(image.maxDiff).toBeLessThanOrEqual(1);
  expect(files.requests).toEqual([]);
  const blocked = await collectLongTasks(since);
  assertClean();
  expect(blocked).toEqual([]);
}

/**
 * Opens the app with the mirror's checkpoint in a Chromium on the shared profile (on disk: an
 * incognito-like context refuses to store 1.7 GB), with or without WebGPU.
 */
async function openApp(webgpu: boolean): Promise<void> {
  await context?.close();
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...BASE_ARGS, webgpu ? '--enable-unsafe-webgpu' : '--disable-features=WebGPU'],
  });
  watch = new ConsoleWatch(context);
  await context.addInitScript(OBSERVE);
  page = context.pages()[0] ?? (await context.newPage());
  await page.goto(appUrl);
  await waitForReady(page);
}

/** The dropped connection is the one failed request the browser reports. */
const assertClean = () => watch.assertClean([/request failed\] .*\/model\.safetensors/]);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'simplear-e2e-full-'));
  // The committed generator, as `npm run fixtures:full -- --out DIR` runs it.
  await time('write the full-size checkpoint (fixtures:full)', () =>
    promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'tools/fixtures/full-checkpoint.ts'), '--out', dir], { cwd: ROOT }),
  );
  // A fixed pseudo-random 64×64 latent over the whole codebook.
  let x = 12345;
  decodeCodes = Int32Array.from({ length: DECODE_SIDE * DECODE_SIDE }, () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) % 64000);
  profileDir = await mkdtemp(join(tmpdir(), 'simplear-e2e-profile-'));
  referenceDir = await mkdtemp(join(tmpdir(), 'simplear-e2e-reference-'));
  reference = await startTestServer(referenceDir);
  console.log(`full-size: load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs`);
  app = await serveDist();
  files = await startTestServer(dir, {
    contentDigest: true,
    failures: [
      { path: 'model.safetensors', method: 'GET', after: 40, times: 1, dropAfterBytes: DROP_AFTER },
      { path: 'decoder.jit', method: 'GET', after: 10, times: 1, corruptByte: 123_456 },
    ],
  });
  appUrl = `${app.url}?${new URLSearchParams({ model: files.url, vq: files.url, weights: FORMATS.weights, decoder: FORMATS.decoderDtype })}`;
}, 180_000);

afterAll(async () => {
  console.log(`full-size timings (s): ${JSON.stringify(timings)}`);
  await (await node?.catch(() => undefined))?.dispose();
  await context?.close();
  await Promise.all([app?.close(), files?.close(), reference?.close()]);
  console.log(`full-size: load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  for (const d of [dir, profileDir, referenceDir]) if (d) await rm(d, { recursive: true, force: true });
}, 60_000);

describe('full-size SimpleAR-0.5B in Chromium', () => {
  it('a. without WebGPU, through the page: check size, download (a dropped connection and a corrupt block recovered), convert, store: each byte fetched once', { timeout: 720_000 }, async () => {
    await openApp(false);
    expect(files.requests).toHaveLength(0);

    await time('check download size', async () => {
      await page.locator('.model-action').click();
      await page.locator('#model-plan[data-download-bytes]').waitFor({ timeout: 60_000 });
    });
    const names = (await readdir(dir)).filter((f) => f !== 'added_tokens.json' && f !== 'special_tokens_map.json');
    const sizes = new Map(await Promise.all(names.map(async (f) => [f, (await stat(join(dir, f))).size] as const)));
    const filesBytes = [...sizes.values()].reduce((a, b) => a + b, 0);
    const planned = Number(await page.locator('#model-plan').getAttribute('data-download-bytes'));
    console.log(`full-size: plan says ${planned} bytes to download; the checkpoint's files hold ${filesBytes}`);
    expect(planned).toBeGreaterThanOrEqual(sizes.get('model.safetensors')! + sizes.get('decoder.jit')!);
    expect(gets().filter((r) => r.path === 'model.safetensors' && !r.range)).toEqual([]); // sizes only
    expect(await page.locator('.model-action').textContent()).toMatch(/^Download [\d.]+ \S+ and prepare$/);

    const t0 = Date.now();
    await page.locator('.model-action').click();
    await generateEnabled(460_000);
    const ready = Date.now();
    console.log(`full-size: ${await page.locator('.model-loaded').textContent()}`);
    expect(await page.locator('.model-loaded').textContent()).toMatch(/is ready: .*CPU/);
    const titles = await page.evaluate(() => (window as unknown as { __titles: { t: number; title: string }[] }).__titles);
    const first = (re: RegExp) => titles.find((x) => x.t >= t0 && re.test(x.title))?.t;
    const [download, convert, load] = [first(/^Downloading/), first(/^Converting/), first(/^(Loading the model|Checking the stored model)/)];
    console.log(`full-size: first visit ready after ${seconds(ready - t0)} s: download from ${seconds((download ?? t0) - t0)} s, convert from ${seconds((convert ?? ready) - t0)} s, load from ${seconds((load ?? ready) - t0)} s`);
    timed('first visit: download + convert + store + load (wasm)', ready - t0);
    const blocked = await collectLongTasks('first visit');
    expect(convert).toBeDefined();

    // The request log: the injected failures happened and were recovered, nothing else twice.
    const dropped = gets().find((r) => r.injected === 'drop');
    const corrupt = gets().find((r) => r.injected === 'corrupt');
    expect(dropped).toBeDefined();
    expect(corrupt).toBeDefined();
    const [, dropEnd] = rangeOf(dropped!);
    const resumed = gets().filter((r) => r.path === dropped!.path && r !== dropped && rangeOf(r)[1] === dropEnd);
    expect(resumed).toHaveLength(1);
    const seen = new Map<string, number>();
    for (const r of gets()) seen.set(key(r), (seen.get(key(r)) ?? 0) + 1);
    const twice = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
    expect(twice).toContain(key(corrupt!));
    expect(twice.filter((k) => k !== key(corrupt!) && k !== key(dropped!))).toEqual([]);
    // Every file the store fetched, whole.
    const fetched = new Set(gets().map((r) => r.path));
    for (const f of ['config.json', 'tokenizer.json', 'model.safetensors', 'decoder.jit']) expect(fetched.has(f), f).toBe(true);
    for (const f of fetched) if (!sizes.has(f)) sizes.set(f, (await stat(join(dir, f))).size);
    console.log(`full-size: files fetched: ${[...fetched].join(', ')}`);
    // Each file but the two with injected failures came exactly once (tokenizer.json, 11 MB, in two blocks).
    for (const f of fetched) if (f !== dropped!.path && f !== corrupt!.path) expect(files.bytesSent(f), f).toBe(sizes.get(f));
    const fetchedBytes = [...fetched].reduce((a, f) => a + sizes.get(f)!, 0);
    const sent = gets().reduce((a, r) => a + r.bytesSent, 0);
    console.log(`full-size: ${gets().length} GETs, ${sent} bytes sent for ${fetchedBytes} bytes of files (${(sent / fetchedBytes).toFixed(4)}×; corrupt reply ${corrupt!.bytesSent}, dropped after ${dropped!.bytesSent})`);
    expect(sent - fetchedBytes).toBeGreaterThanOrEqual(corrupt!.bytesSent);
    expect(sent - fetchedBytes).toBeLessThanOrEqual(corrupt!.bytesSent + DROP_AFTER);
    expect(sent).toBeLessThanOrEqual(fetchedBytes * 1.01 + DROP_AFTER);

    // The panel's list comes from the worker, which may be running the CPU speed test's prefill
    // (one wasm run of tens of seconds at full size) when the list is asked for.
    await page.locator('.storage-item').waitFor({ timeout: 120_000 });
    assertClean();
    // The main thread never blocked for more than 200 ms.
    expect(blocked).toEqual([]);
  });

  it('b. after a reload the stored model is ready with no request to the mirror', { timeout: 240_000 }, async () => {
    files.reset();
    const t0 = Date.now();
    await page.reload();
    await generateEnabled(220_000);
    timed('reload to ready (wasm)', Date.now() - t0);
    expect(await page.locator('.model-loaded').textContent()).toMatch(/loaded from this browser’s storage/);
    expect(files.requests).toEqual([]);
    const blocked = await collectLongTasks('reload (wasm)');
    assertClean();
    expect(blocked).toEqual([]);
  });

  it('c. without WebGPU the full-size model generates, with the tokens of Node’s CPU engine at the same precision', { timeout: 600_000 }, async () => {
    const wasm = await time('wasm generation (2×2, greedy)', () => page.evaluate((req) => simplear.client.generate(req), GREEDY));
    console.log(`full-size: wasm stats ${JSON.stringify(wasm.stats)} timings ${JSON.stringify(wasm.timings)}`);
    expect(wasm.stats).toMatchObject({ backend: 'wasm', steps: 4 });
    // The wasm EP runs the q4 graph at accuracy level 0 with f32 activations, as the reference.
    const engine = await nodeEngine();
    const cpu = await time('Node CPU generation (2×2, greedy)', () => engine.generate(GREEDY));
    nodeCodes = Array.from(cpu.codes);
    expect(Array.from(wasm.codes)).toEqual(nodeCodes);
    expect(files.requests).toEqual([]);
    assertClean();
  });

  it('d. the full-width decoder on a 64×64 latent on wasm, within one level of Node’s', { timeout: 300_000 }, () =>
    decoderMatchesNode('wasm', 'since the reload (wasm): generation, decode'));

  it('e. with WebGPU, on the same profile: ready from storage with no request, and a short greedy q4 generation gives Node’s tokens', { timeout: 540_000 }, async () => {
    files.reset();
    const t0 = Date.now();
    await openApp(true);
    await generateEnabled(500_000);
    timed('new browser to ready (WebGPU, from storage)', Date.now() - t0);
    expect(await page.locator('.model-loaded').textContent()).toMatch(/loaded from this browser’s storage: runs on your GPU \(WebGPU/);
    expect(files.requests).toEqual([]);
    const gpu = await time('WebGPU generation (2×2, greedy)', () => page.evaluate((req) => simplear.client.generate(req), GREEDY));
    console.log(`full-size: WebGPU stats ${JSON.stringify(gpu.stats)} timings ${JSON.stringify(gpu.timings)}`);
    expect(gpu.stats).toMatchObject({ backend: 'webgpu', steps: 4 });
    nodeCodes ??= Array.from((await (await nodeEngine()).generate(GREEDY)).codes);
    expect(Array.from(gpu.codes)).toEqual(nodeCodes);
    expect(files.requests).toEqual([]);
    assertClean();
  });

  it('f. the full-width decoder on a 64×64 latent on WebGPU, within one level of Node’s', { timeout: 900_000 }, () =>
    decoderMatchesNode('WebGPU', 'WebGPU browser: load, generation, decode'));
});
