// Issue #5, the data side, in a real Chromium: the worker downloads the tiny fixture checkpoints
// (original formats, from another origin, with range requests) into real IndexedDB, converts
// them, loads the engine from the stored bundle and generates the reference tokens on WebGPU
// (SwiftShader). A new page in the same browser makes no request at all; a dropped connection
// resumes with only the missing blocks; a corrupted stored block is fetched again; a converted
// bundle served from a URL works; sizes are listed and deletion frees everything; a real (CDP)
// storage quota gives QuotaExceeded with the sizes; a lost GPU device rejects the generation
// with DeviceLost and the next one restarts the engine from storage.
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineClient, LoadModelOptions, ModelSource, PrepareProgress } from '../../src/client/engine-client.ts';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { convertModel } from '../../src/core/convert/convert-model.ts';
import { createNodeBundleSink } from '../../src/core/bundle/node-sink.ts';
import { STORE_DATABASES } from '../../src/core/store/kv-idb.ts';
import type { RunningServer } from '../../tools/serve.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';
import { FIXTURES, goldenGreedy } from '../helpers/fixture-model.ts';
import { ConsoleWatch, launchChromium, serveDist, waitForReady } from './browser.ts';

declare const simplear: { client: EngineClient };

const BLOCK = 1024 * 1024;
// f32 weights and activations: SwiftShader has no shader-f16. 8×8 latents (128 px) at most.
const OPTIONS: LoadModelOptions = { weights: 'f32', decoderDtype: 'f32', maxLatentSide: 8, backend: 'webgpu', downloadBlockBytes: BLOCK };
const fileSize = (path: string) => statSync(join(FIXTURES, path)).size;

let browser: Browser;
let app: RunningServer;
let files: TestServer;
let bundles: TestServer;
let bundleRoot: string;
let context: BrowserContext;
let watch: ConsoleWatch;
let page: Page;
let original: ModelSource;
let bundle: ModelSource;

async function newPage(): Promise<Page> {
  const p = await context.newPage();
  await p.goto(app.url);
  await waitForReady(p);
  return p;
}

/** prepareModel in the page; progress events are returned with the result. */
async function prepare(source: ModelSource, options: LoadModelOptions = OPTIONS) {
  const t0 = Date.now();
  const result = await page.evaluate(
    async ([s, o]) => {
      const progress: PrepareProgress[] = [];
      try {
        const info = await simplear.client.prepareModel(s, { ...o, onProgress: (p) => progress.push(p) });
        return { info, progress, error: null };
      } catch (e) {
        const err = e as Error & { code?: string; details?: Record<string, unknown> };
        return { info: null, progress, error: { name: err.name, code: err.code, message: err.message, details: err.details ?? null } };
      }
    },
    [source, options] as const,
  );
  console.log(`prepare ${source.kind}: ${Date.now() - t0} ms${result.info?.fromCache ? ' (from cache)' : ''}`);
  return result;
}

/** Greedy generation of the golden prompt: the codes must be the PyTorch reference's. */
async function greedyCodes(checkpoint: string): Promise<{ codes: number[]; expected: number[] }> {
  const ref = goldenGreedy(checkpoint);
  const t0 = Date.now();
  const codes = await page.evaluate(
    async (prompt) => Array.from((await simplear.client.generate({ prompt, size: 64, temperature: 0, seed: 1 })).codes),
    ref.prompt,
  );
  console.log(`generate ${checkpoint}: ${Date.now() - t0} ms`);
  return { codes, expected: ref.greedy.codes };
}

/** A short request (one prefill run per prompt, 2×2 latents): fast on SwiftShader; greedy, so repeatable. */
const QUICK = { prompt: 'a tree', negativePrompt: 'blurry', size: 32, temperature: 0, seed: 1 };

async function quickCodes(): Promise<number[]> {
  const t0 = Date.now();
  const codes = await page.evaluate(async (req) => Array.from((await simplear.client.generate(req)).codes), QUICK);
  console.log(`quick generate: ${Date.now() - t0} ms`);
  return codes;
}

