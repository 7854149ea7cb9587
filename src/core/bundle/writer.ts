// Streams named tensors (and small files) into fixed-size chunks with a SHA-256 each, through a
// BundleSink (Node directory, IndexedDB, memory). Memory use: one chunk buffer at a time.
import { SimpleARError } from '../base/errors.ts';
import type { NamedTensor } from '../base/model-spec.ts';
import {
  BUNDLE_FORMAT,
  BUNDLE_VERSION,
  BundleError,
  DEFAULT_ALIGNMENT,
  DEFAULT_CHUNK_SIZE,
  ELEM_BYTES,
  chunkFileName,
  numelOf,
  parseManifest,
  sha256Hex,
  type BundleChunk,
  type BundleFileEntry,
  type BundleLocation,
  type BundleManifest,
  type BundleModel,
  type BundleSource,
  type BundleTensorEntry,
  type BundleWeights,
} from './manifest.ts';
import type { SpecialIds } from '../formats/tokenizer.ts';

/**
 * Where a bundle is written. The writer calls putChunk for chunks 0, 1, 2, … in order (each
 * awaited before the next), then putManifest once, then commit; or abort at any point after a
 * failure. Nothing may become visible as a complete bundle before commit() resolves, and
 * abort() must remove everything written so far. `bytes` is a fresh buffer the sink may keep.
 */
export interface BundleSink {
  putChunk(index: number, bytes: Uint8Array): Promise<void>;
  putManifest(json: string): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface BundleWriterOptions {
  /** Bytes per chunk file (default 32 MiB); a multiple of `alignment`. */
  chunkSize?: number;
  /** Every item starts at a multiple of this (default 64). */
  alignment?: number;
  signal?: AbortSignal;
  onProgress?: (p: BundleWriteProgress) => void;
}

export interface BundleWriteProgress {
  /** Bytes placed in the stream so far (padding included). */
  bytes: number;
  tensors: number;
  chunksWritten: number;
}

/** What finish() needs besides the data: everything in the manifest that is not layout. */
export interface BundleMetadata {
  model: BundleModel;
  tokenizer: { files: string[]; specialIds: SpecialIds; length: number };
  weights: BundleWeights;
  sources?: BundleSource[];
  createdAt?: Date;
}

export class BundleWriter {
  readonly chunkSize: number;
  readonly alignment: number;
  private buf: Uint8Array;
  private fill = 0;
  private chunkIndex = 0;
  private readonly chunks: BundleChunk[] = [];
  private readonly tensors: BundleTensorEntry[] = [];
  private readonly files: BundleFileEntry[] = [];
  private readonly names = new Set<string>();
  private state: 'open' | 'finished' | 'aborted' = 'open';
  private busy = false;

  constructor(
    private readonly sink: BundleSink,
    private readonly options: BundleWriterOptions = {},
  ) {
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.alignment = options.alignment ?? DEFAULT_ALIGNMENT;
    if (!Number.isInteger(this.alignment) || this.alignment < 1) {
      throw new SimpleARError('InvalidSettings', `bundle alignment must be a positive integer, got ${this.alignment}`);
    }
    if (!Number.isInteger(this.chunkSize) || this.chunkSize < 1 || this.chunkSize % this.alignment !== 0) {
      throw new SimpleARError(
        'InvalidSettings',
        `bundle chunk size must be a positive multiple of ${this.alignment}, got ${this.chunkSize}`,
      );
    }
    this.buf = new Uint8Array(this.chunkSize);
  }

  /** Appends one tensor. Names must be unique. */
  async addTensor(t: NamedTensor): Promise<void> {
    const size = ELEM_BYTES[t.type];
    if (size === undefined) throw new BundleError(t.name, `unknown element type ${JSON.stringify(t.type)}`, { tensor: t.name });
    const expected = numelOf(t.dims) * size;
    if (t.raw.byteLength !== expected) {
      throw new BundleError(t.name, `dims ${JSON.stringify(t.dims)} of ${t.type} need ${expected} bytes, got ${t.raw.byteLength}`, {
        tensor: t.name,
      });
    }
    this.claimName(`tensor:${t.name}`, t.name);
    const loc = await this.append(t.raw);
    this.tensors.push({ name: t.name, type: t.type, dims: [...t.dims], ...loc });
    this.report();
  }

  /** Appends tensors from a (sync or async) stream of tensors or groups of tensors. */
  async addTensors(source: AsyncIterable<NamedTensor | readonly NamedTensor[]> | Iterable<NamedTensor | readonly NamedTensor[]>): Promise<void> {
    for await (const item of source) {
      const group = Array.isArray(item) ? (item as readonly NamedTensor[]) : [item as NamedTensor];
      for (const t of group) await this.addTensor(t);
    }
  }

  /** Embeds a small file (tokenizer.json, …) in the chunk stream; read back with readFile. */
  async addFile(name: string, content: Uint8Array | string): Promise<void> {
    this.claimName(`file:${name}`, name);
    const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content;
    this.files.push({ name, ...(await this.append(bytes)) });
  }

