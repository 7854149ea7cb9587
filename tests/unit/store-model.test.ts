// The model store's logic in Node: the real test HTTP server (ranges, failure injection) serving
// the tiny fixtures in their original formats, the real converter, and the store's storage in
// an in-memory KeyValueStore (the browser test runs the same code on IndexedDB). Plan sizes,
// download → convert → stored bundle, a second prepare with no request, resume after a dropped
// connection with only the missing blocks fetched, a corrupted block fetched again, bundle
// sources resumed by chunk, quota errors with the sizes, list and delete.
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimpleARError } from '../../src/core/base/errors.ts';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { createNodeBundleSink } from '../../src/core/bundle/node-sink.ts';
import { convertModel } from '../../src/core/convert/convert-model.ts';
import { openModelBundle } from '../../src/core/runtime/model-bundle.ts';
import { MemoryKv, isQuotaError, quotaExceeded, type KeyValueStore } from '../../src/core/store/kv.ts';
import { ModelStore, type ModelStoreOptions } from '../../src/core/store/model-store.ts';
import { Sha256Stream } from '../../src/core/base/sha256.ts';
import { sha256FromEtag } from '../../src/core/store/etag.ts';
import { sha256Hex } from '../../src/core/base/sha256.ts';
import type { ModelSource, PrepareProgress } from '../../src/client/protocol.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const BLOCK = 1024 * 1024;
const WEIGHTS = { weights: 'f32', decoderDtype: 'f32', downloadBlockBytes: BLOCK } as const;
const SAFETENSORS = 'tiny-simplear/model.safetensors';
const DECODER = 'tiny-cosmos/decoder.jit';
const fileSize = (path: string) => statSync(join(FIXTURES, path)).size;

let server: TestServer;
let bundleDir: string;
let source: ModelSource;

beforeAll(async () => {
  server = await startTestServer(FIXTURES);
  source = { kind: 'original', model: new URL('tiny-simplear/', server.url).href, vq: new URL('tiny-cosmos/', server.url).href };
  bundleDir = await mkdtemp(join(tmpdir(), 'store-bundle-'));
});

afterAll(async () => {
  await server?.close();
  if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
});

function newStore(extra: Partial<ModelStoreOptions> = {}): { store: ModelStore; downloads: MemoryKv; bundles: MemoryKv } {
  const downloads = new MemoryKv();
  const bundles = new MemoryKv();
  return { store: new ModelStore({ downloads, bundles, retryDelayMs: 5, ...extra }), downloads, bundles };
}

/** The block index of each GET of a whole block of `path` (header reads and the like left out). */
const blockGets = (path: string) =>
  server.requests
    .filter((r) => r.path === path && r.method === 'GET' && r.range)
    .map((r) => /^bytes=(\d+)-(\d+)$/.exec(r.range!)!.slice(1).map(Number) as [number, number])
    .filter(([start, end]) => start % BLOCK === 0 && (end + 1 - start === BLOCK || end + 1 === fileSize(path)))
    .map(([start]) => start / BLOCK);

