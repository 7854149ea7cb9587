// Block-wise weight quantization in exactly the layout ONNX Runtime's com.microsoft MatMulNBits
// (and GatherBlockQuantized) read, plus the plain f16/f32 paths.
//
// Layout ("MatMulNBits" in https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md,
// and onnxruntime/contrib_ops/cpu/quantization/matmul_nbits_helper.h in the same repository). A weight arrives as HF Linear [N(out), K(in)], row-major. Each output
// row n is cut along K into k_blocks = ceil(K / blockSize) blocks (the last one zero-padded):
//   B           uint8 [N, k_blocks, blockSize * bits / 8]
//               bits 4: element k of a block sits in byte k >> 1, LOW nibble for even k, HIGH
//               nibble for odd k ("the first 4 bits are stored in the lower 4 bits of a byte").
//               bits 8: one byte per element.
//   scales      T1 [N, k_blocks] (T1 = the activation type: f32 or f16 in the graph; stored f16)
//   zero_points uint8 [N, ceil(k_blocks * bits / 8)], packed like B (two 4-bit zero points per
//               byte, low nibble = even block), or absent: then ORT uses 2^(bits-1) (8 for 4-bit,
//               128 for 8-bit). Dequantization: w = (q - zp) * scale.
// GatherBlockQuantized (uint8 data, gather_axis 0, quantize_axis last) reads the same bytes with
// the same nibble order and the same default zero point 2^(bits-1), so a symmetric table can be
// shared between a MatMulNBits head and an embedding lookup (see convert/lm-weights.ts).
//
// Choices (measured; relative RMS weight error on Gaussian / heavy-tailed weights, block 32):
//   - Linear layers (MatMulNBits only): ASYMMETRIC, scale = (max − min)/(2^bits − 1) with an
//     explicit zero point (min/max include 0). 4-bit: 0.081 / 0.101; 8-bit: 0.0048 / 0.0061.
//     Costs bits/32 extra bits per weight (q4: 4.625 bits/weight with f16 scales, +2.8%), and is
//     the cheapest to compute. Clipping searches or least-squares refits gained ≤ 3% here.
//   - Tables read by GatherBlockQuantized (the embedding, and the visual head that doubles as the
//     visual-token embedding): SYMMETRIC (implicit zero point 2^(bits-1)): the value with the
//     largest magnitude maps to −2^(bits−1) (all 2^bits levels used, llama.cpp q4_0 style), then
//     two least-squares refits of the scale. 4-bit: 0.083 / 0.123. Reason: ORT's CPU and WebGPU
//     GatherBlockQuantized kernels pack zero points differently for the rank-3 layout the head
//     shares with MatMulNBits; without zero points both read the same bytes identically.
//   `symmetric` defaults to true in this API; convert/lm-weights.ts picks per tensor kind.
import { floatToHalf, halfToFloat } from '../formats/tensor.ts';

/** The LM's weight formats: 4- or 8-bit blocks (MatMulNBits), or plain f16 / f32. */
export type LmWeightFormat = 'q4' | 'q8' | 'f16' | 'f32';

export type QuantBits = 4 | 8;

export interface QuantOptions {
  bits: QuantBits;
  /** Block length along K; ORT requires a power of two ≥ 16. Default 32. */
  blockSize?: number;
  /** Symmetric (implicit zero point 2^(bits-1)) or asymmetric with explicit zero points. Default true. */
  symmetric?: boolean;
  /**
   * Search the clipping ratio per block to minimise squared error (symmetric 4-bit only; q8 gains
   * nothing). Default true. Costs ~10 extra passes over each block.
   */
  searchScale?: boolean;
}

/** One quantized matrix in MatMulNBits layout. */
export interface QuantizedMatrix {
  n: number;
  k: number;
  bits: QuantBits;
  blockSize: number;
  kBlocks: number;
  /** uint8 [n, kBlocks, blockSize*bits/8] */
  b: Uint8Array;
  /** f16 bits [n, kBlocks] (the scales as stored; the quantized values were computed against these). */
  scalesF16: Uint16Array;
  /** uint8 [n, ceil(kBlocks*bits/8)] MatMulNBits packing, or undefined when symmetric. */
  zeroPoints?: Uint8Array;
}

