// TorchScript archives (`torch.jit.save`, e.g. Cosmos' decoder.jit) and zip `torch.save` files,
// read tensor by tensor through range requests. Layout:
//   <prefix>/data.pkl      the module tree, pickled (protocol 2); tensors are persistent ids
//                          ('storage', torch.FloatStorage, key, location, numel) rebuilt by
//                          torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
//   <prefix>/data/<key>    raw little-endian storage bytes (STORED, 64-byte aligned)
//   <prefix>/code/…        TorchScript source (deflated); constants.pkl + constants/<key>: traced constants
// Parameter names are the module tree's attribute paths, as `state_dict()` names them.
import { ModelFileError } from '../../base/errors.ts';
import type { ByteSource } from '../byte-source.ts';
import { numel, type DType, type RawTensor, type TensorInfo, type TensorReader } from '../tensor.ts';
import { PickleError, PickleGlobal, PickleObject, unpickle, type PickleCallable } from './pickle.ts';
import { ZipArchive } from './zip.ts';

/** Every element type a PyTorch storage can have (complex and quantized types are not read). */
export type TorchDType = 'f64' | 'f32' | 'f16' | 'bf16' | 'i64' | 'i32' | 'i16' | 'i8' | 'u8' | 'bool';

const STORAGE_TYPES: Record<string, { dtype: TorchDType; bytes: number }> = {
  DoubleStorage: { dtype: 'f64', bytes: 8 },
  FloatStorage: { dtype: 'f32', bytes: 4 },
  HalfStorage: { dtype: 'f16', bytes: 2 },
  BFloat16Storage: { dtype: 'bf16', bytes: 2 },
  LongStorage: { dtype: 'i64', bytes: 8 },
  IntStorage: { dtype: 'i32', bytes: 4 },
  ShortStorage: { dtype: 'i16', bytes: 2 },
  CharStorage: { dtype: 'i8', bytes: 1 },
  ByteStorage: { dtype: 'u8', bytes: 1 },
  BoolStorage: { dtype: 'bool', bytes: 1 },
};

export interface TorchTensorInfo {
  name: string;
  /** null: a storage type this reader cannot read (reading the tensor throws UnsupportedDType). */
  dtype: TorchDType | null;
  /** The pickled storage class, e.g. `torch.FloatStorage`. */
  storageType: string;
  shape: number[];
  /** In elements. */
  stride: number[];
  storageKey: string;
  /** In elements. */
  storageOffset: number;
  /** Parameters are saved with requires_grad=True, buffers with False. */
  requiresGrad: boolean;
}

/** A tensor of any TorchScript element type, raw little-endian bytes, row-major. */
export interface TorchRawTensor {
  name: string;
  dtype: TorchDType;
  shape: number[];
  bytes: Uint8Array;
}

class StorageRef {
  constructor(
    readonly key: string,
    readonly typeName: string,
    readonly numel: number,
    readonly location: string,
  ) {}
}

class TensorRef {
  requiresGrad = false;
  constructor(
    readonly storage: StorageRef | null,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
    /** Why it cannot be read, for tensors rebuilt by functions other than _rebuild_tensor_v2. */
    readonly unsupported?: string,
  ) {}
}

const FLOAT_DTYPES = new Set<TorchDType>(['f32', 'f16', 'bf16', 'f64']);
const ELEM_BYTES: Record<TorchDType, number> = { f64: 8, f32: 4, f16: 2, bf16: 2, i64: 8, i32: 4, i16: 2, i8: 1, u8: 1, bool: 1 };
/** Largest span of storage bytes read to gather one strided view. */
const MAX_STRIDED_SPAN = 1 << 30;

export class TorchScriptReader implements TensorReader {
  private readonly byName: Map<string, TorchTensorInfo>;

  private constructor(
    readonly file: string,
    private readonly zip: ZipArchive,
    /** Folder name inside the archive (`archive`, `decoder`, …). */
    readonly prefix: string,
    private readonly infos: TorchTensorInfo[],
    private readonly bigEndian: boolean,
    /** Content of `<prefix>/version`, if present. */
    readonly formatVersion: string | null,
  ) {
    this.byName = new Map(infos.map((t) => [t.name, t]));
  }