describe('model store: original checkpoints', () => {
  const { store, downloads, bundles } = newStore();
  const progress: PrepareProgress[] = [];

  it('plans the download from HEAD requests and config.json, before downloading', async () => {
    server.reset();
    const plan = await store.plan(source, WEIGHTS);
    const originals = ['config.json', 'tokenizer.json', 'generation_config.json', 'tokenizer_config.json', 'model.safetensors'].map((f) => `tiny-simplear/${f}`);
    const expectedDownload = [...originals, DECODER].reduce((a, f) => a + fileSize(f), 0);
    expect(plan).toMatchObject({ cached: false, downloadBytes: expectedDownload, storedBytes: 0 });
    expect(plan.peakStorageBytes).toBe(expectedDownload + plan.finalStorageBytes);
    // No weight bytes were read.
    expect(server.bytesSent(SAFETENSORS)).toBe(0);
    expect(server.bytesSent(DECODER)).toBe(0);
    // config.json (for the size estimate) is read once and kept for the download.
    expect(server.count('tiny-simplear/config.json', 'GET')).toBe(1);
  });

  it('prepare downloads in blocks, converts into a committed bundle, drops the originals', async () => {
    server.reset();
    const plan = await store.plan(source, WEIGHTS);
    server.reset();
    const stored = await store.prepare(source, { ...WEIGHTS, onProgress: (p) => progress.push(p) });
    expect(stored.fromCache).toBe(false);
    expect(stored.modelId).toBe(plan.modelId);
    // Every block of the weight files was fetched exactly once, by range.
    for (const path of [SAFETENSORS, DECODER]) {
      const blocks = blockGets(path);
      expect(blocks.sort((a, b) => a - b), path).toEqual([...Array(Math.ceil(fileSize(path) / BLOCK)).keys()]);
      expect(server.fullGets(path), path).toBe(0);
    }
    const bundle = await openModelBundle(stored.folder);
    await bundle.reader.verify();
    const model = await bundle.loadModel();
    expect(model.lm.numLayers).toBeGreaterThan(0);
    // The plan's estimate errs on the safe side, and not by much (the decoder's share is
    // estimated from decoder.jit's size, which holds more than the converted weights).
    const actual = stored.record.bundleBytes;
    expect(plan.finalStorageBytes).toBeGreaterThanOrEqual(actual);
    expect(plan.finalStorageBytes).toBeLessThan(actual * 1.25);
    // Downloads are gone once the bundle is committed; only one generation is stored.
    expect(await downloads.keys('')).toEqual([]);
    expect((await bundles.keys('g|')).every((k) => k.includes(stored.record.generation!))).toBe(true);
    // Progress: download (bytes rising to the total), then conversion.
    const dl = progress.filter((p) => p.phase === 'download');
    // (config.json was stored by the first plan: this plan counts it as stored, and no one fetches it again.)
    expect(plan.storedBytes).toBe(fileSize('tiny-simplear/config.json'));
    expect(server.count('tiny-simplear/config.json', 'GET')).toBe(0);
    expect(dl.at(-1)).toMatchObject({ bytes: plan.downloadBytes + plan.storedBytes, totalBytes: plan.downloadBytes + plan.storedBytes, etaMs: 0 });
    expect(dl.every((p, i) => i === 0 || p.bytes >= dl[i - 1]!.bytes)).toBe(true);
    const firstConvert = progress.findIndex((p) => p.phase === 'convert');
    expect(firstConvert).toBeGreaterThan(progress.lastIndexOf(dl.at(-1)!) - 1);
    expect(new Set(progress.filter((p) => p.phase === 'convert').map((p) => (p as { step: string }).step))).toEqual(
      new Set(['open', 'decoder', 'lm', 'finish']),
    );
  });

  it('a second prepare and plan make no request at all', async () => {
    server.reset();
    const again = await store.prepare(source, WEIGHTS);
    const plan = await store.plan(source, WEIGHTS);
    expect(again.fromCache).toBe(true);
    expect(plan).toMatchObject({ cached: true, downloadBytes: 0 });
    expect(server.requests).toEqual([]);
  });

  it('lists the model with its size, and delete frees every entry', async () => {
    const [listed, ...rest] = await store.list();
    expect(rest).toEqual([]);
    const held = (await bundles.keys('g|')).reduce((a, k) => a + (bundles.map.get(k) as Uint8Array).byteLength, 0);
    expect(listed).toMatchObject({ complete: true, weights: 'f32', bytes: held, name: 'tiny-simplear (f32)' });
    await store.delete(listed!.modelId);
    expect(await store.list()).toEqual([]);
    expect([...bundles.map.keys(), ...downloads.map.keys()]).toEqual([]);
    await expect(store.delete(listed!.modelId)).rejects.toMatchObject({ code: 'ModelFileMissing' });
  });
});

