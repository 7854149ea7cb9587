// Random-access byte sources: a local file (Node) or any URL (HTTP range requests).
// Readers only ever ask for the byte ranges they need, so multi-GB files are never held whole.
import { HttpError, ModelFileError } from '../errors.ts';

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

export function openFolder(base: string, fetchImpl: typeof fetch = globalThis.fetch): FileFolder {
  return isUrl(base) ? new HttpFolder(base, fetchImpl) : new LocalFolder(base);
}

export async function readJson<T>(folder: FileFolder, file: string, signal?: AbortSignal): Promise<T | null> {
  const bytes = await folder.readOptional(file, signal);
  if (!bytes) return null;
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (e) {
    throw new ModelFileError(`${folder.base}/${file}`, `not valid JSON (${(e as Error).message})`);
  }
}

class HttpFolder implements FileFolder {
  readonly base: string;
  constructor(base: string, private readonly fetchImpl: typeof fetch) {
    this.base = base.endsWith('/') ? base : `${base}/`;
  }
  open(file: string): ByteSource {
    return new HttpSource(new URL(file, this.base).href, this.fetchImpl);
  }
  async readOptional(file: string, signal?: AbortSignal): Promise<Uint8Array | null> {
    const url = new URL(file, this.base).href;
    const res = await this.fetchImpl(url, { signal });
    if (res.status === 404) return null;
    if (!res.ok) throw new HttpError(url, res.status);
    return new Uint8Array(await res.arrayBuffer());
  }
}

export class HttpSource implements ByteSource {
  private knownSize: number | undefined;
  constructor(
    readonly name: string,
    private readonly fetchImpl: typeof fetch = globalThis.fetch,
  ) {}

  async size(signal?: AbortSignal): Promise<number> {
    if (this.knownSize !== undefined) return this.knownSize;
    const res = await this.fetchImpl(this.name, { method: 'HEAD', signal });
    if (!res.ok) throw new HttpError(this.name, res.status, 'cannot read the file size');
    const len = Number(res.headers.get('content-length'));
    if (!Number.isFinite(len) || len <= 0) {
      // Some servers omit Content-Length on HEAD: a 1-byte range reply carries the total.
      const r = await this.fetchImpl(this.name, { headers: { Range: 'bytes=0-0' }, signal });
      const total = Number(r.headers.get('content-range')?.split('/')[1]);
      await r.body?.cancel();
      if (!Number.isFinite(total)) throw new HttpError(this.name, r.status, 'no Content-Length or Content-Range');
      this.knownSize = total;
    } else {
      this.knownSize = len;
    }
    return this.knownSize;
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (length === 0) return new Uint8Array(0);
    const res = await this.fetchImpl(this.name, {
      headers: { Range: `bytes=${offset}-${offset + length - 1}` },
      signal,
    });
    if (res.status === 416) throw new ModelFileError(this.name, `truncated: no bytes at offset ${offset}`);
    if (!res.ok) throw new HttpError(this.name, res.status);
    const buf = new Uint8Array(await res.arrayBuffer());
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