  static async open(source: ByteSource, signal?: AbortSignal): Promise<TorchScriptReader> {
    const zip = await ZipArchive.open(source, signal);
    const pkl = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n) || n === 'data.pkl').sort((a, b) => a.length - b.length)[0];
    if (!pkl) throw new ModelFileError(source.name, 'not a TorchScript/PyTorch archive: no <name>/data.pkl entry');
    const prefix = pkl.includes('/') ? pkl.slice(0, pkl.indexOf('/')) : '';
    const at = (n: string) => (prefix ? `${prefix}/${n}` : n);

    let root: unknown;
    try {
      root = unpickle(await zip.read(pkl, signal), { findGlobal: torchGlobal, persistentLoad: loadStorage });
    } catch (e) {
      if (e instanceof PickleError) throw new ModelFileError(source.name, `${pkl}: ${e.message}`);
      throw e;
    }
    const infos: TorchTensorInfo[] = [];
    collectTensors(root, '', infos, new Set());

    let bigEndian = false;
    const order = zip.entry(at('byteorder'));
    if (order) bigEndian = new TextDecoder().decode(await zip.read(order.name, signal)).trim() === 'big';
    const versionEntry = zip.entry(at('version')) ?? zip.entry(at('.data/version'));
    const formatVersion = versionEntry ? new TextDecoder().decode(await zip.read(versionEntry.name, signal)).trim() : null;
    return new TorchScriptReader(source.name, zip, prefix, infos, bigEndian, formatVersion);
  }

  /** Every tensor of the module tree (parameters and buffers), in state_dict order. */
  tensors(): TorchTensorInfo[] {
    return this.infos.map((t) => ({ ...t, shape: [...t.shape], stride: [...t.stride] }));
  }

  info(name: string): TorchTensorInfo | undefined {
    return this.byName.get(name);
  }

  /** Floating-point tensors (f64 ones are read as f32), as the TensorReader contract wants. */
  list(): TensorInfo[] {
    return this.infos
      .filter((t) => t.dtype && FLOAT_DTYPES.has(t.dtype))
      .map((t) => ({ name: t.name, dtype: floatDType(t.dtype!), shape: [...t.shape] }));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  async read(name: string, signal?: AbortSignal): Promise<RawTensor> {
    const t = this.require(name);
    return this.asFloat(t, await this.gather(t, 0, t.shape[0] ?? 1, signal));
  }

  async readRows(name: string, rowStart: number, rowCount: number, signal?: AbortSignal): Promise<RawTensor> {
    const t = this.require(name);
    const rows = t.shape.length ? t.shape[0]! : 1;
    if (!Number.isInteger(rowStart) || !Number.isInteger(rowCount) || rowStart < 0 || rowCount < 0 || rowStart + rowCount > rows) {
      throw new ModelFileError(this.file, `rows ${rowStart}+${rowCount} out of range (${rows})`, name);
    }
    const out = this.asFloat(t, await this.gather(t, rowStart, rowCount, signal));
    return { ...out, shape: t.shape.length ? [rowCount, ...t.shape.slice(1)] : [] };
  }

  /** Any element type (integer and bool buffers included), raw bytes. */
  async readAny(name: string, signal?: AbortSignal): Promise<TorchRawTensor> {
    const t = this.require(name);
    const bytes = await this.gather(t, 0, t.shape[0] ?? 1, signal);
    return { name, dtype: t.dtype!, shape: [...t.shape], bytes };
  }

  private require(name: string): TorchTensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new ModelFileError(this.file, 'tensor not found', name, 'ModelFileMissing');
    if (!t.dtype) {
      throw new ModelFileError(this.file, `unsupported storage type ${t.storageType}`, name, 'UnsupportedDType');
    }
    return t;
  }

  private asFloat(t: TorchTensorInfo, bytes: Uint8Array): RawTensor {
    const dtype = t.dtype!;
    if (!FLOAT_DTYPES.has(dtype)) {
      throw new ModelFileError(this.file, `${dtype} tensor is not a floating-point weight (use readAny)`, t.name, 'UnsupportedDType');
    }
    if (dtype !== 'f64') return { name: t.name, dtype: dtype as DType, shape: [...t.shape], bytes };
    const src = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    return { name: t.name, dtype: 'f32', shape: [...t.shape], bytes: new Uint8Array(Float32Array.from(src).buffer) };
  }

  /** Bytes of rows [rowStart, rowStart+rowCount) of the view, row-major and little-endian. */
  private async gather(t: TorchTensorInfo, rowStart: number, rowCount: number, signal?: AbortSignal): Promise<Uint8Array> {
    const eb = ELEM_BYTES[t.dtype!];
    const entryName = (this.prefix ? `${this.prefix}/` : '') + `data/${t.storageKey}`;
    const entry = this.zip.entry(entryName);
    if (!entry) throw new ModelFileError(this.file, `storage ${entryName} is missing from the archive`, t.name);
    const shape = t.shape.length ? [rowCount, ...t.shape.slice(1)] : [];
    const offset = t.storageOffset + (t.shape.length ? rowStart * t.stride[0]! : 0);
    const n = numel(shape);
    if (n === 0) return new Uint8Array(0);
    let span = 1;
    for (let i = 0; i < shape.length; i++) {
      if (t.stride[i]! < 0) throw new ModelFileError(this.file, 'negative strides are not supported', t.name);
      span += (shape[i]! - 1) * t.stride[i]!;
    }
    if ((offset + span) * eb > entry.size) {
      throw new ModelFileError(
        this.file,
        `storage ${t.storageKey} has ${entry.size} bytes, the view needs ${(offset + span) * eb} (truncated or corrupt)`,
        t.name,
      );
    }
    let bytes: Uint8Array;
    if (isContiguous(shape, t.stride)) {
      bytes = await this.zip.readRange(entryName, offset * eb, n * eb, signal);
    } else {
      if (span * eb > MAX_STRIDED_SPAN) {
        throw new ModelFileError(this.file, `unsupported strided view: spans ${span * eb} bytes of storage`, t.name);
      }
      const src = await this.zip.readRange(entryName, offset * eb, span * eb, signal);
      bytes = gatherStrided(src, shape, t.stride, eb);
    }
    if (this.bigEndian && eb > 1) bytes = swapBytes(bytes, eb);
    return bytes;
  }
}

