// The common currency between checkpoint readers and graph builders: a named tensor of raw bytes.
import { ModelFileError } from '../base/errors.ts';

export type DType = 'f32' | 'f16' | 'bf16';

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2 };

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
}

export interface RawTensor extends TensorInfo {
  /** Little-endian element bytes, row-major. */
  bytes: Uint8Array;
}

/** Random access to the tensors of one checkpoint, read lazily (never the whole file at once). */
export interface TensorReader {
  readonly file: string;
  list(): TensorInfo[];
  has(name: string): boolean;
  read(name: string, signal?: AbortSignal): Promise<RawTensor>;
  /** Rows [rowStart, rowStart+rowCount) of the first dimension, for tensors too big to hold whole. */
  readRows(name: string, rowStart: number, rowCount: number, signal?: AbortSignal): Promise<RawTensor>;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Round-to-nearest-even f32 → f16 bits. */
export function floatToHalf(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** Any supported dtype → Float32Array (bf16 and f16 exactly widened). */
export function toFloat32(t: RawTensor): Float32Array {
  const n = numel(t.shape);
  const expected = n * DTYPE_BYTES[t.dtype];
  if (t.bytes.byteLength !== expected) {
    throw new ModelFileError('tensor', `expected ${expected} bytes, got ${t.bytes.byteLength}`, t.name);
  }
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const out = new Float32Array(n);
  if (t.dtype === 'f32') {
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  } else if (t.dtype === 'bf16') {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = view.getUint16(i * 2, true) << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
  }
  return out;
}

export function float32ToFloat16Bytes(src: Float32Array): Uint8Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = floatToHalf(src[i]!);
  return new Uint8Array(out.buffer);
}
