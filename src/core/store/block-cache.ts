// The download side of the model store: original files fetched with HTTP range requests in
// aligned blocks, each block stored with its SHA-256 as soon as it arrives. An interrupted
// download resumes from the stored blocks; a stored block whose bytes no longer match its hash
// is fetched again when read; a file whose ETag is its SHA-256 (Hugging Face LFS) is hashed
// whole once complete; a range reply that carries a Content-Digest (RFC 9530) is checked as it
// arrives, so a corrupted reply costs one more request for that range only. `folder()` reads
// the files through the cache, so the converter sees an ordinary FileFolder and fetches
// nothing that is stored.
// Every request bypasses the browser's HTTP cache (`cache: 'no-store'`): the bytes go to
// IndexedDB anyway, and with Chromium's cache in the way, range requests into a file from about
// 50 MiB on were sent a second time at once (1.17-1.21× the bytes of 0.6-1.4 GB checkpoints
// over 8 MiB blocks), besides the cache keeping yet another copy of the model on disk.
import { HttpError, ModelFileError } from '../base/errors.ts';
import { Sha256Stream, sha256Hex } from '../base/sha256.ts';
import { RETRY_STATUS, sleep, type ByteSource, type FileFolder } from '../formats/byte-source.ts';
import { isQuotaError, type KeyValueStore } from './kv.ts';
import { sha256FromEtag } from './etag.ts';

export const DEFAULT_BLOCK_BYTES = 8 * 1024 * 1024;

/** What a HEAD request says about a file. */
export interface RemoteFile {
  url: string;
  size: number;
  etag: string | null;
}

/** The stored record of one file: its identity when its first block was fetched. */
export interface FileRecord extends RemoteFile {
  blockBytes: number;
  /** The whole file was hashed and matched its SHA-256 ETag. */
  verified?: boolean;
}

interface StoredBlock {
  sha256: string;
  bytes: Uint8Array;
}

export interface HttpRetryOptions {
  /** Extra attempts per request after the first (default 3). */
  retries?: number;
  /** First back-off delay, doubled on each retry (default 500 ms). */
  retryDelayMs?: number;
}

export interface BlockCacheOptions extends HttpRetryOptions {
  /** Blocks fetched at once (default 3). */
  concurrency?: number;
  /** Called when a write fails for lack of space; gives the error to throw. */
  onQuotaError?: (e: unknown) => Promise<Error>;
}

export interface BlockProgress {
  /** Body bytes received in this call (partial blocks included). */
  fetchedBytes: number;
  file: string;
}

const fileKey = (url: string) => `f|${url}`;
const blockPrefix = (url: string) => `b|${url}|`;
const blockKey = (url: string, index: number) => `${blockPrefix(url)}${String(index).padStart(6, '0')}`;

export const blockCount = (size: number, blockBytes: number): number => Math.ceil(size / blockBytes);
const blockLength = (r: FileRecord, i: number) => Math.min(r.blockBytes, r.size - i * r.blockBytes);

export class BlockCache {
  private readonly fetchImpl: typeof fetch;
  /** Verified blocks kept in memory for the reads that follow (tensors are read piecewise). */
  private readonly hot = new Map<string, Promise<Uint8Array>>();
  private static readonly HOT_BLOCKS = 4;

  constructor(
    private readonly kv: KeyValueStore,
    fetchImpl: typeof fetch = globalThis.fetch,
    private readonly options: BlockCacheOptions = {},
  ) {
    // Always called as a plain function: window.fetch throws "Illegal invocation" as a method.
    this.fetchImpl = (input, init) => fetchImpl(input, init);
  }

  /** Size and ETag of a remote file (HEAD, retried on transient failures); null if it does not exist. */
  async head(url: string, signal?: AbortSignal): Promise<RemoteFile | null> {
    const res = await this.request(url, { method: 'HEAD', cache: 'no-store', ...(signal ? { signal } : {}) }, (r) => r.ok || r.status === 404);
    if (res.status === 404) return null;
    const etag = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
    let size = Number(res.headers.get('content-length') ?? NaN);
    if (!Number.isFinite(size) || size <= 0) {
      // Some servers omit Content-Length on HEAD: a 1-byte range reply carries the total.
      const r = await this.request(url, { headers: { Range: 'bytes=0-0' }, cache: 'no-store', ...(signal ? { signal } : {}) }, (x) => x.ok || x.status === 416);
      size = Number(r.headers.get('content-range')?.split('/')[1] ?? NaN);
      if (!Number.isFinite(size)) throw new HttpError(url, r.status, 'no Content-Length or Content-Range');
    }
    return { url, size, etag };
  }

