// Each byte of a checkpoint crosses the network once: the model store's plan and prepare in
// Node over the real test HTTP server, its request log checked. Small blocks (64 KiB) give the
// tiny fixtures a few hundred range requests. With a connection dropped mid-block and a reply
// corrupted in transit (caught by its Content-Digest), the preparation still succeeds and only
// the lost bytes and the corrupt reply are fetched again.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readJson } from '../../src/core/formats/byte-source.ts';
import { MemoryKv } from '../../src/core/store/kv.ts';
import { ModelStore } from '../../src/core/store/model-store.ts';
import { contentDigestSha256 } from '../../src/core/store/block-cache.ts';
import { sha256Hex } from '../../src/core/base/sha256.ts';
import type { ModelSource } from '../../src/client/protocol.ts';
import { startTestServer, type RequestRecord, type TestServer, type TestServerOptions } from '../helpers/http-server.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const BLOCK = 64 * 1024;
const OPTIONS = { weights: 'f32', decoderDtype: 'f32', downloadBlockBytes: BLOCK } as const;
const SMALL = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'].map((f) => `tiny-simplear/${f}`);
const LARGE = ['tiny-simplear/model.safetensors', 'tiny-cosmos/decoder.jit'];
const fileSize = (path: string) => statSync(join(FIXTURES, path)).size;
const FILES_BYTES = [...SMALL, ...LARGE].reduce((a, f) => a + fileSize(f), 0);

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** The converted bundle's chunks (file, SHA-256) of the last preparation. */
let chunks: unknown;

async function prepareFrom(options: TestServerOptions): Promise<TestServer> {
  server = await startTestServer(FIXTURES, options);
  const source: ModelSource = { kind: 'original', model: new URL('tiny-simplear/', server.url).href, vq: new URL('tiny-cosmos/', server.url).href };
  const store = new ModelStore({ downloads: new MemoryKv(), bundles: new MemoryKv(), retryDelayMs: 5 });
  // As the page does it: the plan first, then the download.
  const plan = await store.plan(source, OPTIONS);
  expect(plan.downloadBytes).toBe(FILES_BYTES);
  const stored = await store.prepare(source, OPTIONS);
  expect(stored.fromCache).toBe(false);
  chunks = (await readJson<{ chunks: unknown }>(stored.folder, 'manifest.json'))!.chunks;
  return server;
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

describe('each byte downloaded once', () => {
  let cleanChunks: unknown;

  it('plan + prepare: no range asked twice, each small file fetched once, exactly the files’ bytes', async () => {
    const s = await prepareFrom({});
    cleanChunks = chunks;
    expect(repeated(s)).toEqual([]);
    for (const f of SMALL) expect(s.count(f, 'GET'), f).toBe(1);
    expect(bytesSent(s)).toBe(FILES_BYTES);
    // Many blocks: the point of the small block size.
    expect(gets(s).length).toBeGreaterThan(200);
  });

  it('a dropped connection and a corrupted reply: both recovered, only the lost bytes and the corrupt reply fetched again', async () => {
    const dropAfter = 10_000;
    const s = await prepareFrom({
      contentDigest: true,
      failures: [
        { path: LARGE[0]!, method: 'GET', after: 5, times: 1, dropAfterBytes: dropAfter },
        { path: LARGE[1]!, method: 'GET', after: 7, times: 1, corruptByte: 4321 },
      ],
    });
    const dropped = gets(s).find((r) => r.injected === 'drop')!;
    const corrupt = gets(s).find((r) => r.injected === 'corrupt')!;
    expect(dropped).toBeDefined();
    expect(corrupt).toBeDefined();
    // The dropped block is resumed from the first byte not received, to the block's end.
    const [dropStart, dropEnd] = rangeOf(dropped);
    const resumed = gets(s).filter((r) => r.path === dropped.path && r !== dropped && rangeOf(r)[1] === dropEnd);
    expect(resumed).toHaveLength(1);
    expect(rangeOf(resumed[0]!)[0]).toBeGreaterThan(dropStart);
    expect(rangeOf(resumed[0]!)[0]).toBeLessThanOrEqual(dropStart + dropAfter);
    // The corrupt reply is the only range asked twice.
    expect(repeated(s)).toEqual([`${corrupt.path} ${corrupt.range}`]);
    for (const f of SMALL) expect(s.count(f, 'GET'), f).toBe(1);
    // Extra bytes: the corrupt reply, and at most the part of the dropped one that was lost in flight.
    const extra = bytesSent(s) - FILES_BYTES;
    expect(extra).toBeGreaterThanOrEqual(corrupt.bytesSent);
    expect(extra).toBeLessThanOrEqual(corrupt.bytesSent + dropAfter);
    expect(bytesSent(s)).toBeLessThanOrEqual(FILES_BYTES * 1.01);
    // What was stored is the checkpoint itself: the same bundle as the clean run's, chunk for chunk.
    expect(cleanChunks).toBeDefined();
    expect(chunks).toEqual(cleanChunks);
  });

  it('reads the SHA-256 of a Content-Digest header', async () => {
    const bytes = new TextEncoder().encode('hello');
    const hex = await sha256Hex(bytes);
    const b64 = Buffer.from(hex, 'hex').toString('base64');
    expect(contentDigestSha256(`sha-256=:${b64}:`)).toBe(hex);
    expect(contentDigestSha256(`sha-512=:${Buffer.alloc(64).toString('base64')}:, sha-256=:${b64}:`)).toBe(hex);
    expect(contentDigestSha256(null)).toBeNull();
    expect(contentDigestSha256('sha-256=:AAAA:')).toBeNull();
    expect(contentDigestSha256('md5=:AAAAAAAAAAAAAAAAAAAAAA==:')).toBeNull();
  });
});