describe('model store: interrupted downloads', () => {
  it('a connection dropped mid-file: the next prepare fetches only the missing blocks; a corrupted block is fetched again', async () => {
    const { store, downloads } = newStore({ concurrency: 1 });
    // After two blocks, every GET of the safetensors drops after 1000 bytes.
    server.reset();
    server.setFailures([{ path: SAFETENSORS, dropAfterBytes: 1000, after: 2, method: 'GET' }]);
    const failed = await store.prepare(source, WEIGHTS).catch((e: unknown) => e);
    server.setFailures([]);
    expect(failed).toMatchObject({ code: 'HttpError' });
    const plan = await store.plan(source, WEIGHTS);
    expect(plan.storedBytes).toBeGreaterThan(0);
    expect(plan.downloadBytes).toBeLessThan(plan.downloadBytes + plan.storedBytes);

    const blockKeys = (path: string) => downloads.keys(`b|${new URL(path, server.url).href}|`);
    const storedBefore = new Set((await blockKeys(SAFETENSORS)).map((k) => Number(k.split('|').at(-1))));
    expect(storedBefore.size).toBe(2);
    // Corrupt one stored block in place (its recorded hash no longer matches).
    const victimKey = (await blockKeys(SAFETENSORS))[0]!;
    const victim = downloads.map.get(victimKey) as { sha256: string; bytes: Uint8Array };
    const flipped = victim.bytes.slice();
    flipped[100]! ^= 0xff;
    downloads.map.set(victimKey, { ...victim, bytes: flipped });

    server.reset();
    const stored = await store.prepare(source, WEIGHTS);
    expect(stored.fromCache).toBe(false);
    const total = Math.ceil(fileSize(SAFETENSORS) / BLOCK);
    const missing = [...Array(total).keys()].filter((i) => !storedBefore.has(i));
    const victimIndex = Number(victimKey.split('|').at(-1));
    // Missing blocks once each, plus the corrupted one again; nothing else of the file.
    expect(blockGets(SAFETENSORS).sort((a, b) => a - b)).toEqual([...missing, victimIndex].sort((a, b) => a - b));
    const bundle = await openModelBundle(stored.folder);
    await bundle.reader.verify();
  });

  it('an aborted prepare keeps what it stored and rejects with the abort', async () => {
    const { store } = newStore({ concurrency: 1 });
    const controller = new AbortController();
    const run = store.prepare(source, {
      ...WEIGHTS,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase === 'download' && p.bytes > 2 * BLOCK) controller.abort();
      },
    });
    await expect(run).rejects.toBeDefined();
    const plan = await store.plan(source, WEIGHTS);
    expect(plan.storedBytes).toBeGreaterThanOrEqual(2 * BLOCK);
    expect(plan.cached).toBe(false);
  });
});

