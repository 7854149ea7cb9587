// A static file server for the built app (dist/): cross-origin isolation headers (COOP/COEP,
// so wasm threads work), correct MIME types for .wasm/.mjs, HTTP Range requests (206) for
// large model files, the headers that let other sites embed the widget (embed.html, embed.js),
// and nothing else. Used by `npm start` and by the browser tests.
//
//   tsx tools/serve.ts [dir=dist] [--port N] [--host H]      (PORT env also works)
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_PORT = 4173;

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.onnx': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.jit': 'application/octet-stream',
};

/** Sent with every response: makes pages cross-origin isolated (SharedArrayBuffer). */
export const ISOLATION_HEADERS: Record<string, string> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
};

/**
 * Files other sites use: the widget page, which they frame (CORP cross-origin so even a
 * cross-origin-isolated host may frame it; no X-Frame-Options anywhere), and the host library,
 * which they import as a module script (a CORS request). Everything else stays same-origin.
 */
const SHARED_ACROSS_ORIGINS: Record<string, Record<string, string>> = {
  '/embed.html': { 'Cross-Origin-Resource-Policy': 'cross-origin' },
  '/embed.js': { 'Cross-Origin-Resource-Policy': 'cross-origin', 'Access-Control-Allow-Origin': '*' },
};

/** The headers every response for `pathname` carries. */
export function baseHeadersFor(pathname: string): Record<string, string> {
  return { ...ISOLATION_HEADERS, ...SHARED_ACROSS_ORIGINS[pathname] };
}

export function contentTypeOf(path: string): string {
  return MIME[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

/** A parsed `Range: bytes=...` header: one satisfiable range, or why not. */
export type RangeResult = { kind: 'none' } | { kind: 'range'; start: number; end: number } | { kind: 'unsatisfiable' };

/** Parses a single-range `bytes=` header against a file size (multi-range is served whole). */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: 'none' };
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'none' };
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return { kind: 'unsatisfiable' };
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return { kind: 'unsatisfiable' };
  return { kind: 'range', start, end };
}

function send(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { ...ISOLATION_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(text);
}

/** Maps a URL path to a file under root, or null if it would escape root. */
function fileFor(root: string, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  const path = normalize(join(root, decoded));
  return path === root || path.startsWith(root + sep) ? path : null;
}

async function handle(root: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return send(res, 405, 'Method not allowed');
  }
  const url = new URL(req.url ?? '/', 'http://localhost');
  let path = fileFor(root, url.pathname);
  if (!path) return send(res, 403, 'Forbidden');
  let info = await stat(path).catch(() => null);
  if (info?.isDirectory()) {
    path = join(path, 'index.html');
    info = await stat(path).catch(() => null);
  }
  if (!info?.isFile()) return send(res, 404, 'Not found');

  const etag = `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
  const headers: Record<string, string | number> = {
    ...baseHeadersFor(url.pathname),
    'Content-Type': contentTypeOf(path),
    'Accept-Ranges': 'bytes',
    'Last-Modified': info.mtime.toUTCString(),
    ETag: etag,
    // Vite puts content hashes in the names under assets/: those never change.
    'Cache-Control': url.pathname.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    return void res.end();
  }

  const ifRange = req.headers['if-range'];
  const range = ifRange && ifRange !== etag ? ({ kind: 'none' } as const) : parseRange(req.headers.range, info.size);
  if (range.kind === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'Content-Range': `bytes */${info.size}`, 'Content-Length': 0 });
    return void res.end();
  }
  const [status, start, end] = range.kind === 'range' ? [206, range.start, range.end] : [200, 0, info.size - 1];
  if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${info.size}`;
  headers['Content-Length'] = info.size === 0 ? 0 : end - start + 1;
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || info.size === 0) return void res.end();
  const stream = createReadStream(path, { start, end });
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

export interface ServeOptions {
  /** Directory to serve (e.g. dist). */
  root: string;
  /** 0 for any free port. Default: DEFAULT_PORT, or a free port when that one is busy. */
  port?: number;
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
}

export interface RunningServer {
  /** e.g. http://localhost:4173/ */
  url: string;
  port: number;
  /** Stops listening and drops open connections (keep-alive ones too). */
  close(): Promise<void>;
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const root = resolve(options.root);
  const rootInfo = await stat(root).catch(() => null);
  if (!rootInfo?.isDirectory()) throw new Error(`Nothing to serve: ${root} is not a directory (run \`npm run build\`?)`);
  const host = options.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    handle(root, req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, `Server error: ${e instanceof Error ? e.message : String(e)}`);
      else res.destroy();
    });
  });
  const listen = (port: number) =>
    new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(port, host, () => {
        server.off('error', fail);
        ok();
      });
    });
  const wanted = options.port ?? DEFAULT_PORT;
  try {
    await listen(wanted);
  } catch (e) {
    // The default port is only a preference; an explicit one is a demand.
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || options.port !== undefined) throw e;
    await listen(0);
  }
  const { port } = server.address() as AddressInfo;
  const shownHost = host === '127.0.0.1' || host === '::1' || host === '0.0.0.0' ? 'localhost' : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}

function parseArgs(argv: string[]): ServeOptions {
  const options: ServeOptions = { root: 'dist' };
  const envPort = process.env.PORT;
  if (envPort) options.port = Number(envPort);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.split('=', 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '--port' || flag === '-p') options.port = Number(value());
    else if (flag === '--host') options.host = value()!;
    else if (!arg.startsWith('-')) options.root = arg;
    else throw new Error(`Unknown option ${arg}. Usage: serve [dir] [--port N] [--host H]`);
  }
  if (options.port !== undefined && !(Number.isInteger(options.port) && options.port >= 0 && options.port < 65536)) {
    throw new Error(`Invalid port: ${options.port}`);
  }
  return options;
}

async function main(): Promise<void> {
  const server = await startServer(parseArgs(process.argv.slice(2)));
  console.log(`SimpleAR is being served at ${server.url}  (Ctrl+C to stop)`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