  async record(url: string): Promise<FileRecord | undefined> {
    return this.kv.get<FileRecord>(fileKey(url));
  }

  /** Indices of the blocks stored for `url`. */
  async storedBlocks(url: string): Promise<Set<number>> {
    const prefix = blockPrefix(url);
    return new Set((await this.kv.keys(prefix)).map((k) => Number(k.slice(prefix.length))));
  }

  /**
   * The record for `remote`, created if new. A stored record of another version of the file
   * (size or ETag changed) is dropped with its blocks: stale bytes must never be mixed in.
   */
  async track(remote: RemoteFile, blockBytes: number): Promise<{ record: FileRecord; stored: Set<number> }> {
    const old = await this.record(remote.url);
    if (old && old.size === remote.size && (old.etag ?? null) === (remote.etag ?? null)) {
      return { record: old, stored: await this.storedBlocks(remote.url) };
    }
    if (old) await this.forget([remote.url]);
    const record: FileRecord = { ...remote, blockBytes };
    await this.write([[fileKey(remote.url), record]]);
    return { record, stored: new Set() };
  }

  /** Bytes held by the stored blocks of `record`. */
  static storedBytes(record: FileRecord, stored: Set<number>): number {
    let n = 0;
    for (const i of stored) if (i * record.blockBytes < record.size) n += blockLength(record, i);
    return n;
  }

