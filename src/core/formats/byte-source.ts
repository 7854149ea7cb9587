// Random-access byte sources: a local file (Node) or any URL (HTTP range requests).
// Readers only ever ask for the byte ranges they need, so multi-GB files are never held whole.
import { HttpError, ModelFileError } from '../base/errors.ts';

export interface ByteSource {
  /** File name or URL, for error messages. */
  readonly name: string;
  size(signal?: AbortSignal): Promise<number>;
  /** Exactly `length` bytes from `offset`; throws ModelFileError if the file is shorter. */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
}

/** A folder of files: a base URL or a local directory. */
export interface FileFolder {
  readonly base: string;
  open(file: string): ByteSource;
  /** Whole small file (JSON configs, tokenizer); null if it does not exist. */
  readOptional(file: string, signal?: AbortSignal): Promise<Uint8Array | null>;
}

const isUrl = (s: string) => /^(https?|blob|data):/i.test(s);

/** Retries of transient HTTP failures (network errors, dropped connections, 408/429/5xx). */
export interface HttpOptions {
  /** Extra attempts after the first (default 3). */
  retries?: number;
  /** First back-off delay; doubles on each retry (default 500 ms). */
  retryDelayMs?: number;
}

export function openFolder(base: string, fetchImpl: typeof fetch = globalThis.fetch, options: HttpOptions = {}): FileFolder {
  return isUrl(base) ? new HttpFolder(base, fetchImpl, options) : new LocalFolder(base);
}

/** HTTP statuses worth retrying (transient): the byte sources and the model store's downloads. */
export const RETRY_STATUS: ReadonlySet<number> = new Set([408, 425, 429, 500, 502, 503, 504]);

/**
 * A fetch whose body is read to the end, retried on transient failures. Network errors
 * (fetch rejecting, or the connection dropping mid-body) become HttpError with status 0.
 * `fetchImpl` is always called as a plain function: window.fetch throws "Illegal invocation"
 * when called as a method of another object.
 */
async function fetchBytes(
  fetchImpl: typeof fetch,
  url: string,
  init: RequestInit,
  options: HttpOptions,
  accept: (res: Response) => boolean = (res) => res.ok,
): Promise<{ res: Response; body: Uint8Array | null }> {
  const retries = options.retries ?? 3;
  let delay = options.retryDelayMs ?? 500;
  for (let attempt = 0; ; attempt++) {
    init.signal?.throwIfAborted();
    let failure: HttpError;
    try {
      const res = await fetchImpl(url, init);
      if (accept(res)) {
        // Read to the end even for HEAD (an empty body): browsers report a response left
        // unread as an aborted request (net::ERR_ABORTED in devtools and test watchers).
        const bytes = new Uint8Array(await res.arrayBuffer());
        return { res, body: init.method === 'HEAD' ? null : bytes };
      }
      // Drain error bodies too (they are small): a cancelled body shows up as an aborted request.
      await res.arrayBuffer().catch(() => {});
      failure = new HttpError(url, res.status);
      if (!RETRY_STATUS.has(res.status)) throw failure;
    } catch (e) {
      if (e instanceof HttpError) throw e;
      if ((e as Error)?.name === 'AbortError' || init.signal?.aborted) throw e;
      failure = new HttpError(url, 0, `network error (${(e as Error)?.message ?? e})`);
    }
    if (attempt >= retries) throw failure;
    await sleep(delay, init.signal);
    delay *= 2;
  }
}

/** Waits `ms` (retry back-off); rejects with the signal's reason if it aborts first. */
export function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `base/file` for messages (no doubled slash when the base ends in '/'). */
export const folderFile = (folder: FileFolder, file: string): string => `${folder.base.replace(/\/+$/, '')}/${file}`;

export async function readJson<T>(folder: FileFolder, file: string, signal?: AbortSignal): Promise<T | null> {
  const bytes = await folder.readOptional(file, signal);
  if (!bytes) return null;
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (e) {
    throw new ModelFileError(folderFile(folder, file), `not valid JSON (${(e as Error).message})`);
  }
}

