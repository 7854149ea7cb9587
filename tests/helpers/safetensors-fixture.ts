// Writes small safetensors files for tests: 8-byte LE header length, JSON header, raw data.
import { floatToHalf } from '../../src/core/formats/tensor.ts';

export type StDType = 'F32' | 'F16' | 'BF16' | 'I64' | 'U8';

export interface StTensor {
  name: string;
  dtype: StDType;
  shape: number[];
  /** Element values (converted to dtype), or raw bytes. */
  values?: ArrayLike<number>;
  bytes?: Uint8Array;
}

const BYTES: Record<StDType, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, U8: 1 };

/** f32 → bf16 bits, round to nearest even (as torch does). */
export function floatToBf16(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff; // NaN stays NaN
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function encodeValues(dtype: StDType, values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * BYTES[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (dtype === 'F32') view.setFloat32(i * 4, v, true);
    else if (dtype === 'F16') view.setUint16(i * 2, floatToHalf(v), true);
    else if (dtype === 'BF16') view.setUint16(i * 2, floatToBf16(v), true);
    else if (dtype === 'I64') view.setBigInt64(i * 8, BigInt(v), true);
    else view.setUint8(i, v);
  }
  return out;
}

/** Deterministic values 0.5·sin(seed + i·0.37), exactly representable after conversion. */
export function patternValues(n: number, seed = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(Math.sin(seed + i * 0.37) * 64) / 128;
  return out;
}

export interface SafetensorsOptions {
  metadata?: Record<string, string>;
  /** Override the header JSON (for malformed-file tests). */
  headerOverride?: (header: Record<string, unknown>) => Record<string, unknown>;
}

/** Bytes of a safetensors file with the tensors in the given order. */
export function makeSafetensors(tensors: StTensor[], options: SafetensorsOptions = {}): Uint8Array {
  let header: Record<string, unknown> = {};
  if (options.metadata) header.__metadata__ = options.metadata;
  const datas: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const data = t.bytes ?? encodeValues(t.dtype, t.values ?? new Float32Array(t.shape.reduce((a, b) => a * b, 1)));
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + data.byteLength] };
    datas.push(data);
    offset += data.byteLength;
  }
  if (options.headerOverride) header = options.headerOverride(header);
  let json = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces to 8 bytes, as the Python writer does.
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let pos = 8 + json.byteLength;
  for (const d of datas) {
    out.set(d, pos);
    pos += d.byteLength;
  }
  return out;
}