let quickReference: number[] = [];

/** Keys of one of the store's IndexedDB object stores, read from the page (same origin as the worker). */
function idbKeys(which: keyof typeof STORE_DATABASES, prefix = ''): Promise<string[]> {
  return page.evaluate(
    ([{ db, store }, prefix]) =>
      new Promise<string[]>((resolve, reject) => {
        const open = indexedDB.open(db);
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const conn = open.result;
          if (!conn.objectStoreNames.contains(store)) return resolve([]);
          const req = conn.transaction(store, 'readonly').objectStore(store).getAllKeys();
          req.onsuccess = () => {
            conn.close();
            resolve((req.result as string[]).filter((k) => k.startsWith(prefix)));
          };
          req.onerror = () => reject(req.error);
        };
      }),
    [STORE_DATABASES[which], prefix] as const,
  );
}

/**
 * The block index of each GET of a whole block of `path` that was answered in full (other
 * reads left out, and so is an attempt cut off by the network, which the worker retries).
 */
function blockGets(path: string): number[] {
  return files.requests
    .filter((r) => r.path === path && r.method === 'GET' && r.range)
    .map((r) => [...(/^bytes=(\d+)-(\d+)$/.exec(r.range!)!.slice(1).map(Number) as [number, number]), r.bytesSent] as const)
    .filter(([start, end, sent]) => start % BLOCK === 0 && sent === end + 1 - start && (sent === BLOCK || end + 1 === fileSize(path)))
    .map(([start]) => start / BLOCK)
    .sort((a, b) => a - b);
}

const distinct = (xs: number[]) => [...new Set(xs)];

/** Fails on any console problem not `expected`, then forgets the expected ones (the next test starts clean). */
function assertConsoleClean(expected: RegExp[] = []): void {
  watch.assertClean(expected);
  watch.problems.length = 0;
}

beforeAll(async () => {
  bundleRoot = await mkdtemp(join(tmpdir(), 'e2e-bundle-'));
  // The `cli convert` output of the fixture (same converter, Node sink), served from its own origin.
  await convertModel({
    model: openFolder(join(FIXTURES, 'tiny-simplear')),
    decoder: openFolder(join(FIXTURES, 'tiny-cosmos')),
    sink: await createNodeBundleSink(join(bundleRoot, 'tiny-f32')),
    weights: 'f32',
    chunkSize: 4 * BLOCK,
  });
  [browser, app, files, bundles] = await Promise.all([launchChromium(), serveDist(), startTestServer(FIXTURES), startTestServer(bundleRoot)]);
  original = { kind: 'original', model: new URL('tiny-simplear/', files.url).href, vq: new URL('tiny-cosmos/', files.url).href };
  bundle = { kind: 'bundle', url: new URL('tiny-f32/', bundles.url).href };
  context = await browser.newContext();
  watch = new ConsoleWatch(context);
  page = await newPage();
});

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await Promise.all([app?.close(), files?.close(), bundles?.close()]);
  if (bundleRoot) await rm(bundleRoot, { recursive: true, force: true });
});

