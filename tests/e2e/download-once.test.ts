// Each byte crosses the network once, in a real Chromium: the built app's worker plans and
// prepares a checkpoint served from another origin by the test HTTP server, whose request log
// is checked: no (path, range) asked twice, each small file fetched once, the bytes sent equal
// to the files' (≤ 1.01× with failures). Small blocks give the tiny fixtures hundreds of range
// requests. An 80 MiB file is where the browser itself used to send ranges twice (from about
// 50 MiB in, through its HTTP cache, which is bypassed now). A connection dropped mid-block and a
// reply corrupted in transit (caught by its Content-Digest) are recovered within the same
// preparation, fetching again only the lost bytes and the corrupt reply.
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EngineClient, LoadModelOptions, ModelSource, PrepareProgress } from '../../src/client/engine-client.ts';
import type { RunningServer } from '../../tools/serve.ts';
import { startTestServer, type RequestRecord, type TestServer } from '../helpers/http-server.ts';
import { FIXTURES } from '../helpers/fixture-model.ts';
import { ConsoleWatch, launchChromium, serveDist, waitForReady } from './browser.ts';

declare const simplear: { client: EngineClient };

const SMALL = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'];
const OPTIONS: LoadModelOptions = { weights: 'f32', decoderDtype: 'f32', maxLatentSide: 8, backend: 'wasm', downloadBlockBytes: 64 * 1024 };
/** Past the ~50 MiB into a file from which Chromium, through its HTTP cache, sent ranges twice. */
const BIG_BYTES = 80 * 1024 * 1024;

let browser: Browser;
let app: RunningServer;
let bigRoot: string;
let context: BrowserContext | undefined;
let watch: ConsoleWatch;
const servers: TestServer[] = [];

/** The files of a checkpoint as the store downloads them (path → size). */
function checkpointFiles(root: string, lm: string, vq: string): Map<string, number> {
  const paths = [...SMALL.map((f) => `${lm}/${f}`), `${lm}/model.safetensors`, `${vq}/decoder.jit`];
  return new Map(paths.map((p) => [p, statSync(join(root, p)).size]));
}

async function serve(root: string, options: Parameters<typeof startTestServer>[1] = {}): Promise<TestServer> {
  const s = await startTestServer(root, options);
  servers.push(s);
  return s;
}

/** A fresh browser context (empty IndexedDB) with the app open. */
async function freshPage(): Promise<Page> {
  await context?.close();
  context = await browser.newContext();
  watch = new ConsoleWatch(context);
  const page = await context.newPage();
  await page.goto(app.url);
  await waitForReady(page);
  return page;
}

/** As the page does it: planModel, then prepareModel. */
async function planAndPrepare(page: Page, source: ModelSource, options: LoadModelOptions = OPTIONS) {
  return page.evaluate(
    async ([s, o]) => {
      const plan = await simplear.client.planModel(s, o);
      const progress: PrepareProgress[] = [];
      try {
        const info = await simplear.client.prepareModel(s, { ...o, onProgress: (p) => progress.push(p) });
        return { plan, info, progress, error: null };
      } catch (e) {
        const err = e as Error & { code?: string };
        return { plan, info: null, progress, error: { code: err.code, message: err.message } };
      }
    },
    [source, options] as const,
  );
}

const gets = (s: TestServer): RequestRecord[] => s.requests.filter((r) => r.method === 'GET');
/** `path range` of every GET asked for more than once. */
function repeated(s: TestServer): string[] {
  const seen = new Map<string, number>();
  for (const r of gets(s)) seen.set(`${r.path} ${r.range ?? ''}`, (seen.get(`${r.path} ${r.range ?? ''}`) ?? 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([k]) => k);
}
const bytesSent = (s: TestServer) => gets(s).reduce((a, r) => a + r.bytesSent, 0);
const rangeOf = (r: RequestRecord) => /^bytes=(\d+)-(\d+)$/.exec(r.range ?? '')!.slice(1).map(Number) as [number, number];
const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

beforeAll(async () => {
  // A checkpoint with an 80 MiB weights file of random bytes: it downloads like any other, and
  // the converter then rejects it (the download is what is under test).
  bigRoot = await mkdtemp(join(tmpdir(), 'e2e-download-once-'));
  await mkdir(join(bigRoot, 'lm'));
  for (const f of SMALL) await cp(join(FIXTURES, 'tiny-simplear', f), join(bigRoot, 'lm', f));
  await writeFile(join(bigRoot, 'lm/model.safetensors'), randomBytes(BIG_BYTES));
  await cp(join(FIXTURES, 'tiny-cosmos'), join(bigRoot, 'vq'), { recursive: true });
  [browser, app] = await Promise.all([launchChromium({ webgpu: false }), serveDist()]);
});

afterEach(() => {
  for (const s of servers) s.reset();
});

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await Promise.all([app?.close(), ...servers.map((s) => s.close())]);
  if (bigRoot) await rm(bigRoot, { recursive: true, force: true });
});

