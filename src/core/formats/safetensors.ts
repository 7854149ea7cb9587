// safetensors: 8-byte little-endian header length, a JSON header, then raw tensor bytes.
// Sharded checkpoints add model.safetensors.index.json mapping tensor names to shard files.
import { HttpError, ModelFileError } from '../base/errors.ts';
import { folderFile, readJson, type ByteSource, type FileFolder } from './byte-source.ts';
import { DTYPE_BYTES, numel, type DType, type RawTensor, type TensorInfo, type TensorReader } from './tensor.ts';

const DTYPES: Record<string, DType> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const MAX_HEADER = 100 * 1024 * 1024;

interface Entry extends TensorInfo {
  source: ByteSource;
  /** Absolute byte offset in the file. */
  offset: number;
  length: number;
}

class SafetensorsReader implements TensorReader {
  constructor(
    readonly file: string,
    private readonly entries: Map<string, Entry>,
  ) {}
  list(): TensorInfo[] {
    return [...this.entries.values()].map(({ name, dtype, shape }) => ({ name, dtype, shape }));
  }
  has(name: string): boolean {
    return this.entries.has(name);
  }
  async read(name: string, signal?: AbortSignal): Promise<RawTensor> {
    const e = this.entries.get(name);
    if (!e) throw new ModelFileError(this.file, 'tensor not found', name, 'ModelFileMissing');
    const bytes = await readNamed(e, e.offset, e.length, signal);
    return { name, dtype: e.dtype, shape: e.shape, bytes };
  }
  async readRows(name: string, rowStart: number, rowCount: number, signal?: AbortSignal): Promise<RawTensor> {
    const e = this.entries.get(name);
    if (!e) throw new ModelFileError(this.file, 'tensor not found', name, 'ModelFileMissing');
    const rows = e.shape[0] ?? 1;
    if (!Number.isInteger(rowStart) || !Number.isInteger(rowCount) || rowStart < 0 || rowCount < 0 || rowStart + rowCount > rows) {
      throw new ModelFileError(this.file, `rows ${rowStart}+${rowCount} out of range (${rows})`, name);
    }
    const rowBytes = e.length / rows;
    const bytes = await readNamed(e, e.offset + rowStart * rowBytes, rowCount * rowBytes, signal);
    return { name, dtype: e.dtype, shape: [rowCount, ...e.shape.slice(1)], bytes };
  }
}

/** A source read whose ModelFileError (e.g. truncation) also names the tensor. */
async function readNamed(e: Entry, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
  try {
    return await e.source.read(offset, length, signal);
  } catch (err) {
    if (err instanceof ModelFileError && !err.tensor) {
      throw new ModelFileError(err.file, err.message.replace(`${err.file}: `, ''), e.name, err.code);
    }
    throw err;
  }
}

const isNonNegInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

async function readHeader(source: ByteSource, signal?: AbortSignal): Promise<Entry[]> {
  const fileSize = await source.size(signal);
  if (fileSize < 8) throw new ModelFileError(source.name, `not a safetensors file (${fileSize} bytes)`);
  const lenBytes = await source.read(0, 8, signal);
  const headerLen = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLen <= 0 || headerLen > MAX_HEADER || 8 + headerLen > fileSize) {
    throw new ModelFileError(source.name, `not a safetensors file (header length ${headerLen})`);
  }
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(await source.read(8, headerLen, signal)));
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    throw new ModelFileError(source.name, `header is not JSON (${e.message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ModelFileError(source.name, 'header is not a JSON object');
  }
  const dataStart = 8 + headerLen;
  const entries: Entry[] = [];
  for (const [name, h] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (typeof h !== 'object' || h === null || !Array.isArray(h.shape) || !h.shape.every(isNonNegInt)) {
      throw new ModelFileError(source.name, 'header entry has no valid shape', name);
    }
    if (!Array.isArray(h.data_offsets) || h.data_offsets.length !== 2 || !h.data_offsets.every(isNonNegInt)) {
      throw new ModelFileError(source.name, 'header entry has no valid data_offsets', name);
    }
    const dtype = DTYPES[h.dtype];
    if (!dtype) throw new ModelFileError(source.name, `unsupported dtype ${h.dtype}`, name, 'UnsupportedDType');
    const [begin, end] = h.data_offsets;
    const length = end - begin;
    if (length !== numel(h.shape) * DTYPE_BYTES[dtype]) {
      throw new ModelFileError(source.name, `shape ${JSON.stringify(h.shape)} does not match ${length} bytes`, name);
    }
    if (dataStart + end > fileSize) {
      throw new ModelFileError(source.name, `truncated: tensor ends at ${dataStart + end}, file is ${fileSize} bytes`, name);
    }
    entries.push({ name, dtype, shape: h.shape, source, offset: dataStart + begin, length });
  }
  return entries;
}

/**
 * Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`. The single
 * file is tried first: it is the released 0.5B layout, so the usual load makes no failed request.
 */
export async function openSafetensors(folder: FileFolder, signal?: AbortSignal): Promise<TensorReader> {
  const single = folder.open('model.safetensors');
  try {
    const entries = new Map((await readHeader(single, signal)).map((e) => [e.name, e]));
    return new SafetensorsReader(folderFile(folder, 'model.safetensors'), entries);
  } catch (e) {
    if (!isMissing(e)) throw e;
  }
  const index = await readJson<{ weight_map: Record<string, string> }>(folder, 'model.safetensors.index.json', signal);
  if (!index) {
    throw new ModelFileError(folderFile(folder, 'model.safetensors'), 'not found (nor model.safetensors.index.json)', undefined, 'ModelFileMissing');
  }
  if (typeof index.weight_map !== 'object' || index.weight_map === null) {
    throw new ModelFileError(folderFile(folder, 'model.safetensors.index.json'), 'no "weight_map" object');
  }
  const files = [...new Set(Object.values(index.weight_map))];
  const entries = new Map<string, Entry>();
  for (const file of files) {
    for (const e of await readHeader(folder.open(file), signal)) entries.set(e.name, e);
  }
  for (const [name, file] of Object.entries(index.weight_map)) {
    if (!entries.has(name)) {
      throw new ModelFileError(folderFile(folder, file), 'listed in the index but missing from the shard', name);
    }
  }
  return new SafetensorsReader(folderFile(folder, 'model.safetensors.index.json'), entries);
}

const isMissing = (e: unknown): boolean =>
  (e instanceof ModelFileError && e.code === 'ModelFileMissing') || (e instanceof HttpError && e.status === 404);

/** One safetensors file on its own. */
export async function openSafetensorsFile(source: ByteSource, signal?: AbortSignal): Promise<TensorReader> {
  const entries = new Map((await readHeader(source, signal)).map((e) => [e.name, e]));
  return new SafetensorsReader(source.name, entries);
}