/** Opens a TorchScript archive (e.g. `decoder.jit`) or a zip-format `torch.save` file. */
export function openTorchScript(source: ByteSource, signal?: AbortSignal): Promise<TorchScriptReader> {
  return TorchScriptReader.open(source, signal);
}

const floatDType = (d: TorchDType): DType => (d === 'f64' ? 'f32' : (d as DType));

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

function gatherStrided(src: Uint8Array, shape: number[], stride: number[], eb: number): Uint8Array {
  const n = numel(shape);
  const out = new Uint8Array(n * eb);
  const idx = new Array<number>(shape.length).fill(0);
  let srcElem = 0;
  for (let k = 0; k < n; k++) {
    out.set(src.subarray(srcElem * eb, srcElem * eb + eb), k * eb);
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d]!++;
      srcElem += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      srcElem -= idx[d]! * stride[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

function swapBytes(b: Uint8Array, eb: number): Uint8Array {
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i += eb) for (let j = 0; j < eb; j++) out[i + j] = b[i + eb - 1 - j]!;
  return out;
}

function loadStorage(pid: unknown): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) {
    throw new PickleError(`unsupported persistent id ${JSON.stringify(String(pid))}`, 0);
  }
  const [, type, key, location, count] = pid as [string, unknown, unknown, unknown, unknown];
  const typeName = type instanceof PickleGlobal ? type.qualifiedName : String(type);
  return new StorageRef(String(key), typeName, Number(count), String(location));
}

const toInts = (v: unknown): number[] => (Array.isArray(v) ? v.map((x) => Number(x)) : []);

function rebuildTensor(storage: unknown, offset: unknown, size: unknown, stride: unknown, requiresGrad?: unknown): TensorRef {
  if (!(storage instanceof StorageRef)) throw new PickleError('_rebuild_tensor_v2 without a storage', 0);
  const t = new TensorRef(storage, Number(offset), toInts(size), toInts(stride));
  t.requiresGrad = requiresGrad === true;
  return t;
}

function torchGlobal(module: string, name: string): PickleCallable | undefined {
  if (module === 'torch._utils') {
    if (name === '_rebuild_tensor_v2' || name === '_rebuild_tensor') return rebuildTensor as PickleCallable;
    if (name === '_rebuild_parameter' || name === '_rebuild_parameter_with_state') {
      return (data: unknown, requiresGrad: unknown) => {
        if (data instanceof TensorRef) data.requiresGrad = requiresGrad === true;
        return data;
      };
    }
    if (name.startsWith('_rebuild_')) {
      return () => new TensorRef(null, 0, [], [], `tensors rebuilt by torch._utils.${name} are not supported`);
    }
  }
  if (module === 'torch.jit._pickle') {
    // Typed containers: restore_type_tag(value, type_str), build_intlist(list), …
    if (name === 'restore_type_tag') return (value: unknown) => value;
    if (name.startsWith('build_')) return (value: unknown) => value;
  }
  return undefined;
}

/** Walks modules (objects with dict state) and dicts; tensors become dotted names. */
function collectTensors(value: unknown, prefix: string, out: TorchTensorInfo[], seen: Set<unknown>): void {
  let entries: Iterable<[unknown, unknown]> | undefined;
  if (value instanceof PickleObject) {
    if (value.state instanceof Map) entries = value.state;
    else if (value.dictItems) entries = value.dictItems;
  } else if (value instanceof Map) {
    entries = value;
  }
  if (!entries || seen.has(value)) return;
  seen.add(value);
  for (const [key, v] of entries) {
    if (typeof key !== 'string' && typeof key !== 'number') continue;
    const name = `${prefix}${key}`;
    if (v instanceof TensorRef) out.push(tensorInfo(name, v));
    else collectTensors(v, `${name}.`, out, seen);
  }
}

function tensorInfo(name: string, t: TensorRef): TorchTensorInfo {
  const typeName = t.storage?.typeName ?? (t.unsupported || 'unknown');
  const short = typeName.startsWith('torch.') ? typeName.slice(6) : typeName;
  return {
    name,
    dtype: t.storage ? (STORAGE_TYPES[short]?.dtype ?? null) : null,
    storageType: typeName,
    shape: t.shape,
    stride: t.stride,
    storageKey: t.storage?.key ?? '',
    storageOffset: t.offset,
    requiresGrad: t.requiresGrad,
  };
}