  /** Writes the last chunk and the manifest, then commits the sink. */
  async finish(meta: BundleMetadata): Promise<BundleManifest> {
    this.checkOpen();
    this.busy = true;
    try {
      if (this.fill > 0) await this.flush();
      const manifest: BundleManifest = {
        format: BUNDLE_FORMAT,
        version: BUNDLE_VERSION,
        createdAt: (meta.createdAt ?? new Date()).toISOString(),
        model: meta.model,
        tokenizer: meta.tokenizer,
        weights: meta.weights,
        sources: meta.sources ?? [],
        layout: {
          chunkSize: this.chunkSize,
          alignment: this.alignment,
          totalBytes: this.chunks.reduce((a, c) => a + c.byteLength, 0),
        },
        chunks: this.chunks,
        tensors: this.tensors,
        files: this.files,
      };
      parseManifest(manifest); // never write a manifest we would refuse to read
      this.options.signal?.throwIfAborted();
      await this.sink.putManifest(JSON.stringify(manifest, null, 1));
      this.options.signal?.throwIfAborted();
      await this.sink.commit();
      this.state = 'finished';
      return manifest;
    } finally {
      this.busy = false;
    }
  }

  /** Discards everything written (idempotent). */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.sink.abort();
  }

  private claimName(key: string, name: string): void {
    this.checkOpen();
    if (this.names.has(key)) throw new BundleError(name, 'added twice', { tensor: name });
    this.names.add(key);
  }

  private checkOpen(): void {
    if (this.state !== 'open') throw new SimpleARError('InvalidSettings', `the bundle writer is ${this.state}`);
    if (this.busy) throw new SimpleARError('InvalidSettings', 'the bundle writer is busy: await each call');
    this.options.signal?.throwIfAborted();
  }

  /** Pads to the alignment, then copies `bytes` into the stream, flushing full chunks. */
  private async append(bytes: Uint8Array): Promise<BundleLocation> {
    this.busy = true;
    try {
      const pad = (this.alignment - (this.fill % this.alignment)) % this.alignment;
      this.fill += pad; // the buffer is zero-filled; chunkSize % alignment == 0 keeps this in bounds
      if (this.fill === this.chunkSize) await this.flush();
      const loc = { chunk: this.chunkIndex, offset: this.fill, byteLength: bytes.byteLength };
      if (bytes.byteLength === 0) return loc;
      let done = 0;
      while (done < bytes.byteLength) {
        const n = Math.min(this.chunkSize - this.fill, bytes.byteLength - done);
        this.buf.set(bytes.subarray(done, done + n), this.fill);
        this.fill += n;
        done += n;
        if (this.fill === this.chunkSize) await this.flush();
      }
      return loc;
    } finally {
      this.busy = false;
    }
  }

  private async flush(): Promise<void> {
    this.options.signal?.throwIfAborted();
    // Exact-length buffer: a subarray would make IndexedDB store the whole backing buffer.
    const bytes = this.fill === this.chunkSize ? this.buf : this.buf.slice(0, this.fill);
    const index = this.chunkIndex;
    const sha256 = await sha256Hex(bytes);
    await this.sink.putChunk(index, bytes);
    this.chunks.push({ file: chunkFileName(index), byteLength: bytes.byteLength, sha256 });
    this.chunkIndex++;
    this.fill = 0;
    this.buf = new Uint8Array(this.chunkSize);
    this.report();
  }

  private report(): void {
    this.options.onProgress?.({
      bytes: this.chunkIndex * this.chunkSize + this.fill,
      tensors: this.tensors.length,
      chunksWritten: this.chunks.length,
    });
  }
}

export interface WriteBundleOptions extends BundleWriterOptions, Omit<BundleMetadata, 'tokenizer'> {
  tokenizer: {
    /** File name → content, e.g. { 'tokenizer.json': …, 'tokenizer_config.json': … }. */
    files: Record<string, Uint8Array | string>;
    specialIds: SpecialIds;
    length: number;
  };
}

/**
 * Runs `write` with a new writer on `sink`. On any failure (or abort signal) the sink is aborted
 * and the error rethrown, so no half bundle is ever left behind; `write` ends with finish().
 */
export async function withBundleWriter<T>(
  sink: BundleSink,
  options: BundleWriterOptions,
  write: (writer: BundleWriter) => Promise<T>,
): Promise<T> {
  let writer: BundleWriter | undefined;
  try {
    writer = new BundleWriter(sink, options);
    return await write(writer);
  } catch (e) {
    try {
      if (writer) await writer.abort();
      else await sink.abort();
    } catch {
      // the original error matters more than a failed cleanup
    }
    throw e;
  }
}

/**
 * Writes a whole bundle: the tensors in stream order, then the tokenizer files, then the
 * manifest, then commits. On any failure (or abort signal) the sink is aborted and the error
 * rethrown, so no half bundle is ever left behind.
 */
export function writeBundle(
  sink: BundleSink,
  tensors: AsyncIterable<NamedTensor | readonly NamedTensor[]> | Iterable<NamedTensor | readonly NamedTensor[]>,
  options: WriteBundleOptions,
): Promise<BundleManifest> {
  return withBundleWriter(sink, options, async (writer) => {
    await writer.addTensors(tensors);
    for (const [name, content] of Object.entries(options.tokenizer.files)) await writer.addFile(name, content);
    return writer.finish({
      model: options.model,
      tokenizer: {
        files: Object.keys(options.tokenizer.files),
        specialIds: options.tokenizer.specialIds,
        length: options.tokenizer.length,
      },
      weights: options.weights,
      ...(options.sources ? { sources: options.sources } : {}),
      ...(options.createdAt ? { createdAt: options.createdAt } : {}),
    });
  });
}