describe('each byte downloaded once (Chromium, IndexedDB)', () => {
  it('the tiny checkpoint in 64 KiB blocks: no range asked twice, small files once, exactly the files’ bytes', async () => {
    const files = await serve(FIXTURES);
    const page = await freshPage();
    const source: ModelSource = { kind: 'original', model: `${files.url}tiny-simplear/`, vq: `${files.url}tiny-cosmos/` };
    const expected = checkpointFiles(FIXTURES, 'tiny-simplear', 'tiny-cosmos');
    const { plan, info, error } = await planAndPrepare(page, source);
    expect(error).toBeNull();
    expect(info).toMatchObject({ fromCache: false, backend: 'wasm' });
    expect(plan.downloadBytes).toBe(sum(expected));
    console.log(`tiny: ${gets(files).length} GETs, ${bytesSent(files)} bytes for ${sum(expected)} bytes of files`);
    expect(gets(files).length).toBeGreaterThan(200);
    expect(repeated(files)).toEqual([]);
    for (const f of SMALL) expect(files.count(`tiny-simplear/${f}`, 'GET'), f).toBe(1);
    // Nothing but the checkpoint's files was fetched, each whole.
    for (const [path, size] of expected) expect(files.bytesSent(path), path).toBe(size);
    expect(bytesSent(files)).toBe(sum(expected));
    watch.assertClean();
  });

  it(`a ${BIG_BYTES / 2 ** 20} MiB weights file in 1 MiB blocks: no range asked twice, exactly the files’ bytes`, async () => {
    const files = await serve(bigRoot);
    const page = await freshPage();
    const source: ModelSource = { kind: 'original', model: `${files.url}lm/`, vq: `${files.url}vq/` };
    const expected = checkpointFiles(bigRoot, 'lm', 'vq');
    const { progress, error } = await planAndPrepare(page, source, { ...OPTIONS, downloadBlockBytes: 2 ** 20 });
    // The download completed; the random bytes are then refused by the converter.
    const last = progress.filter((p) => p.phase === 'download').at(-1);
    expect(last).toMatchObject({ bytes: sum(expected), totalBytes: sum(expected) });
    expect(error).toMatchObject({ code: 'ModelFileInvalid' });
    console.log(`big: ${gets(files).length} GETs, ${bytesSent(files)} bytes for ${sum(expected)} bytes of files`);
    expect(repeated(files)).toEqual([]);
    for (const [path, size] of expected) expect(files.bytesSent(path), path).toBe(size);
    expect(bytesSent(files)).toBe(sum(expected));
    watch.assertClean();
    const [partial] = await page.evaluate(() => simplear.client.listCachedModels());
    await page.evaluate((id) => simplear.client.deleteCachedModel(id), partial!.modelId);
  });

  it('a connection dropped mid-block and a corrupted reply: both recovered in one preparation, only the lost bytes and the corrupt reply fetched again', async () => {
    const dropAfter = 10_000;
    const files = await serve(FIXTURES, {
      contentDigest: true,
      failures: [
        { path: 'tiny-simplear/model.safetensors', method: 'GET', after: 20, times: 1, dropAfterBytes: dropAfter },
        { path: 'tiny-cosmos/decoder.jit', method: 'GET', after: 30, times: 1, corruptByte: 12_345 },
      ],
    });
    const page = await freshPage();
    const source: ModelSource = { kind: 'original', model: `${files.url}tiny-simplear/`, vq: `${files.url}tiny-cosmos/` };
    const expected = checkpointFiles(FIXTURES, 'tiny-simplear', 'tiny-cosmos');
    const { info, error } = await planAndPrepare(page, source);
    expect(error).toBeNull();
    expect(info).toMatchObject({ fromCache: false, backend: 'wasm' });
    const dropped = gets(files).find((r) => r.injected === 'drop')!;
    const corrupt = gets(files).find((r) => r.injected === 'corrupt')!;
    expect(dropped).toBeDefined();
    expect(corrupt).toBeDefined();
    // The dropped block was resumed from the first byte the browser had handed over (Chromium
    // may hold back the last bytes before a broken connection), to the block's end, once.
    const [dropStart, dropEnd] = rangeOf(dropped);
    const resumed = gets(files).filter((r) => r.path === dropped.path && r !== dropped && rangeOf(r)[1] === dropEnd);
    expect(resumed).toHaveLength(1);
    expect(rangeOf(resumed[0]!)[0]).toBeGreaterThanOrEqual(dropStart);
    expect(rangeOf(resumed[0]!)[0]).toBeLessThanOrEqual(dropStart + dropAfter);
    // The corrupt reply is asked again; no other range is but the dropped one's, if it resumed from its start.
    const key = (r: RequestRecord) => `${r.path} ${r.range}`;
    expect(repeated(files)).toContain(key(corrupt));
    expect(repeated(files).filter((k) => k !== key(corrupt) && k !== key(dropped))).toEqual([]);
    expect(gets(files).filter((r) => key(r) === key(corrupt) || key(r) === key(dropped)).length).toBeLessThanOrEqual(4);
    for (const f of SMALL) expect(files.count(`tiny-simplear/${f}`, 'GET'), f).toBe(1);
    const extra = bytesSent(files) - sum(expected);
    console.log(`failures: ${gets(files).length} GETs, ${extra} bytes more than the files' ${sum(expected)} (corrupt reply ${corrupt.bytesSent})`);
    expect(extra).toBeGreaterThanOrEqual(corrupt.bytesSent);
    expect(extra).toBeLessThanOrEqual(corrupt.bytesSent + dropAfter);
    expect(bytesSent(files)).toBeLessThanOrEqual(sum(expected) * 1.01);
    // The dropped connection is the only failed request.
    watch.assertClean([new RegExp(`request failed\\] ${files.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}tiny-simplear/model\\.safetensors`)]);
  });
});