describe('model store: files that change or are corrupted on the server', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'store-changing-'));
    await cp(join(FIXTURES, 'tiny-simplear'), join(root, 'tiny-simplear'), { recursive: true });
    await cp(join(FIXTURES, 'tiny-cosmos'), join(root, 'tiny-cosmos'), { recursive: true });
  });
  afterAll(() => rm(root, { recursive: true, force: true }));
  const sourceAt = (s: TestServer): ModelSource => ({
    kind: 'original',
    model: new URL('tiny-simplear/', s.url).href,
    vq: new URL('tiny-cosmos/', s.url).href,
  });

  it('a file changed on the server (new ETag) between visits: its stored blocks are dropped, never mixed in', async () => {
    const local = await startTestServer(root);
    try {
      const { store } = newStore({ concurrency: 1 });
      local.setFailures([{ path: 'tiny-cosmos/decoder.jit', method: 'GET', after: 3, status: 404 }]);
      await expect(store.prepare(sourceAt(local), WEIGHTS)).rejects.toMatchObject({ code: 'HttpError' });
      local.setFailures([]);
      const decoderUrl = new URL('tiny-cosmos/decoder.jit', local.url).href;
      expect((await store.cache.storedBlocks(decoderUrl)).size).toBe(3);
      // The decoder is replaced by another version (same size, new modification time).
      const path = join(root, 'tiny-cosmos/decoder.jit');
      const bytes = readFileSync(path);
      await new Promise((r) => setTimeout(r, 20));
      await writeFile(path, bytes);
      local.reset();
      await store.prepare(sourceAt(local), WEIGHTS);
      const refetched = local.requests.filter((r) => r.path === 'tiny-cosmos/decoder.jit' && r.method === 'GET').length;
      expect(refetched).toBe(Math.ceil(bytes.byteLength / BLOCK));
    } finally {
      await local.close();
    }
  });

  it('SHA-256 ETags (Hugging Face): a complete file is hashed whole; bytes that do not match are discarded with a clear error', async () => {
    const local = await startTestServer(root, { sha256Etags: true });
    try {
      const { store } = newStore();
      const progress: PrepareProgress[] = [];
      const good = await store.prepare(sourceAt(local), { ...WEIGHTS, onProgress: (p) => progress.push(p) });
      expect(good.fromCache).toBe(false);
      // Download, then the whole-file hashes (every byte downloaded), then conversion.
      const phases = progress.map((p) => p.phase).filter((p, i, a) => p !== a[i - 1]);
      expect(phases).toEqual(['download', 'verify', 'convert']);
      const verified = progress.filter((p) => p.phase === 'verify').at(-1) as { done: number; total: number };
      expect(verified.done).toBe(verified.total);
      expect(verified.total).toBe((progress.find((p) => p.phase === 'download') as { totalBytes: number }).totalBytes);
      await store.delete(good.modelId);
      // The server now sends other bytes under the ETag it hashed before (a corrupted mirror).
      const path = join(root, 'tiny-simplear/tokenizer_config.json');
      const original = readFileSync(path);
      await writeFile(path, Buffer.from(original.toString('utf8').replace('{', '{ ')));
      try {
        const err = (await store.prepare(sourceAt(local), WEIGHTS).catch((e: unknown) => e)) as SimpleARError;
        expect(err).toBeInstanceOf(SimpleARError);
        expect(err.code).toBe('ModelFileInvalid');
        expect(err.message).toMatch(/tokenizer_config\.json: downloaded bytes do not match the file's SHA-256/);
        const url = new URL('tiny-simplear/tokenizer_config.json', local.url).href;
        expect(await store.cache.record(url)).toBeUndefined();
        expect((await store.cache.storedBlocks(url)).size).toBe(0);
      } finally {
        await writeFile(path, original);
      }
    } finally {
      await local.close();
    }
  });

  it('a conversion cut off half-way leaves no bundle taken as complete; the next prepare removes its chunks and converts again', async () => {
    const { store, bundles } = newStore();
    const controller = new AbortController();
    const cut = await store
      .prepare(source, { ...WEIGHTS, signal: controller.signal, onProgress: (p) => p.phase === 'convert' && p.step === 'lm' && controller.abort() })
      .catch((e: unknown) => e);
    expect(cut).toMatchObject({ code: 'Aborted' });
    const [partial] = await store.list();
    expect(partial).toMatchObject({ complete: false });
    expect((await store.plan(source, WEIGHTS)).cached).toBe(false);
    const done = await store.prepare(source, WEIGHTS);
    expect(done.fromCache).toBe(false);
    const gens = new Set((await bundles.keys('g|')).map((k) => k.split('|')[2]));
    expect([...gens]).toEqual([done.record.generation]);
    await (await openModelBundle(done.folder)).reader.verify();
  });
});

