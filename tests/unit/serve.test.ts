// tools/serve.ts: what `npm start` and the browser tests serve the app with.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DEFAULT_PORT, parseRange, startServer, type RunningServer } from '../../tools/serve.ts';

let root: string;
let server: RunningServer;
const BLOB = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'serve-test-'));
  mkdirSync(join(root, 'assets'));
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>t</title>');
  writeFileSync(join(root, 'assets', 'ort.wasm'), BLOB);
  writeFileSync(join(root, 'assets', 'glue.mjs'), 'export {}');
  writeFileSync(join(root, 'assets', 'app.js'), 'console.log(1)');
  writeFileSync(join(root, 'empty.bin'), '');
  writeFileSync(join(root, 'embed.html'), '<!doctype html><title>widget</title>');
  writeFileSync(join(root, 'embed.js'), 'export const mount = () => {};');
  server = await startServer({ root, port: 0 });
});

afterAll(async () => {
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

/** A raw request (fetch would normalise `..` away). */
function raw(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('startServer', () => {
  test('serves index.html at / with cross-origin isolation headers, and prints a localhost URL', async () => {
    expect(server.url).toBe(`http://localhost:${server.port}/`);
    const res = await fetch(`http://127.0.0.1:${server.port}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    expect(res.headers.get('cross-origin-resource-policy')).toBe('same-origin');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(await res.text()).toContain('<title>t</title>');
  });

  test('gives .wasm and .mjs the MIME types browsers insist on; hashed assets are immutable', async () => {
    const wasm = await fetch(`http://127.0.0.1:${server.port}/assets/ort.wasm`);
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    expect(wasm.headers.get('cache-control')).toContain('immutable');
    expect(new Uint8Array(await wasm.arrayBuffer())).toEqual(BLOB);
    const mjs = await fetch(`http://127.0.0.1:${server.port}/assets/glue.mjs`);
    expect(mjs.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const js = await fetch(`http://127.0.0.1:${server.port}/assets/app.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
  });

  test('other sites may frame embed.html and import embed.js; nothing else is shared or unframeable', async () => {
    const base = `http://127.0.0.1:${server.port}`;
    const widget = await fetch(`${base}/embed.html?origins=http://127.0.0.2:9`);
    expect(widget.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
    expect(widget.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    expect(widget.headers.get('access-control-allow-origin')).toBeNull();
    const library = await fetch(`${base}/embed.js`, { headers: { Origin: 'http://127.0.0.2:9' } });
    expect(library.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(library.headers.get('access-control-allow-origin')).toBe('*');
    expect(library.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
    for (const path of ['/', '/index.html', '/assets/app.js']) {
      const res = await fetch(`${base}${path}`);
      expect(res.headers.get('cross-origin-resource-policy'), path).toBe('same-origin');
      expect(res.headers.get('access-control-allow-origin'), path).toBeNull();
      expect(res.headers.get('x-frame-options'), path).toBeNull();
    }
  });

  test('answers byte ranges with 206 and the exact bytes', async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/assets/ort.wasm`, { headers: { Range: 'bytes=10-19' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe('bytes 10-19/1000');
    expect(res.headers.get('content-length')).toBe('10');
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(BLOB.slice(10, 20));

    const tail = await fetch(`http://127.0.0.1:${server.port}/assets/ort.wasm`, { headers: { Range: 'bytes=-5' } });
    expect(tail.headers.get('content-range')).toBe('bytes 995-999/1000');
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(BLOB.slice(995));

    const open = await fetch(`http://127.0.0.1:${server.port}/assets/ort.wasm`, { headers: { Range: 'bytes=990-' } });
    expect(new Uint8Array(await open.arrayBuffer())).toEqual(BLOB.slice(990));
  });

  test('refuses unsatisfiable ranges with 416', async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/assets/ort.wasm`, { headers: { Range: 'bytes=1000-' } });
    expect(res.status).toBe(416);
    expect(res.headers.get('content-range')).toBe('bytes */1000');
  });

  test('HEAD gives the length without a body; empty files work', async () => {
    const head = await fetch(`http://127.0.0.1:${server.port}/assets/ort.wasm`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('1000');
    expect(head.headers.get('accept-ranges')).toBe('bytes');
    const empty = await fetch(`http://127.0.0.1:${server.port}/empty.bin`);
    expect(empty.status).toBe(200);
    expect((await empty.arrayBuffer()).byteLength).toBe(0);
  });

  test('revalidation with the ETag gives 304', async () => {
    const first = await fetch(`http://127.0.0.1:${server.port}/index.html`);
    const etag = first.headers.get('etag')!;
    const again = await fetch(`http://127.0.0.1:${server.port}/index.html`, { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
  });

  test('404 for missing files, 403 for paths that escape the root, 405 for writes', async () => {
    expect(await raw('/nope.js')).toBe(404);
    // Dot segments are resolved by URL parsing (they stay inside the root) ...
    expect(await raw('/../../etc/passwd')).toBe(404);
    // ... but encoded slashes only become a path after decoding: refused.
    expect(await raw('/..%2f..%2f..%2fetc%2fpasswd')).toBe(403);
    expect(await raw('/assets/..%2f..%2findex.html')).toBe(403);
    expect((await fetch(`http://127.0.0.1:${server.port}/`, { method: 'POST' })).status).toBe(405);
  });

  test('the default port moves to a free one when taken; an explicit port does not', async () => {
    const blocker = createServer();
    await new Promise<void>((ok) => blocker.listen(0, '127.0.0.1', ok));
    const busy = (blocker.address() as { port: number }).port;
    try {
      await expect(startServer({ root, port: busy })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await new Promise((ok) => blocker.close(ok));
    }
    // Hold the default port (unless something else already does) and ask for the default.
    const holder = createServer();
    const held = await new Promise<boolean>((ok) => {
      holder.once('error', () => ok(false));
      holder.listen(DEFAULT_PORT, '127.0.0.1', () => ok(true));
    });
    try {
      const fallback = await startServer({ root });
      expect(fallback.port).not.toBe(DEFAULT_PORT);
      await fallback.close();
    } finally {
      if (held) await new Promise((ok) => holder.close(ok));
    }
  });

  test('close() ends keep-alive connections at once', async () => {
    const other = await startServer({ root, port: 0 });
    const res = await fetch(other.url, { headers: { Connection: 'keep-alive' } });
    await res.text();
    const t0 = performance.now();
    await other.close();
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test('a missing root is a clear error', async () => {
    await expect(startServer({ root: join(root, 'missing') })).rejects.toThrow(/npm run build/);
  });
});

describe('parseRange', () => {
  test('single ranges, suffixes and open ends', () => {
    expect(parseRange(undefined, 100)).toEqual({ kind: 'none' });
    expect(parseRange('bytes=0-0', 100)).toEqual({ kind: 'range', start: 0, end: 0 });
    expect(parseRange('bytes=50-500', 100)).toEqual({ kind: 'range', start: 50, end: 99 });
    expect(parseRange('bytes=-200', 100)).toEqual({ kind: 'range', start: 0, end: 99 });
    expect(parseRange('bytes=100-', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=5-4', 100)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=-0', 100)).toEqual({ kind: 'unsatisfiable' });
    // Multi-range and junk: served whole, as RFC 9110 allows.
    expect(parseRange('bytes=0-1,5-6', 100)).toEqual({ kind: 'none' });
    expect(parseRange('items=0-1', 100)).toEqual({ kind: 'none' });
  });
});
