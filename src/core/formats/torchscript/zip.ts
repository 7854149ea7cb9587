// A read-only zip archive over a ByteSource: the central directory is read from the tail with
// range reads, entry data on demand. Enough for PyTorch archives (`torch.save`, TorchScript):
// STORED entries (the tensor storages, 64-byte aligned), DEFLATE entries (code files), ZIP64.
import { inflateSync } from 'fflate';
import { ModelFileError } from '../../base/errors.ts';
import type { ByteSource } from '../byte-source.ts';
import { crc32 } from '../../base/crc32.ts';

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc32: number;
  /** Offset of the local file header. */
  readonly headerOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_MIN = 22;
const MAX_COMMENT = 0xffff;
const LOCAL_HEADER = 30;
/** Extra bytes read after a local header on a speculative one-request read (PyTorch pads to 64). */
const LOCAL_SLACK = 256;

const u16 = (v: DataView, o: number) => v.getUint16(o, true);
const u32 = (v: DataView, o: number) => v.getUint32(o, true);
const u64 = (v: DataView, o: number) => {
  const n = v.getBigUint64(o, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('64-bit zip field too large');
  return Number(n);
};
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

export class ZipArchive {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly source: ByteSource,
    readonly fileSize: number,
    readonly entries: ReadonlyMap<string, ZipEntry>,
  ) {}

  get file(): string {
    return this.source.name;
  }

  /** Reads the end-of-central-directory record (and ZIP64 records) and the central directory. */
  static async open(source: ByteSource, signal?: AbortSignal): Promise<ZipArchive> {
    const fileSize = await source.size(signal);
    const fail = (problem: string): never => {
      throw new ModelFileError(source.name, problem);
    };
    if (fileSize < EOCD_MIN) fail(`not a zip archive (${fileSize} bytes)`);
    const tailLen = Math.min(fileSize, EOCD_MIN + MAX_COMMENT + 20);
    const tailStart = fileSize - tailLen;
    const tail = await source.read(tailStart, tailLen, signal);
    const tv = view(tail);
    let eocd = -1;
    for (let i = tailLen - EOCD_MIN; i >= 0; i--) {
      if (u32(tv, i) === SIG_EOCD && i + EOCD_MIN + u16(tv, i + 20) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) {
      const head = await source.read(0, 4, signal);
      const isZip = u32(view(head), 0) === SIG_LOCAL;
      fail(isZip ? 'truncated zip archive: no end-of-central-directory record' : 'not a zip archive (bad magic)');
    }
    let count = u16(tv, eocd + 10);
    let cdSize = u32(tv, eocd + 12);
    let cdOffset = u32(tv, eocd + 16);
    const locator = eocd - 20;
    if (locator >= 0 && u32(tv, locator) === SIG_ZIP64_LOCATOR) {
      const z64Offset = u64(tv, locator + 8);
      if (z64Offset + 56 > fileSize) fail('truncated zip archive: ZIP64 record out of range');
      const rec = view(await source.read(z64Offset, 56, signal));
      if (u32(rec, 0) !== SIG_ZIP64_EOCD) fail('corrupt zip archive: bad ZIP64 end-of-central-directory record');
      count = u64(rec, 32);
      cdSize = u64(rec, 40);
      cdOffset = u64(rec, 48);
    }
    if (cdOffset + cdSize > fileSize) {
      fail(`truncated zip archive: central directory ends at ${cdOffset + cdSize}, file is ${fileSize} bytes`);
    }
    const cd = cdOffset >= tailStart ? tail.subarray(cdOffset - tailStart, cdOffset - tailStart + cdSize) : await source.read(cdOffset, cdSize, signal);
    const entries = parseCentralDirectory(cd, count, source.name, fileSize);
    return new ZipArchive(source, fileSize, entries);
  }

  entry(name: string): ZipEntry | undefined {
    return this.entries.get(name);
  }

  /** The whole (inflated) content of an entry; checks its CRC-32. */
  async read(name: string, signal?: AbortSignal): Promise<Uint8Array> {
    const e = this.require(name);
    const { data } = await this.readRaw(e, signal);
    const out = e.method === 0 ? data : this.inflate(e, data);
    if (crc32(out) !== e.crc32) throw new ModelFileError(this.file, `zip entry ${name}: CRC-32 mismatch (corrupt data)`);
    return out;
  }

  /** Bytes [offset, offset+length) of an entry's content, by range read where the entry is stored. */
  async readRange(name: string, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    const e = this.require(name);
    if (offset < 0 || length < 0 || offset + length > e.size) {
      throw new ModelFileError(this.file, `zip entry ${name}: range ${offset}+${length} beyond its ${e.size} bytes`);
    }
    if (e.method !== 0) {
      const whole = this.inflate(e, (await this.readRaw(e, signal)).data);
      return whole.subarray(offset, offset + length);
    }
    if (offset === 0 && length === e.size) return (await this.readRaw(e, signal)).data;
    const start = await this.dataOffset(e, signal);
    return this.source.read(start + offset, length, signal);
  }

  private require(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new ModelFileError(this.file, `zip entry ${name} is missing`, undefined, 'ModelFileInvalid');
    return e;
  }

  private inflate(e: ZipEntry, data: Uint8Array): Uint8Array {
    if (e.method !== 8) throw new ModelFileError(this.file, `zip entry ${e.name}: unsupported compression method ${e.method}`);
    try {
      const out = inflateSync(data, { out: new Uint8Array(e.size) });
      if (out.byteLength !== e.size) throw new Error(`inflated to ${out.byteLength} bytes, expected ${e.size}`);
      return out;
    } catch (err) {
      throw new ModelFileError(this.file, `zip entry ${e.name}: bad deflate data (${(err as Error).message})`);
    }
  }

  /** Entry data (still compressed if deflated), header and data in one request where possible. */
  private async readRaw(e: ZipEntry, signal?: AbortSignal): Promise<{ data: Uint8Array }> {
    const known = this.dataOffsets.get(e.name);
    if (known !== undefined) return { data: await this.source.read(known, e.compressedSize, signal) };
    const want = Math.min(this.fileSize - e.headerOffset, LOCAL_HEADER + e.name.length * 4 + LOCAL_SLACK + e.compressedSize);
    const chunk = await this.source.read(e.headerOffset, want, signal);
    const start = this.parseLocalHeader(e, chunk);
    const rel = start - e.headerOffset;
    if (rel + e.compressedSize <= chunk.byteLength) return { data: chunk.subarray(rel, rel + e.compressedSize) };
    return { data: await this.source.read(start, e.compressedSize, signal) };
  }

  private async dataOffset(e: ZipEntry, signal?: AbortSignal): Promise<number> {
    const known = this.dataOffsets.get(e.name);
    if (known !== undefined) return known;
    const want = Math.min(this.fileSize - e.headerOffset, LOCAL_HEADER + e.name.length * 4 + LOCAL_SLACK);
    return this.parseLocalHeader(e, await this.source.read(e.headerOffset, want, signal), signal);
  }

  /** Returns the absolute offset of the entry's data; reads more header bytes if `chunk` is short. */
  private parseLocalHeader(e: ZipEntry, chunk: Uint8Array, _signal?: AbortSignal): number {
    if (chunk.byteLength < LOCAL_HEADER || u32(view(chunk), 0) !== SIG_LOCAL) {
      throw new ModelFileError(this.file, `zip entry ${e.name}: bad local header at ${e.headerOffset}`);
    }
    const v = view(chunk);
    const start = e.headerOffset + LOCAL_HEADER + u16(v, 26) + u16(v, 28);
    if (start + e.compressedSize > this.fileSize) {
      throw new ModelFileError(
        this.file,
        `truncated: zip entry ${e.name} ends at ${start + e.compressedSize}, file is ${this.fileSize} bytes`,
      );
    }
    this.dataOffsets.set(e.name, start);
    return start;
  }
}

function parseCentralDirectory(cd: Uint8Array, count: number, file: string, fileSize: number): Map<string, ZipEntry> {
  const v = view(cd);
  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.byteLength || u32(v, p) !== SIG_CENTRAL) {
      throw new ModelFileError(file, `corrupt zip archive: bad central directory record ${i} at +${p}`);
    }
    const flags = u16(v, p + 8);
    const method = u16(v, p + 10);
    const crc = u32(v, p + 16);
    let compressedSize = u32(v, p + 20);
    let size = u32(v, p + 24);
    const nameLen = u16(v, p + 28);
    const extraLen = u16(v, p + 30);
    const commentLen = u16(v, p + 32);
    let headerOffset = u32(v, p + 42);
    const name = decoder.decode(cd.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extended information: the fields that are 0xFFFFFFFF in the record, in this order.
    let x = p + 46 + nameLen;
    const extraEnd = x + extraLen;
    while (x + 4 <= extraEnd) {
      const id = u16(v, x);
      const len = u16(v, x + 2);
      if (id === 0x0001) {
        let f = x + 4;
        if (size === 0xffffffff) (size = u64(v, f)), (f += 8);
        if (compressedSize === 0xffffffff) (compressedSize = u64(v, f)), (f += 8);
        if (headerOffset === 0xffffffff) headerOffset = u64(v, f);
      }
      x += 4 + len;
    }
    if (flags & 1) throw new ModelFileError(file, `zip entry ${name} is encrypted`);
    if (headerOffset + LOCAL_HEADER > fileSize) {
      throw new ModelFileError(file, `truncated: zip entry ${name} starts beyond the end of the file`);
    }
    entries.set(name, { name, method, compressedSize, size, crc32: crc, headerOffset });
    p = extraEnd + commentLen;
  }
  return entries;
}