describe('model store in the worker (IndexedDB)', () => {
  it('first visit: the plan tells the sizes, prepare downloads, converts, loads, and generation gives the reference tokens', async () => {
    const plan = await page.evaluate(([s, o]) => simplear.client.planModel(s, o), [original, OPTIONS] as const);
    const downloaded = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']
      .map((f) => fileSize(`tiny-simplear/${f}`))
      .reduce((a, b) => a + b, fileSize('tiny-cosmos/decoder.jit'));
    expect(plan).toMatchObject({ cached: false, downloadBytes: downloaded, storedBytes: 0, peakStorageBytes: downloaded + plan.finalStorageBytes });
    expect(plan.storage?.quota).toBeGreaterThan(0);

    files.reset();
    const t0 = Date.now();
    const { info, progress, error } = await prepare(original);
    console.log(`first prepare (download + convert + load): ${Date.now() - t0} ms`);
    expect(error).toBeNull();
    expect(info).toMatchObject({ modelId: plan.modelId, fromCache: false, backend: 'webgpu', activations: 'f32' });
    // The weight files came in whole blocks, each once, by range.
    for (const path of ['tiny-simplear/model.safetensors', 'tiny-cosmos/decoder.jit']) {
      const requests = JSON.stringify(files.requests.filter((r) => r.path === path));
      const blocks = Math.ceil(fileSize(path) / BLOCK);
      expect(distinct(blockGets(path)), `${path}: ${requests}`).toEqual([...Array(blocks).keys()]);
      // Chromium itself resends a request whose kept-alive connection the server had just
      // closed (seen here under load): allow one such repeat, no more.
      expect(blockGets(path).length, `${path}: ${requests}`).toBeLessThanOrEqual(blocks + 1);
      expect(files.fullGets(path), path).toBe(0);
    }
    // Progress: download up to the total (speed and ETA reported), then convert, then load.
    const phases = progress.map((p) => p.phase).filter((p, i, a) => p !== a[i - 1]);
    expect(phases).toEqual(['download', 'convert', 'load']);
    const last = progress.filter((p) => p.phase === 'download').at(-1)!;
    // (config.json came with the plan, for its size estimate: stored then, not fetched again.)
    expect(last).toMatchObject({ bytes: downloaded, totalBytes: downloaded, fetchedBytes: downloaded - fileSize('tiny-simplear/config.json'), etaMs: 0 });
    expect(progress.at(-1)).toMatchObject({ phase: 'load', done: expect.any(Number) });

    const { codes, expected } = await greedyCodes('tiny-simplear');
    expect(codes).toEqual(expected);
    // The originals were dropped once the bundle was committed.
    expect(await idbKeys('downloads')).toEqual([]);
    assertConsoleClean();
  });

  it('a second visit (new page, same browser) makes no request at all and generates the same tokens', async () => {
    await page.close();
    files.reset();
    page = await newPage();
    const plan = await page.evaluate(([s, o]) => simplear.client.planModel(s, o), [original, OPTIONS] as const);
    expect(plan).toMatchObject({ cached: true, downloadBytes: 0 });
    const { info, error, progress } = await prepare(original);
    expect(error).toBeNull();
    expect(info).toMatchObject({ fromCache: true, backend: 'webgpu' });
    expect(progress.map((p) => p.phase).every((p) => p === 'load')).toBe(true);
    const last = progress.at(-1) as { done: number; total: number };
    expect(last.done).toBe(last.total);
    // Where the load went: the stored chunks read and checked, then the engine and its sessions
    // (the LM's, the decoder's).
    const timings = info!.timings!;
    expect(timings.readMs).toBeGreaterThan(0);
    expect(timings.sessions.length).toBeGreaterThanOrEqual(2);
    expect(timings.sessions.every((s) => s.bytes > 0 && s.ms >= 0)).toBe(true);
    expect(timings.totalMs).toBe(timings.readMs! + timings.engineMs);
    expect(timings.engineMs).toBeGreaterThanOrEqual(Math.max(...timings.sessions.map((s) => s.ms)));
    expect(files.requests).toEqual([]);
    quickReference = await quickCodes();
    expect(quickReference).toHaveLength(4);
    expect(quickReference.every((c) => Number.isInteger(c) && c >= 0 && c < 64000)).toBe(true);
    assertConsoleClean();
  });

  it('a lost GPU device: the running generation rejects with DeviceLost, the next one restarts the engine from storage', async () => {
    files.reset();
    const result = await page.evaluate(async (req) => {
      const { client } = simplear;
      let lost: Promise<boolean> | undefined;
      const t0 = performance.now();
      let lostAt = 0;
      const failed = await client
        .generate(
          { ...req, size: 64 },
          {
            onProgress: (p) => {
              if (p.phase !== 'decode' || p.done < 2 || lost) return;
              lostAt = performance.now() - t0;
              lost = client.debugLoseDevice();
            },
          },
        )
        .then(
          () => null,
          (e: Error & { code?: string }) => ({ name: e.name, code: e.code, message: e.message }),
        );
      return { failed, wasLost: await lost, lostAt, rejectedAt: performance.now() - t0 };
    }, QUICK);
    console.log(`device lost ${Math.round(result.lostAt)} ms into the generation; it rejected at ${Math.round(result.rejectedAt)} ms`);
    expect(result.wasLost).toBe(true);
    expect(result.failed).toMatchObject({ code: 'DeviceLost' });
    expect(result.failed!.message).toMatch(/generate again/);
    // The next generation starts a fresh worker, loads the stored bundle: the same tokens as before.
    expect(await quickCodes()).toEqual(quickReference);
    expect(files.requests).toEqual([]);
    assertConsoleClean();
  });

  it('a converted bundle served from a URL: chunks checked and stored once (even for two calls at once), loaded, then loaded with no request', async () => {
    const manifest = JSON.parse(readFileSync(join(bundleRoot, 'tiny-f32/manifest.json'), 'utf8')) as { chunks: { file: string }[]; layout: { totalBytes: number } };
    bundles.reset();
    // Two calls at once (a double click): the worker runs them one after the other.
    const [first, twin] = await Promise.all([prepare(bundle), prepare(bundle)]);
    expect(twin.info).toMatchObject({ fromCache: true });
    expect(first.error).toBeNull();
    // Loading reads every chunk back from IndexedDB and checks its SHA-256 against the manifest.
    expect(first.info).toMatchObject({ fromCache: false, backend: 'webgpu', numLayers: 2, hiddenSize: 64 });
    expect(first.progress.filter((p) => p.phase === 'load').at(-1)).toMatchObject({ done: manifest.chunks.length, total: manifest.chunks.length });
    expect(bundles.requests.filter((r) => r.method === 'GET').map((r) => r.path).sort()).toEqual(
      ['tiny-f32/manifest.json', ...manifest.chunks.map((c) => `tiny-f32/${c.file}`)].sort(),
    );
    bundles.reset();
    const again = await prepare(bundle);
    expect(again.info).toMatchObject({ fromCache: true });
    expect(bundles.requests).toEqual([]);
    assertConsoleClean();
  });

  it('listCachedModels reports each model with its size; deleteCachedModel frees its entries', async () => {
    const manifestBytes = statSync(join(bundleRoot, 'tiny-f32/manifest.json')).size;
    const manifest = JSON.parse(readFileSync(join(bundleRoot, 'tiny-f32/manifest.json'), 'utf8')) as { layout: { totalBytes: number } };
    const list = await page.evaluate(() => simplear.client.listCachedModels());
    expect(list).toHaveLength(2);
    const fromBundle = list.find((m) => m.source.kind === 'bundle')!;
    expect(fromBundle).toMatchObject({ complete: true, weights: 'f32', bytes: manifest.layout.totalBytes + manifestBytes });
    const converted = list.find((m) => m.source.kind === 'original')!;
    expect(converted).toMatchObject({ complete: true, weights: 'f32', name: 'tiny-simplear (f32)' });
    expect(converted.bytes).toBeGreaterThan(fileSize('tiny-simplear/model.safetensors'));
    for (const m of list) await page.evaluate((id) => simplear.client.deleteCachedModel(id), m.modelId);
    expect(await page.evaluate(() => simplear.client.listCachedModels())).toEqual([]);
    expect(await idbKeys('bundles')).toEqual([]);
    expect(await idbKeys('downloads')).toEqual([]);
    assertConsoleClean();
  });

  it('a dropped connection: prepare fails, the next one fetches only the missing blocks and refetches a corrupted one', async () => {
    // The sharded fixture: an index and two shards (the single-file name is probed first: 404).
    const sharded: ModelSource = { kind: 'original', model: new URL('tiny-simplear-b/', files.url).href, vq: original.kind === 'original' ? original.vq : '' };
    const shard = 'tiny-simplear-b/model-00001-of-00002.safetensors';
    files.reset();
    // Two blocks of the first shard arrive; every later GET of it drops after 1000 bytes.
    files.setFailures([{ path: shard, method: 'GET', after: 2, dropAfterBytes: 1000 }]);
    const failed = await prepare(sharded);
    files.setFailures([]);
    expect(failed.error).toMatchObject({ code: 'HttpError' });
    expect(failed.progress.some((p) => p.phase === 'download')).toBe(true);

    const shardUrl = new URL(shard, files.url).href;
    const storedKeys = await idbKeys('downloads', `b|${shardUrl}|`);
    const storedBefore = storedKeys.map((k) => Number(k.split('|').at(-1)));
    expect(storedBefore).toHaveLength(2);
    const plan = await page.evaluate(([s, o]) => simplear.client.planModel(s, o), [sharded, OPTIONS] as const);
    expect(plan.storedBytes).toBeGreaterThanOrEqual(2 * BLOCK);

    // Flip one byte of a stored block in IndexedDB: its recorded SHA-256 no longer matches.
    const victim = storedKeys[0]!;
    await page.evaluate(
      ([{ db, store }, key]) =>
        new Promise<void>((resolve, reject) => {
          const open = indexedDB.open(db);
          open.onsuccess = () => {
            const tx = open.result.transaction(store, 'readwrite');
            const s = tx.objectStore(store);
            const get = s.get(key);
            get.onsuccess = () => {
              const value = get.result as { sha256: string; bytes: Uint8Array };
              const bytes = value.bytes.slice();
              bytes[123] = bytes[123]! ^ 0xff;
              s.put({ ...value, bytes }, key);
            };
            tx.oncomplete = () => (open.result.close(), resolve());
            tx.onerror = () => reject(tx.error);
          };
          open.onerror = () => reject(open.error);
        }),
      [STORE_DATABASES.downloads, victim] as const,
    );

    files.reset();
    const resumed = await prepare(sharded);
    expect(resumed.error).toBeNull();
    expect(resumed.info).toMatchObject({ fromCache: false });
    const total = Math.ceil(fileSize(shard) / BLOCK);
    const missing = [...Array(total).keys()].filter((i) => !storedBefore.includes(i));
    const victimIndex = Number(victim.split('|').at(-1));
    // Exactly the missing blocks and the corrupted one; no block that was stored intact.
    expect(distinct(blockGets(shard))).toEqual([...missing, victimIndex].sort((a, b) => a - b));
    // The resumed download's progress starts from what was stored.
    const firstDownload = resumed.progress.find((p) => p.phase === 'download') as Extract<PrepareProgress, { phase: 'download' }>;
    expect(firstDownload.bytes - firstDownload.fetchedBytes).toBe(plan.storedBytes);

    const dropped = new RegExp(`request failed\\] ${shardUrl.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
    assertConsoleClean([dropped, /404.*\/tiny-simplear-b\/model\.safetensors\)?$/, /Failed to load resource.*404/]);
    const [stored] = await page.evaluate(() => simplear.client.listCachedModels());
    await page.evaluate((id) => simplear.client.deleteCachedModel(id), stored!.modelId);
  });

  it('a tab closed mid-download: the next visit resumes from the blocks the worker had stored', async () => {
    const path = 'tiny-simplear/model.safetensors';
    files.reset();
    // Three blocks of the weights arrive, then the server stalls (as a slow link would).
    files.setFailures([{ path, method: 'GET', after: 3, delayMs: 60_000 }]);
    await page.evaluate(([s, o]) => {
      const seen: PrepareProgress[] = [];
      (globalThis as { seen?: PrepareProgress[] }).seen = seen;
      simplear.client.prepareModel(s, { ...o, onProgress: (p) => seen.push(p) }).catch(() => {});
    }, [original, OPTIONS] as const);
    await page.waitForFunction(
      (want) => ((globalThis as { seen?: PrepareProgress[] }).seen ?? []).some((p) => p.phase === 'download' && p.bytes >= want),
      3 * BLOCK,
      { timeout: 60_000 },
    );
    await page.close(); // the worker dies with its tab, requests in flight
    files.setFailures([]);
    page = await newPage();
    const stored = (await idbKeys('downloads', `b|${new URL(path, files.url).href}|`)).map((k) => Number(k.split('|').at(-1)));
    expect(stored).toEqual([0, 1, 2]);
    files.reset();
    const resumed = await prepare(original);
    expect(resumed.error).toBeNull();
    expect(resumed.info).toMatchObject({ fromCache: false, backend: 'webgpu' });
    const total = Math.ceil(fileSize(path) / BLOCK);
    expect(distinct(blockGets(path))).toEqual([...Array(total).keys()].filter((i) => !stored.includes(i)));
    const [model] = await page.evaluate(() => simplear.client.listCachedModels());
    await page.evaluate((id) => simplear.client.deleteCachedModel(id), model!.modelId);
    // The closed tab's stalled requests were cut off.
    assertConsoleClean([/request failed\] http:\/\/127\.0\.0\.1:\d+\/tiny-(simplear|cosmos)\/[\w.]+: net::ERR_ABORTED/]);
  });

  it('under a real storage quota (CDP) smaller than the model, the refused write becomes QuotaExceeded with the sizes; what fit is kept', async () => {
    // Chromium enforces the overridden quota on IndexedDB writes, while navigator.storage.estimate()
    // keeps reporting the disk's: this is the path where the browser itself refuses a write.
    // A fresh browser context: its quota bookkeeping starts from an empty origin.
    await context.close();
    context = await browser.newContext();
    watch = new ConsoleWatch(context);
    page = await newPage();
    const cdp = await context.newCDPSession(page);
    const origin = new URL(app.url).origin;
    const quota = 4 * BLOCK;
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: quota });
    let error: Awaited<ReturnType<typeof prepare>>['error'];
    try {
      ({ error } = await prepare(original));
    } finally {
      await cdp.send('Storage.overrideQuotaForOrigin', { origin });
    }
    expect(error).toMatchObject({ code: 'QuotaExceeded' });
    const details = error!.details as { needed: number; available: number; cause: string };
    expect(details.needed).toBeGreaterThan(quota);
    expect(details.cause).toMatch(/QuotaExceededError/);
    expect(error!.message).toMatch(/it needs [\d.]+ MB more and the browser refused to store more \([\d.]+ MB is free\)/);
    // The blocks stored before the refusal are kept for the next attempt.
    const plan = await page.evaluate(([s, o]) => simplear.client.planModel(s, o), [original, OPTIONS] as const);
    // (Chromium counts IndexedDB usage its own way: what fit is near the quota, not exactly it.)
    expect(plan.storedBytes).toBeGreaterThan(0);
    expect(plan.downloadBytes).toBeGreaterThan(0);
    const [partial, ...none] = await page.evaluate(() => simplear.client.listCachedModels());
    expect(none).toEqual([]);
    expect(partial).toMatchObject({ complete: false, bytes: plan.storedBytes });
    await page.evaluate((id) => simplear.client.deleteCachedModel(id), partial!.modelId);
    expect(await idbKeys('downloads')).toEqual([]);
    // The refused write stops the other block fetches then in flight.
    assertConsoleClean([/request failed\] http:\/\/127\.0\.0\.1:\d+\/tiny-(simplear\/model\.safetensors|cosmos\/decoder\.jit): net::ERR_ABORTED/]);
  });
});
