// A real node:http static server for tests: serves a directory with HEAD, Range (206/416),
// Content-Length and ETag (and Content-Digest on request); counts requests per path; injects
// failures on demand.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import type { AddressInfo } from 'node:net';

export interface RequestRecord {
  method: string;
  /** URL path without the leading slash, decoded (e.g. "model.safetensors"). */
  path: string;
  /** The Range header, if any. */
  range?: string;
  status: number;
  /** Body bytes actually sent (0 for HEAD and dropped connections before the body). */
  bytesSent: number;
  /** The failure injected into this reply, if any. */
  injected?: 'status' | 'delay' | 'drop' | 'corrupt';
}

/** A failure to inject for requests whose path equals `path` (or every path for '*'). */
export interface FailureRule {
  path: string;
  /** Answer the first `times` matching requests with this status (e.g. 503) and no body. */
  status?: number;
  /** Or: send headers and this many body bytes, then destroy the socket. */
  dropAfterBytes?: number;
  /** How many matching requests fail (default: all). */
  times?: number;
  /** Let this many matching requests through before failing (default 0). */
  after?: number;
  /** Or: hold the response this long before answering normally (a stalled connection). */
  delayMs?: number;
  /**
   * Or: flip this byte of the body (an offset into the reply) after its headers were made, so
   * Content-Length and any Content-Digest describe the true bytes (corruption in transit).
   */
  corruptByte?: number;
  /** Only GET, only HEAD… (default: any method). */
  method?: string;
}

export interface TestServerOptions {
  /** Pretend Range is unsupported: always answer 200 with the whole file. */
  ignoreRange?: boolean;
  /** Omit Content-Length on HEAD (some CDNs do). */
  noContentLengthOnHead?: boolean;
  failures?: FailureRule[];
  /**
   * ETag = the file's SHA-256 (as Hugging Face serves LFS files), hashed at the first request
   * for a path and then kept, as a CDN keeps it: a file changed later is served with a stale ETag.
   */
  sha256Etags?: boolean;
  /** Content-Digest (RFC 9530, sha-256) of each reply's body, as servers that support it send it. */
  contentDigest?: boolean;
}

export interface TestServer {
  /** Base URL ending in '/'. */
  readonly url: string;
  readonly requests: RequestRecord[];
  /** Requests for `path` (optionally of one method). */
  count(path: string, method?: string): number;
  /** Requests for `path` that had no Range header and got a body (full downloads). */
  fullGets(path: string): number;
  /** Total body bytes sent for `path`. */
  bytesSent(path: string): number;
  /** Replaces the failure rules (counters restart). */
  setFailures(rules: FailureRule[]): void;
  reset(): void;
  close(): Promise<void>;
}

interface LiveRule extends FailureRule {
  used: number;
  seen: number;
}

const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
  'Access-Control-Allow-Headers': 'Range, If-None-Match',
  'Access-Control-Expose-Headers': 'Content-Range, Content-Length, Accept-Ranges, ETag, Content-Digest',
  'Cross-Origin-Resource-Policy': 'cross-origin',
};