describe('model store: bundle sources', () => {
  let bundleSource: ModelSource;
  beforeAll(async () => {
    const out = join(bundleDir, 'tiny-bundle');
    await convertModel({
      model: openFolder(join(FIXTURES, 'tiny-simplear')),
      decoder: openFolder(join(FIXTURES, 'tiny-cosmos')),
      sink: await createNodeBundleSink(out),
      weights: 'f32',
      chunkSize: BLOCK,
    });
    bundleServer = await startTestServer(bundleDir);
    bundleSource = { kind: 'bundle', url: new URL('tiny-bundle/', bundleServer.url).href };
  });
  let bundleServer: TestServer;
  afterAll(() => bundleServer?.close());

  it('downloads every chunk checked against the manifest, resumes by chunk, then needs no request', async () => {
    const { store } = newStore({ concurrency: 1 });
    const manifest = JSON.parse(readFileSync(join(bundleDir, 'tiny-bundle/manifest.json'), 'utf8')) as { chunks: { file: string }[]; layout: { totalBytes: number } };
    expect(manifest.chunks.length).toBeGreaterThan(4);
    const third = `tiny-bundle/${manifest.chunks[3]!.file}`;
    bundleServer.setFailures([{ path: third, dropAfterBytes: 500 }]);
    await expect(store.prepare(bundleSource)).rejects.toMatchObject({ code: 'HttpError' });
    bundleServer.setFailures([]);
    const plan = await store.plan(bundleSource);
    expect(plan.storedBytes).toBe(3 * BLOCK);

    bundleServer.reset();
    const stored = await store.prepare(bundleSource);
    const fetched = bundleServer.requests.filter((r) => r.method === 'GET' && r.path.includes('chunk-')).map((r) => r.path);
    expect(fetched.sort()).toEqual(manifest.chunks.slice(3).map((c) => `tiny-bundle/${c.file}`));
    const bundle = await openModelBundle(stored.folder);
    await bundle.reader.verify();
    expect(stored.record.weights).toBe('f32');

    bundleServer.reset();
    expect((await store.prepare(bundleSource)).fromCache).toBe(true);
    expect(bundleServer.requests).toEqual([]);
  });

  it('a stored chunk found corrupt on load is repaired: only that chunk is fetched again', async () => {
    const { store, bundles } = newStore();
    const first = await store.prepare(bundleSource);
    const key = (await bundles.keys('g|')).find((k) => k.endsWith('chunk-00001.bin'))!;
    const bad = (bundles.map.get(key) as Uint8Array).slice();
    bad[7]! ^= 1;
    bundles.map.set(key, bad);
    const error = await (await openModelBundle(first.folder)).reader.verify().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'BundleInvalid' });
    await store.repair(first.modelId, error as never);
    bundleServer.reset();
    const repaired = await store.prepare(bundleSource);
    expect(bundleServer.requests.filter((r) => r.method === 'GET').map((r) => r.path)).toEqual(['tiny-bundle/manifest.json', 'tiny-bundle/chunk-00001.bin']);
    await (await openModelBundle(repaired.folder)).reader.verify();
  });
});

describe('model store: quota', () => {
  it('refuses before downloading when the browser says the space is not there, naming the sizes', async () => {
    const { store } = newStore({ estimate: async () => ({ usage: 1_000_000, quota: 3_000_000 }) });
    server.reset();
    const err = (await store.prepare(source, WEIGHTS).catch((e: unknown) => e)) as SimpleARError;
    expect(err).toBeInstanceOf(SimpleARError);
    expect(err.code).toBe('QuotaExceeded');
    expect(err.details).toMatchObject({ available: 2_000_000, usage: 1_000_000, quota: 3_000_000 });
    expect(err.details.needed as number).toBeGreaterThan(2_000_000);
    expect(err.message).toMatch(/needs [\d.]+ MB more and 1\.9 MB is free/);
    expect(server.bytesSent(SAFETENSORS) + server.bytesSent(DECODER)).toBe(0);
  });

  it("a storage write refused with QuotaExceededError becomes QuotaExceeded with what was needed", async () => {
    const full: KeyValueStore = Object.assign(new MemoryKv(), {
      setMany: async () => {
        throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      },
    });
    const store = new ModelStore({ downloads: full, bundles: new MemoryKv(), retryDelayMs: 5 });
    const err = (await store.prepare(source, WEIGHTS).catch((e: unknown) => e)) as SimpleARError;
    expect(err.code).toBe('QuotaExceeded');
    expect(err.details.needed as number).toBeGreaterThan(fileSize(SAFETENSORS));
    expect(isQuotaError(new DOMException('x', 'QuotaExceededError'))).toBe(true);
    expect(isQuotaError(new Error('network'))).toBe(false);
    expect(quotaExceeded({ needed: 5 * 2 ** 20, available: null }).message).toMatch(/needs 5\.0 MB more and the browser did not say/);
  });
});

describe('incremental SHA-256', () => {
  it('equals the one-shot digest whatever the piece sizes', async () => {
    const data = new Uint8Array(200_003).map((_, i) => (i * 7919) % 251);
    const expected = await sha256Hex(data);
    for (const step of [1, 63, 64, 65, 4096, 200_003]) {
      const h = await Sha256Stream.create();
      for (let i = 0; i < data.length; i += step) h.update(data.subarray(i, i + step));
      expect(h.hex(), `step ${step}`).toBe(expected);
    }
    expect((await Sha256Stream.create()).hex()).toBe(await sha256Hex(new Uint8Array(0)));
    expect(sha256FromEtag(`"${expected}"`)).toBe(expected);
    expect(sha256FromEtag('"1a2b-3c"')).toBeNull();
  });
});