  /**
   * Fetches every block of `records` not yet stored (several at once), then checks each file
   * whose ETag is a SHA-256. On failure the blocks already stored stay stored.
   */
  async download(
    records: FileRecord[],
    options: { signal?: AbortSignal; onProgress?: (p: BlockProgress) => void; onVerify?: (done: number, total: number) => void } = {},
  ): Promise<void> {
    const queue: { record: FileRecord; index: number }[] = [];
    for (const record of records) {
      const stored = await this.storedBlocks(record.url);
      for (let i = 0; i < blockCount(record.size, record.blockBytes); i++) if (!stored.has(i)) queue.push({ record, index: i });
    }
    // One failure stops the other fetches at once instead of letting them run on.
    const inner = new AbortController();
    const onAbort = () => inner.abort(options.signal!.reason);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    let fetched = 0;
    const work = async () => {
      for (let job = queue.shift(); job; job = queue.shift()) {
        await this.fetchBlock(job.record, job.index, inner.signal, (n) => {
          fetched += n;
          options.onProgress?.({ fetchedBytes: fetched, file: job!.record.url });
        });
      }
    };
    try {
      const workers = Array.from({ length: Math.min(this.options.concurrency ?? 3, Math.max(1, queue.length)) }, work);
      await Promise.all(workers.map((w) => w.catch((e) => (inner.abort(e), Promise.reject(e)))));
    } catch (e) {
      inner.abort(e);
      throw options.signal?.aborted ? options.signal.reason : e;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    const toHash = records.filter((r) => sha256FromEtag(r.etag) && !r.verified);
    const total = toHash.reduce((a, r) => a + r.size, 0);
    let done = 0;
    for (const record of toHash) {
      await this.verifyWhole(record, options.signal, (n) => options.onVerify?.((done += n), total));
    }
  }

  /** Hashes a complete file whose ETag is its SHA-256; a mismatch drops the file's blocks. */
  async verifyWhole(record: FileRecord, signal?: AbortSignal, onBytes?: (n: number) => void): Promise<void> {
    const expected = sha256FromEtag(record.etag);
    if (!expected || record.verified) return;
    const hash = await Sha256Stream.create();
    for (let i = 0; i < blockCount(record.size, record.blockBytes); i++) {
      const bytes = await this.block(record, i, signal);
      hash.update(bytes);
      onBytes?.(bytes.byteLength);
    }
    const actual = hash.hex();
    if (actual !== expected) {
      await this.forget([record.url]);
      throw new ModelFileError(record.url, `downloaded bytes do not match the file's SHA-256 (expected ${expected}, got ${actual}); the download was discarded, try again`);
    }
    await this.write([[fileKey(record.url), { ...record, verified: true }]]);
  }

  /**
   * A block's bytes: from memory, else from storage (its SHA-256 checked), else fetched and
   * stored. A stored block whose hash is wrong is fetched again.
   */
  block(record: FileRecord, index: number, signal?: AbortSignal): Promise<Uint8Array> {
    const key = blockKey(record.url, index);
    const hit = this.hot.get(key);
    if (hit) {
      this.hot.delete(key);
      this.hot.set(key, hit);
      return hit;
    }
    const p = (async () => {
      const stored = await this.kv.get<StoredBlock>(key);
      if (stored && stored.bytes.byteLength === blockLength(record, index) && (await sha256Hex(stored.bytes)) === stored.sha256) {
        return stored.bytes;
      }
      return this.fetchBlock(record, index, signal);
    })();
    this.hot.set(key, p);
    p.catch(() => this.hot.delete(key));
    while (this.hot.size > BlockCache.HOT_BLOCKS) this.hot.delete(this.hot.keys().next().value!);
    return p;
  }

  /** A FileFolder over `base` that reads through the cache (what the converter reads). */
  folder(base: string): FileFolder {
    const root = base.endsWith('/') ? base : `${base}/`;
    const cache = this;
    const recordFor = async (url: string, signal?: AbortSignal): Promise<FileRecord | null> => {
      const known = await cache.record(url);
      if (known) return known;
      const remote = await cache.head(url, signal);
      return remote ? (await cache.track(remote, DEFAULT_BLOCK_BYTES)).record : null;
    };
    const read = async (record: FileRecord, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> => {
      if (offset < 0 || offset + length > record.size) {
        throw new ModelFileError(record.url, `truncated: wanted ${length} bytes at ${offset}, file is ${record.size}`);
      }
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const at = offset + done;
        const index = Math.floor(at / record.blockBytes);
        const bytes = await cache.block(record, index, signal);
        const from = at - index * record.blockBytes;
        const n = Math.min(bytes.byteLength - from, length - done);
        out.set(bytes.subarray(from, from + n), done);
        done += n;
      }
      return out;
    };
    return {
      base: root,
      open(file: string): ByteSource {
        const url = new URL(file, root).href;
        return {
          name: url,
          async size(signal) {
            const r = await recordFor(url, signal);
            if (!r) throw new ModelFileError(url, 'file not found (HTTP 404)', undefined, 'ModelFileMissing');
            return r.size;
          },
          async read(offset, length, signal) {
            const r = await recordFor(url, signal);
            if (!r) throw new ModelFileError(url, 'file not found (HTTP 404)', undefined, 'ModelFileMissing');
            return read(r, offset, length, signal);
          },
        };
      },
      async readOptional(file, signal) {
        const url = new URL(file, root).href;
        const r = await recordFor(url, signal);
        return r ? read(r, 0, r.size, signal) : null;
      },
    };
  }

  /** Deletes the records and blocks of these files. */
  async forget(urls: string[]): Promise<void> {
    for (const url of urls) {
      const keys = await this.kv.keys(blockPrefix(url));
      for (const k of keys) this.hot.delete(k);
      await this.kv.delMany([...keys, fileKey(url)]);
    }
  }

  /** Bytes stored for these files. */
  async bytesHeld(urls: string[]): Promise<number> {
    let n = 0;
    for (const url of urls) {
      const r = await this.record(url);
      if (r) n += BlockCache.storedBytes(r, await this.storedBlocks(url));
    }
    return n;
  }

  /** Fetches one block with a range request, stores it with its hash, returns its bytes. */
  private async fetchBlock(record: FileRecord, index: number, signal: AbortSignal | undefined, onBytes?: (n: number) => void): Promise<Uint8Array> {
    const start = index * record.blockBytes;
    const bytes = await this.fetchRange(record.url, start, start + blockLength(record, index), signal, onBytes);
    await this.write([[blockKey(record.url, index), { sha256: await sha256Hex(bytes), bytes } satisfies StoredBlock]]);
    return bytes;
  }

  private async write(entries: [string, unknown][]): Promise<void> {
    try {
      await this.kv.setMany(entries);
    } catch (e) {
      if (isQuotaError(e) && this.options.onQuotaError) throw await this.options.onQuotaError(e);
      throw e;
    }
  }

  /**
   * Bytes [start, end) of `url` (not stored). The body is read as it streams (progress per network chunk);
   * a connection that drops mid-body is retried from the first byte not yet received.
   */
  async fetchRange(url: string, start: number, end: number, signal?: AbortSignal, onBytes?: (n: number) => void): Promise<Uint8Array> {
    const out = new Uint8Array(end - start);
    let got = 0;
    await this.withRetries(url, signal, async () => {
      const from = start + got;
      const res = await this.fetchImpl(url, { headers: { Range: `bytes=${from}-${end - 1}` }, cache: 'no-store', ...(signal ? { signal } : {}) });
      if (res.status !== 206 && res.status !== 200) {
        await res.arrayBuffer().catch(() => {});
        throw new HttpError(url, res.status);
      }
      // A server that ignores Range answers 200 with the whole file: skip to what we asked for.
      let skip = res.status === 200 ? from : 0;
      if (res.status === 206) {
        const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
        if (!m || Number(m[1]) !== from) {
          await res.arrayBuffer().catch(() => {});
          throw new HttpError(url, res.status, `the server answered another range (${res.headers.get('content-range')})`);
        }
      }
      const reader = res.body!.getReader();
      while (got < out.byteLength) {
        const { done, value } = await reader.read();
        if (done) break;
        let chunk = value;
        if (skip > 0) {
          const s = Math.min(skip, chunk.byteLength);
          chunk = chunk.subarray(s);
          skip -= s;
        }
        const n = Math.min(chunk.byteLength, out.byteLength - got);
        out.set(chunk.subarray(0, n), got);
        got += n;
        if (n > 0) onBytes?.(n);
      }
      if (got < out.byteLength) throw new TypeError(`connection closed after ${got} of ${out.byteLength} bytes`);
      // Read to the end: a cancelled body shows up as a failed request in devtools.
      for (let r = await reader.read(); !r.done; r = await reader.read());
      const expected = res.status === 206 ? contentDigestSha256(res.headers.get('content-digest')) : null;
      if (expected) {
        const received = out.subarray(from - start);
        const actual = await sha256Hex(received);
        if (actual !== expected) {
          // Only this reply's bytes are dropped: the retry asks for them again.
          got = from - start;
          throw new HttpError(url, 0, `bytes ${from}-${end - 1} do not match the reply's Content-Digest (expected sha-256 ${expected}, got ${actual})`);
        }
      }
    });
    return out;
  }

  private async request(url: string, init: RequestInit, accept: (r: Response) => boolean): Promise<Response> {
    return this.withRetries(url, init.signal ?? undefined, async () => {
      const res = await this.fetchImpl(url, init);
      await res.arrayBuffer().catch(() => {}); // drain (HEAD bodies are empty; error bodies small)
      if (!accept(res)) throw new HttpError(url, res.status);
      return res;
    });
  }

  /** Runs `attempt` with retries on network errors and transient statuses, with back-off. */
  private async withRetries<T>(url: string, signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
    const retries = this.options.retries ?? 3;
    let delay = this.options.retryDelayMs ?? 500;
    for (let n = 0; ; n++) {
      signal?.throwIfAborted();
      let failure: HttpError;
      try {
        return await attempt();
      } catch (e) {
        if (signal?.aborted || (e as Error)?.name === 'AbortError') throw signal?.reason ?? e;
        if (e instanceof HttpError) {
          // Status 0: the reply's bytes were wrong or cut short, worth asking again.
          if (e.status !== 0 && !RETRY_STATUS.has(e.status)) throw e;
          failure = e;
        } else if (e instanceof TypeError) {
          failure = new HttpError(url, 0, `network error (${e.message})`);
        } else {
          throw e;
        }
      }
      if (n >= retries) throw failure;
      await sleep(delay, signal);
      delay *= 2;
    }
  }
}

/**
 * The SHA-256 (hex) in a Content-Digest header (RFC 9530: `sha-256=:<base64>:`, maybe beside
 * other algorithms), or null when there is none or it is malformed.
 */
export function contentDigestSha256(header: string | null): string | null {
  const m = /(?:^|,)\s*sha-256=:([A-Za-z0-9+/]+={0,2}):/i.exec(header ?? '');
  if (!m) return null;
  let raw: string;
  try {
    raw = atob(m[1]!);
  } catch {
    return null;
  }
  if (raw.length !== 32) return null;
  let hex = '';
  for (let i = 0; i < raw.length; i++) hex += raw.charCodeAt(i).toString(16).padStart(2, '0');
  return hex;
}