class HttpFolder implements FileFolder {
  readonly base: string;
  private readonly fetchImpl: typeof fetch;
  constructor(
    base: string,
    fetchImpl: typeof fetch,
    private readonly options: HttpOptions = {},
  ) {
    this.base = base.endsWith('/') ? base : `${base}/`;
    this.fetchImpl = (input, init) => fetchImpl(input, init);
  }
  open(file: string): ByteSource {
    return new HttpSource(new URL(file, this.base).href, this.fetchImpl, this.options);
  }
  async readOptional(file: string, signal?: AbortSignal): Promise<Uint8Array | null> {
    const url = new URL(file, this.base).href;
    const { res, body } = await fetchBytes(this.fetchImpl, url, { signal }, this.options, (r) => r.ok || r.status === 404);
    return res.status === 404 ? null : body;
  }
}

export class HttpSource implements ByteSource {
  private knownSize: number | undefined;
  private readonly fetchImpl: typeof fetch;
  constructor(
    readonly name: string,
    fetchImpl: typeof fetch = globalThis.fetch,
    private readonly options: HttpOptions = {},
  ) {
    this.fetchImpl = (input, init) => fetchImpl(input, init);
  }

  async size(signal?: AbortSignal): Promise<number> {
    if (this.knownSize !== undefined) return this.knownSize;
    let res: Response;
    try {
      ({ res } = await fetchBytes(this.fetchImpl, this.name, { method: 'HEAD', signal }, this.options));
    } catch (e) {
      if (e instanceof HttpError) throw new HttpError(this.name, e.status, 'cannot read the file size');
      throw e;
    }
    const len = Number(res.headers.get('content-length') ?? NaN);
    if (!Number.isFinite(len) || len <= 0) {
      // Some servers omit Content-Length on HEAD: a 1-byte range reply carries the total.
      const { res: r } = await fetchBytes(
        this.fetchImpl,
        this.name,
        { headers: { Range: 'bytes=0-0' }, signal },
        this.options,
        (x) => x.ok || x.status === 416,
      );
      const total = Number(r.headers.get('content-range')?.split('/')[1] ?? NaN);
      if (!Number.isFinite(total)) throw new HttpError(this.name, r.status, 'no Content-Length or Content-Range');
      this.knownSize = total;
    } else {
      this.knownSize = len;
    }
    return this.knownSize;
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (length === 0) return new Uint8Array(0);
    const { res, body } = await fetchBytes(
      this.fetchImpl,
      this.name,
      // Past the browser's HTTP cache: through Chromium's, ranges past ~50 MiB into a file were
      // sent twice; the readers never ask for the same bytes again anyway.
      { headers: { Range: `bytes=${offset}-${offset + length - 1}` }, cache: 'no-store', signal },
      this.options,
      (r) => r.ok || r.status === 416,
    );
    if (res.status === 416) throw new ModelFileError(this.name, `truncated: no bytes at offset ${offset}`);
    const buf = body!;
    // A server that ignores Range answers 200 with the whole file: slice what we asked for.
    const bytes = res.status === 206 ? buf : buf.subarray(offset, offset + length);
    if (bytes.byteLength !== length) {
      throw new ModelFileError(this.name, `truncated: wanted ${length} bytes at ${offset}, got ${bytes.byteLength}`);
    }
    return bytes;
  }
}

class LocalFolder implements FileFolder {
  constructor(readonly base: string) {}
  open(file: string): ByteSource {
    return new LocalFileSource(joinPath(this.base, file));
  }
  async readOptional(file: string): Promise<Uint8Array | null> {
    const fs = await import('node:fs/promises');
    try {
      return new Uint8Array(await fs.readFile(joinPath(this.base, file)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }
}

const joinPath = (a: string, b: string) => `${a.replace(/\/+$/, '')}/${b}`;

export class LocalFileSource implements ByteSource {
  constructor(readonly name: string) {}
  async size(): Promise<number> {
    const fs = await import('node:fs/promises');
    try {
      return (await fs.stat(this.name)).size;
    } catch (e) {
      throw new ModelFileError(this.name, (e as Error).message, undefined, 'ModelFileMissing');
    }
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    const fs = await import('node:fs/promises');
    let fh;
    try {
      fh = await fs.open(this.name, 'r');
    } catch (e) {
      throw new ModelFileError(this.name, (e as Error).message, undefined, 'ModelFileMissing');
    }
    try {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      if (done !== length) {
        throw new ModelFileError(this.name, `truncated: wanted ${length} bytes at ${offset}, got ${done}`);
      }
      return out;
    } finally {
      await fh.close();
    }
  }
}