/** Rounds to the nearest f16 and back (the stored scale is what the kernel multiplies by). */
function roundToHalf(v: number): number {
  return halfToFloat(floatToHalf(v));
}

/**
 * Quantizes `w` ([n, k] row-major, HF Linear layout) block-wise along k.
 * Rows are independent, so callers may quantize a matrix in row chunks and concatenate the
 * outputs (b, scales, zero points are all row-major in n).
 */
export function quantizeMatrix(w: Float32Array, n: number, k: number, opts: QuantOptions): QuantizedMatrix {
  const bits = opts.bits;
  const blockSize = opts.blockSize ?? 32;
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) throw new Error(`block size ${blockSize}: must be a power of two ≥ 16`);
  if (w.length !== n * k) throw new Error(`quantizeMatrix: expected ${n * k} values, got ${w.length}`);
  const symmetric = opts.symmetric ?? true;
  const search = (opts.searchScale ?? true) && symmetric;
  const kBlocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  const qmax = (1 << bits) - 1;
  const zpDefault = 1 << (bits - 1);
  const b = new Uint8Array(n * kBlocks * blob);
  const scalesF16 = new Uint16Array(n * kBlocks);
  const zpBytesPerRow = Math.ceil((kBlocks * bits) / 8);
  const zeroPoints = symmetric ? undefined : new Uint8Array(n * zpBytesPerRow).fill(bits === 4 ? 0x88 : 0x80);
  const q = new Uint8Array(blockSize);
  const vals = new Float32Array(blockSize);

  for (let row = 0; row < n; row++) {
    for (let blk = 0; blk < kBlocks; blk++) {
      const k0 = blk * blockSize;
      const len = Math.min(blockSize, k - k0);
      const base = row * k + k0;
      for (let i = 0; i < len; i++) vals[i] = w[base + i]!;
      for (let i = len; i < blockSize; i++) vals[i] = 0;
      let scale: number;
      let zp = zpDefault;
      if (symmetric) {
        // Signed extreme: the value with the largest magnitude maps to -2^(bits-1) (-8 for
        // 4-bit, -128 for 8-bit), which uses all 2^bits levels (llama.cpp q4_0 style).
        let m = 0;
        let am = 0;
        for (let i = 0; i < len; i++) {
          const v = vals[i]!;
          const a = v < 0 ? -v : v;
          if (a > am) {
            am = a;
            m = v;
          }
        }
        scale = roundToHalf(m / -zpDefault);
        if (search && scale !== 0) {
          // Least-squares refit of the scale for the chosen levels, then re-round (twice):
          // as good as a 9-ratio clipping search at a fraction of the cost.
          for (let it = 0; it < 2; it++) {
            const inv = 1 / scale;
            let num = 0;
            let den = 0;
            for (let i = 0; i < len; i++) {
              const v = vals[i]!;
              let qi = Math.floor(v * inv + 0.5) + zp;
              qi = (qi < 0 ? 0 : qi > qmax ? qmax : qi) - zp;
              num += v * qi;
              den += qi * qi;
            }
            const ns = den > 0 ? roundToHalf(num / den) : scale;
            if (ns === 0 || !Number.isFinite(ns)) break;
            scale = ns;
          }
        }
      } else {
        let lo = 0;
        let hi = 0;
        for (let i = 0; i < len; i++) {
          const v = vals[i]!;
          if (v < lo) lo = v;
          else if (v > hi) hi = v;
        }
        scale = roundToHalf((hi - lo) / qmax);
        if (scale !== 0) {
          zp = Math.floor(-lo / scale + 0.5);
          zp = zp < 0 ? 0 : zp > qmax ? qmax : zp;
        }
      }
      scalesF16[row * kBlocks + blk] = floatToHalf(scale);
      const inv = scale === 0 ? 0 : 1 / scale;
      for (let i = 0; i < blockSize; i++) {
        if (i < len) {
          const qi = Math.floor(vals[i]! * inv + 0.5) + zp;
          q[i] = qi < 0 ? 0 : qi > qmax ? qmax : qi;
        } else {
          q[i] = zp;
        }
      }
      const off = (row * kBlocks + blk) * blob;
      if (bits === 4) {
        for (let i = 0; i < blob; i++) b[off + i] = q[2 * i]! | (q[2 * i + 1]! << 4);
      } else {
        b.set(q, off);
      }
      if (zeroPoints) {
        if (bits === 4) {
          const byte = row * zpBytesPerRow + (blk >> 1);
          zeroPoints[byte] = blk & 1 ? (zeroPoints[byte]! & 0x0f) | (zp << 4) : (zeroPoints[byte]! & 0xf0) | zp;
        } else {
          zeroPoints[row * zpBytesPerRow + blk] = zp;
        }
      }
    }
  }
  return { n, k, bits, blockSize, kBlocks, b, scalesF16, zeroPoints };
}