export async function startTestServer(root: string, options: TestServerOptions = {}): Promise<TestServer> {
  const requests: RequestRecord[] = [];
  const shaEtags = new Map<string, string>();
  let rules: LiveRule[] = (options.failures ?? []).map((r) => ({ ...r, used: 0, seen: 0 }));

  const takeRule = (path: string, method: string): LiveRule | undefined => {
    const r = rules.find((x) => {
      if ((x.path !== path && x.path !== '*') || (x.method && x.method !== method)) return false;
      if (x.after !== undefined && x.seen++ < x.after) return false;
      return x.times === undefined || x.used < x.times;
    });
    if (r) r.used++;
    return r;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    const range = req.headers.range;
    const rec: RequestRecord = { method, path, ...(range ? { range } : {}), status: 0, bytesSent: 0 };
    requests.push(rec);
    // CORS as Hugging Face serves it, so pages on another origin (COEP require-corp) can read ranges.
    for (const [k, v] of Object.entries(CORS_HEADERS)) res.setHeader(k, v);
    const finish = (status: number, headers: Record<string, string | number> = {}, body?: Uint8Array) => {
      rec.status = status;
      res.writeHead(status, headers);
      if (body && method !== 'HEAD') {
        rec.bytesSent = body.byteLength;
        res.end(body);
      } else {
        res.end();
      }
    };

    if (method === 'OPTIONS') return finish(204, { 'Access-Control-Max-Age': 600 });
    if (method !== 'GET' && method !== 'HEAD') return finish(405, { Allow: 'GET, HEAD' });
    const file = normalize(join(root, path));
    if (!file.startsWith(normalize(root)) || path.includes('\0')) return finish(403);
    let size: number;
    let mtime: number;
    try {
      const st = await stat(file);
      if (!st.isFile()) return finish(404);
      size = st.size;
      mtime = st.mtimeMs;
    } catch {
      return finish(404);
    }
    /** Bytes [start, end] of the file (read per request: files may change between requests). */
    const slice = async (start: number, end: number): Promise<Uint8Array> => {
      const out = new Uint8Array(Math.max(0, end - start + 1));
      if (method === 'HEAD' || out.byteLength === 0) return out;
      const fh = await open(file, 'r');
      try {
        let done = 0;
        while (done < out.byteLength) {
          const { bytesRead } = await fh.read(out, done, out.byteLength - done, start + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return out.subarray(0, done);
      } finally {
        await fh.close();
      }
    };

    const rule = takeRule(path, method);
    if (rule?.status !== undefined) {
      rec.injected = 'status';
      return finish(rule.status, { 'Content-Length': 0 });
    }
    if (rule?.delayMs !== undefined) {
      rec.injected = 'delay';
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, rule.delayMs);
        res.once('close', () => (clearTimeout(t), resolve()));
      });
      if (res.destroyed) return;
    }

    let etag = `"${size.toString(16)}-${Math.floor(mtime).toString(16)}"`;
    if (options.sha256Etags) {
      if (!shaEtags.has(path)) shaEtags.set(path, `"${createHash('sha256').update(await readFile(file)).digest('hex')}"`);
      etag = shaEtags.get(path)!;
    }
    const common = { 'Accept-Ranges': options.ignoreRange ? 'none' : 'bytes', ETag: etag, 'Content-Type': 'application/octet-stream' };
    let status = 200;
    let start = 0;
    let end = size - 1;
    let headers: Record<string, string | number> = { ...common };
    if (range && !options.ignoreRange) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) return finish(416, { 'Content-Range': `bytes */${size}` });
      if (m[1] === '') {
        // suffix range: last N bytes
        start = Math.max(0, size - Number(m[2]));
        end = size - 1;
      } else {
        start = Number(m[1]);
        end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
      }
      if (start >= size || start > end) return finish(416, { 'Content-Range': `bytes */${size}` });
      status = 206;
      headers = { ...common, 'Content-Range': `bytes ${start}-${end}/${size}` };
    }
    const length = Math.max(0, end - start + 1);
    if (!(method === 'HEAD' && options.noContentLengthOnHead)) headers['Content-Length'] = length;
    let body = await slice(start, end);
    if (options.contentDigest && method === 'GET') headers['Content-Digest'] = `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
    if (rule?.corruptByte !== undefined && method === 'GET' && rule.corruptByte < body.byteLength) {
      body = body.slice();
      body[rule.corruptByte] = body[rule.corruptByte]! ^ 0xff;
      rec.injected = 'corrupt';
    }

    if (rule?.dropAfterBytes !== undefined && method === 'GET') {
      rec.injected = 'drop';
      rec.status = status;
      res.writeHead(status, headers);
      const n = Math.min(rule.dropAfterBytes, body.byteLength);
      rec.bytesSent = n;
      res.write(body.subarray(0, n), () => res.destroy());
      return;
    }
    finish(status, headers, body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      res.destroy(e as Error);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    count: (path, method) => requests.filter((r) => r.path === path && (!method || r.method === method)).length,
    fullGets: (path) => requests.filter((r) => r.path === path && r.method === 'GET' && !r.range && r.bytesSent > 0).length,
    bytesSent: (path) => requests.filter((r) => r.path === path).reduce((a, r) => a + r.bytesSent, 0),
    setFailures(next) {
      rules = next.map((r) => ({ ...r, used: 0, seen: 0 }));
    },
    reset() {
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
