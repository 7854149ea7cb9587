import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpSource, openFolder, readJson } from '../../src/core/formats/byte-source.ts';
import { HttpError, ModelFileError, SimpleARError } from '../../src/core/base/errors.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';

const SIZE = 100_000;
const data = new Uint8Array(SIZE).map((_, i) => (i * 7 + (i >> 8)) & 0xff);

let dir: string;
let server: TestServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'byte-source-'));
  await writeFile(join(dir, 'blob.bin'), data);
  await writeFile(join(dir, 'config.json'), '{"a": 1}');
  await writeFile(join(dir, 'broken.json'), '{"a": ');
  await writeFile(join(dir, 'empty.bin'), new Uint8Array(0));
  server = await startTestServer(dir);
});

afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** Same behaviour for a local directory and a base URL. */
describe.each([
  ['local directory', () => dir],
  ['HTTP base URL', () => server.url],
])('FileFolder over a %s', (_kind, base) => {
  it('reports the file size', async () => {
    expect(await openFolder(base()).open('blob.bin').size()).toBe(SIZE);
  });

  it('reads exact byte ranges anywhere in the file', async () => {
    const src = openFolder(base()).open('blob.bin');
    for (const [off, len] of [
      [0, 1],
      [0, 8],
      [12345, 1000],
      [SIZE - 10, 10],
      [SIZE - 1, 1],
    ] as const) {
      expect(await src.read(off, len)).toEqual(data.subarray(off, off + len));
    }
    expect((await src.read(5, 0)).byteLength).toBe(0);
  });

  it('reading past the end is a ModelFileError naming the file', async () => {
    const src = openFolder(base()).open('blob.bin');
    await expect(src.read(SIZE - 5, 10)).rejects.toThrow(ModelFileError);
    await expect(src.read(SIZE - 5, 10)).rejects.toThrow(/blob\.bin.*truncated/);
    await expect(src.read(SIZE + 10, 4)).rejects.toThrow(ModelFileError);
  });

  it('readOptional returns the whole file, or null when it does not exist', async () => {
    const f = openFolder(base());
    expect(await f.readOptional('blob.bin')).toEqual(data);
    expect(await f.readOptional('nope.json')).toBeNull();
  });

  it('readJson parses JSON, returns null for a missing file, and names a broken file', async () => {
    const f = openFolder(base());
    expect(await readJson(f, 'config.json')).toEqual({ a: 1 });
    expect(await readJson(f, 'missing.json')).toBeNull();
    const err: any = await readJson(f, 'broken.json').catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.message).toMatch(/broken\.json: not valid JSON/);
    expect(err.message).not.toMatch(/\/\/broken/); // no doubled slash in the name
  });

  it('a missing file fails with a typed error naming it', async () => {
    const src = openFolder(base()).open('missing.bin');
    const err = await src.size().catch((e) => e);
    expect(err).toBeInstanceOf(SimpleARError);
    expect(err.message).toContain('missing.bin');
    expect(['ModelFileMissing', 'HttpError']).toContain(err.code);
  });
});