/** Inverse of quantizeMatrix: the [n, k] matrix the kernel effectively multiplies by. */
export function dequantizeMatrix(m: QuantizedMatrix): Float32Array {
  const { n, k, bits, blockSize, kBlocks, b, scalesF16, zeroPoints } = m;
  const blob = (blockSize * bits) / 8;
  const zpBytesPerRow = Math.ceil((kBlocks * bits) / 8);
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let blk = 0; blk < kBlocks; blk++) {
      const s = halfToFloat(scalesF16[row * kBlocks + blk]!);
      let zp = 1 << (bits - 1);
      if (zeroPoints) {
        zp = bits === 4
          ? (zeroPoints[row * zpBytesPerRow + (blk >> 1)]! >> (blk & 1 ? 4 : 0)) & 0x0f
          : zeroPoints[row * zpBytesPerRow + blk]!;
      }
      const off = (row * kBlocks + blk) * blob;
      for (let i = 0; i < blockSize; i++) {
        const kk = blk * blockSize + i;
        if (kk >= k) break;
        const qi = bits === 4 ? (b[off + (i >> 1)]! >> (i & 1 ? 4 : 0)) & 0x0f : b[off + i]!;
        out[row * k + kk] = (qi - zp) * s;
      }
    }
  }
  return out;
}

/** Concatenates row chunks of one matrix (quantized separately) into one. */
export function concatQuantizedRows(parts: QuantizedMatrix[]): QuantizedMatrix {
  const first = parts[0];
  if (!first) throw new Error('concatQuantizedRows: nothing to concatenate');
  for (const p of parts) {
    if (p.k !== first.k || p.bits !== first.bits || p.blockSize !== first.blockSize || !!p.zeroPoints !== !!first.zeroPoints) {
      throw new Error('concatQuantizedRows: parts differ in k, bits, block size or zero points');
    }
  }
  const cat = <T extends Uint8Array | Uint16Array>(arrs: T[], ctor: new (n: number) => T): T => {
    const out = new ctor(arrs.reduce((a, x) => a + x.length, 0));
    let o = 0;
    for (const a of arrs) {
      out.set(a, o);
      o += a.length;
    }
    return out;
  };
  return {
    n: parts.reduce((a, p) => a + p.n, 0),
    k: first.k,
    bits: first.bits,
    blockSize: first.blockSize,
    kBlocks: first.kBlocks,
    b: cat(parts.map((p) => p.b), Uint8Array),
    scalesF16: cat(parts.map((p) => p.scalesF16), Uint16Array),
    zeroPoints: first.zeroPoints ? cat(parts.map((p) => p.zeroPoints!), Uint8Array) : undefined,
  };
}

/** [n, k] → [k, n] (HF Linear → MatMul right-hand side). */
export function transpose(w: Float32Array, n: number, k: number): Float32Array {
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) out[c * n + r] = w[r * k + c]!;
  }
  return out;
}

export function f32Bytes(v: Float32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

export function f16Bytes(v: Float32Array): Uint8Array {
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = floatToHalf(v[i]!);
  return new Uint8Array(out.buffer);
}

/** Little-endian f16 bytes → Float32Array. */
export function f16BytesToFloat32(raw: Uint8Array): Float32Array {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Float32Array(raw.byteLength / 2);
  for (let i = 0; i < out.length; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
  return out;
}

/** Bytes per stored weight element, for size estimates (scales f16, zero points if asymmetric). */
export function bitsPerWeight(bits: QuantBits, blockSize = 32, symmetric = true): number {
  return bits + 16 / blockSize + (symmetric ? 0 : bits / blockSize);
}