describe('HTTP byte source', () => {
  it('uses Range requests (206) and never downloads the whole file for a slice', async () => {
    server.reset();
    const src = openFolder(server.url).open('blob.bin');
    await src.read(50_000, 100);
    expect(server.count('blob.bin', 'GET')).toBe(1);
    expect(server.requests[0]).toMatchObject({ range: 'bytes=50000-50099', status: 206, bytesSent: 100 });
    expect(server.fullGets('blob.bin')).toBe(0);
  });

  it('reads the size with one HEAD and caches it', async () => {
    server.reset();
    const src = openFolder(server.url).open('blob.bin');
    expect(await src.size()).toBe(SIZE);
    expect(await src.size()).toBe(SIZE);
    expect(server.count('blob.bin', 'HEAD')).toBe(1);
  });

  it('a 404 is an HttpError with the URL and status', async () => {
    const src = openFolder(server.url).open('missing.bin');
    const e1 = await src.size().catch((e) => e);
    expect(e1).toBeInstanceOf(HttpError);
    expect(e1).toMatchObject({ status: 404, url: `${server.url}missing.bin` });
    const e2 = await src.read(0, 4).catch((e) => e);
    expect(e2).toBeInstanceOf(HttpError);
    expect(e2.status).toBe(404);
  });

  it('readOptional surfaces server errors other than 404 as HttpError', async () => {
    const s = await startTestServer(dir, { failures: [{ path: 'config.json', status: 403 }] });
    try {
      await expect(openFolder(s.url).readOptional('config.json')).rejects.toMatchObject({ code: 'HttpError', status: 403 });
    } finally {
      await s.close();
    }
  });

  it('falls back to a 1-byte range when HEAD has no Content-Length', async () => {
    const s = await startTestServer(dir, { noContentLengthOnHead: true });
    try {
      expect(await openFolder(s.url).open('blob.bin').size()).toBe(SIZE);
      expect(s.requests.some((r) => r.method === 'GET' && r.range === 'bytes=0-0')).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('still returns the right bytes from a server that ignores Range', async () => {
    const s = await startTestServer(dir, { ignoreRange: true });
    try {
      const src = openFolder(s.url).open('blob.bin');
      expect(await src.read(777, 333)).toEqual(data.subarray(777, 1110));
      await expect(src.read(SIZE - 2, 10)).rejects.toThrow(ModelFileError);
    } finally {
      await s.close();
    }
  });

  it('calls fetch without a `this` (window.fetch throws "Illegal invocation" otherwise)', async () => {
    const strictFetch = function (this: unknown, input: RequestInfo | URL, init?: RequestInit) {
      if (this !== undefined && this !== globalThis) throw new TypeError('Illegal invocation');
      return fetch(input, init);
    } as typeof fetch;
    const folder = openFolder(server.url, strictFetch);
    expect(await folder.readOptional('config.json')).not.toBeNull();
    const src = folder.open('blob.bin');
    expect(await src.size()).toBe(SIZE);
    expect(await src.read(10, 10)).toEqual(data.subarray(10, 20));
    const direct = new HttpSource(`${server.url}blob.bin`, strictFetch);
    expect(await direct.read(0, 3)).toEqual(data.subarray(0, 3));
  });

  it('retries transient server errors (503) and succeeds', async () => {
    const s = await startTestServer(dir, { failures: [{ path: 'blob.bin', status: 503, times: 2 }] });
    try {
      const src = openFolder(s.url, undefined, { retryDelayMs: 1 }).open('blob.bin');
      expect(await src.read(100, 50)).toEqual(data.subarray(100, 150));
      expect(s.count('blob.bin')).toBe(3);
    } finally {
      await s.close();
    }
  });

  it('retries a connection dropped mid-body and returns complete bytes', async () => {
    const s = await startTestServer(dir, { failures: [{ path: 'blob.bin', dropAfterBytes: 1000, times: 1 }] });
    try {
      const src = openFolder(s.url, undefined, { retryDelayMs: 1 }).open('blob.bin');
      expect(await src.read(0, 50_000)).toEqual(data.subarray(0, 50_000));
      expect(s.count('blob.bin', 'GET')).toBe(2);
    } finally {
      await s.close();
    }
  });

  it('gives up after the retries with a typed HttpError naming the URL', async () => {
    const s = await startTestServer(dir, { failures: [{ path: 'blob.bin', dropAfterBytes: 10 }] });
    try {
      const src = openFolder(s.url, undefined, { retries: 2, retryDelayMs: 1 }).open('blob.bin');
      const err = await src.read(0, 50_000).catch((e) => e);
      expect(err).toBeInstanceOf(HttpError);
      expect(err.message).toContain(`${s.url}blob.bin`);
      expect(s.count('blob.bin', 'GET')).toBe(3);
    } finally {
      await s.close();
    }
  });

  it('does not retry a 404', async () => {
    server.reset();
    const src = openFolder(server.url, undefined, { retryDelayMs: 1 }).open('missing.bin');
    await expect(src.read(0, 4)).rejects.toMatchObject({ status: 404 });
    expect(server.count('missing.bin')).toBe(1);
  });

  it('an aborted signal stops the request with an AbortError, without retrying', async () => {
    server.reset();
    const ac = new AbortController();
    ac.abort();
    const src = openFolder(server.url).open('blob.bin');
    const err = await src.read(0, 10, ac.signal).catch((e) => e);
    expect(err.name).toBe('AbortError');
    expect(server.count('blob.bin')).toBe(0);
  });

  it('size of an empty file is 0', async () => {
    expect(await openFolder(server.url).open('empty.bin').size()).toBe(0);
  });
});
