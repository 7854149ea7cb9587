// Op plumbing for the LM graph (lm-graph.ts reads like the forward pass because the details live here):
// weight initializers in the activation dtype, linear layers (MatMulNBits or MatMul), RMSNorm,
// SiLU, the quantized embedding lookup.
import { GraphBuilder, float, type ElemType } from '../base/onnx-builder.ts';
import type { NamedTensor } from '../base/model-spec.ts';
import { ModelFileError } from '../base/errors.ts';
import { dequantizeMatrix, f16BytesToFloat32, f16Bytes, f32Bytes, type QuantBits } from './quantize.ts';

export type ActType = 'float32' | 'float16';

/**
 * How a q4/q8 table is read by row: com.microsoft GatherBlockQuantized (one kernel; ORT's CPU and
 * WebGPU EPs have it, the wasm EP of onnxruntime-web's WebGPU build does not), or 'Gather':
 * standard ONNX ops only (Gather of the packed rows and their scales, a 256-entry table that
 * turns each byte into its dequantized levels, Mul by the scales), the same values bit for bit.
 */
export type QuantizedLookup = 'GatherBlockQuantized' | 'Gather';

/**
 * How a linear layer with q4/q8 weights runs: com.microsoft MatMulNBits over the converted
 * blocks, or 'int8': the blocks dequantized and requantized to int8 per output channel when the
 * graph is built, run as DynamicQuantizeLinear (the activations to uint8, per tensor) +
 * com.microsoft MatMulIntegerToFloat. For the wasm EP of onnxruntime-web, whose MatMulNBits has
 * no fast kernel (a full-size decode step 30+ s) while its int8 GEMM does (about 30× faster:
 * tools/bench/wasm-weight-formats.ts). Not bit-exact: the weights round once more (to 1/254 of
 * each row's largest value) and the activations are quantized too.
 */
export type QuantizedLinear = 'MatMulNBits' | 'int8';

/** Looks a converted tensor up by its stable name (see convert/lm-weights.ts). */
export type WeightGetter = (name: string) => NamedTensor | undefined;

export class LmOps {
  private readonly added = new Map<string, string>();
  private consts = 0;

  constructor(
    readonly g: GraphBuilder,
    readonly act: ActType,
    private readonly get: WeightGetter,
    /** MatMulNBits accuracy_level: 0 = exact (A in its own dtype), 4 = A quantized to int8 per block (faster). */
    private readonly accuracyLevel = 0,
    /** How `embed` reads a quantized table (LmGraphOptions.quantizedLookup). */
    private readonly quantizedLookup: QuantizedLookup = 'GatherBlockQuantized',
    /** How linear layers with q4/q8 weights run (LmGraphOptions.quantizedLinear). */
    private readonly quantizedLinear: QuantizedLinear = 'MatMulNBits',
  ) {}

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  tensor(name: string): NamedTensor {
    const t = this.get(name);
    if (!t) throw new ModelFileError('converted LM weights', 'tensor missing', name, 'BundleInvalid');
    return t;
  }

  /**
   * Adds a converted tensor as an initializer (once; later calls return the same name). Float
   * tensors are converted to the activation dtype; `dims` may re-view the same bytes (e.g. scales
   * [N, k_blocks] for MatMulNBits and [N, k_blocks, 1] for GatherBlockQuantized), giving a second
   * initializer under `${name}:${dims}`.
   */
  weight(name: string, opts: { dims?: number[]; type?: ElemType } = {}): string {
    const t = this.tensor(name);
    const dims = opts.dims ?? t.dims;
    const key = opts.dims ? `${name}:${dims.join('x')}` : name;
    const existing = this.added.get(key);
    if (existing) return existing;
    let { type, raw } = t;
    const want = opts.type ?? (type === 'float32' || type === 'float16' ? this.act : type);
    if (want !== type) {
      if (type === 'float16' && want === 'float32') raw = f32Bytes(f16BytesToFloat32(raw));
      else if (type === 'float32' && want === 'float16') raw = f16Bytes(new Float32Array(raw.slice().buffer));
      else throw new Error(`weight ${name}: cannot convert ${type} to ${want}`);
      type = want;
    }
    this.g.initializer(key, { type, dims, raw });
    this.added.set(key, key);
    return key;
  }

  /** A scalar or vector constant in the activation dtype. */
  constAct(values: number[], dims: number[] = [values.length]): string {
    const f = new Float32Array(values);
    return this.g.initializer(`const.act.${this.consts++}`, {
      type: this.act,
      dims,
      raw: this.act === 'float32' ? f32Bytes(f) : f16Bytes(f),
    });
  }

  constInt32(values: number[], dims: number[] = [values.length]): string {
    return this.g.initializer(`const.i32.${this.consts++}`, {
      type: 'int32',
      dims,
      raw: new Uint8Array(new Int32Array(values).buffer),
    });
  }

  /**
   * y = x W^T (+ b) for a converted linear layer `prefix` ([N, K] in HF terms): MatMulNBits over
   * `${prefix}.q/.scales[/.zp]`, or MatMul over `${prefix}.w` stored [K, N].
   */
  linear(x: string, prefix: string, k: number, bias?: string): string {
    if (this.has(`${prefix}.q`)) {
      const q = this.tensor(`${prefix}.q`);
      const [n, , blob] = q.dims as [number, number, number];
      const bits = (blob * 8) / 32;
      if (this.quantizedLinear === 'int8') return this.linearInt8(x, prefix, k, n, bits as QuantBits, bias);
      // inputs: A, B, scales, zero_points, g_idx (unused), bias — the bias is fused in the kernel.
      const inputs = [x, this.weight(`${prefix}.q`), this.weight(`${prefix}.scales`)];
      if (this.has(`${prefix}.zp`) || bias) inputs.push(this.has(`${prefix}.zp`) ? this.weight(`${prefix}.zp`) : '');
      if (bias) inputs.push('', this.weight(bias));
      const attrs = { K: k, N: n, bits, block_size: 32, ...(this.accuracyLevel ? { accuracy_level: this.accuracyLevel } : {}) };
      return this.g.ms('MatMulNBits', inputs, attrs)[0]!;
    }
    const y = this.g.op1('MatMul', [x, this.weight(`${prefix}.w`)]);
    return bias ? this.g.op1('Add', [y, this.weight(bias)]) : y;
  }

  /**
   * QuantizedLinear 'int8': the q4/q8 weight [N, K] dequantized (in row chunks, so at most a few
   * MB of f32 at a time) and requantized symmetric per output channel to [K, N] uint8 with zero
   * point 128; y = MatMulIntegerToFloat(DynamicQuantizeLinear(x), W8) · (x_scale · w_scale[n]).
   */
  private linearInt8(x: string, prefix: string, k: number, n: number, bits: QuantBits, bias?: string): string {
    const g = this.g;
    if (this.act !== 'float32') throw new Error(`int8 linear layers take f32 activations (${prefix})`);
    const q = this.tensor(`${prefix}.q`);
    const kBlocks = q.dims[1]!;
    const blob = q.dims[2]!;
    const blockSize = (blob * 8) / bits;
    const scalesAll = new Uint16Array(this.tensor(`${prefix}.scales`).raw.slice().buffer);
    const zp = this.has(`${prefix}.zp`) ? this.tensor(`${prefix}.zp`).raw : undefined;
    const zpRow = zp ? zp.byteLength / n : 0;
    const w8 = new Uint8Array(k * n);
    const wScale = new Float32Array(n);
    const CHUNK = 256;
    for (let r0 = 0; r0 < n; r0 += CHUNK) {
      const rows = Math.min(CHUNK, n - r0);
      const w = dequantizeMatrix({
        n: rows,
        k,
        bits,
        blockSize,
        kBlocks,
        b: q.raw.subarray(r0 * kBlocks * blob, (r0 + rows) * kBlocks * blob),
        scalesF16: scalesAll.subarray(r0 * kBlocks, (r0 + rows) * kBlocks),
        ...(zp ? { zeroPoints: zp.subarray(r0 * zpRow, (r0 + rows) * zpRow) } : {}),
      });
      for (let r = 0; r < rows; r++) {
        let m = 0;
        for (let c = 0; c < k; c++) m = Math.max(m, Math.abs(w[r * k + c]!));
        const s = m / 127 || 1;
        wScale[r0 + r] = s;
        for (let c = 0; c < k; c++) w8[c * n + r0 + r] = Math.round(w[r * k + c]! / s) + 128;
      }
    }
    const [a, aScale, aZp] = g.op('DynamicQuantizeLinear', [x], {}, 3) as [string, string, string];
    const inputs = [
      a,
      g.initializer(`${prefix}.q8`, { type: 'uint8', dims: [k, n], raw: w8 }),
      aScale,
      g.initializer(`${prefix}.q8_scales`, { type: 'float32', dims: [n], raw: f32Bytes(wScale) }),
      aZp,
      g.initializer(`${prefix}.q8_zp`, { type: 'uint8', dims: [], raw: new Uint8Array([128]) }),
    ];
    if (bias) inputs.push(this.weight(bias));
    return g.ms('MatMulIntegerToFloat', inputs)[0]!;
  }

  rmsNorm(x: string, w: string, eps: number): string {
    return this.g.op1('SimplifiedLayerNormalization', [x, this.weight(w)], { axis: -1, epsilon: float(eps), stash_type: 1 });
  }

  /** RMSNorm(x + skip) and the sum (the new residual stream). */
  skipRmsNorm(x: string, skip: string, w: string, eps: number): { normed: string; sum: string } {
    const [normed, , , sum] = this.g.ms('SkipSimplifiedLayerNormalization', [x, skip, this.weight(w)], { epsilon: float(eps) }, 4);
    return { normed: normed!, sum: sum! };
  }

  /**
   * silu(a) * b. SiLU is com.microsoft QuickGelu with alpha = 1 (x·sigmoid(1·x)): one kernel
   * instead of Sigmoid + Mul (ORT's CPU optimizer fuses that pair into exactly this op anyway).
   */
  siluMul(a: string, b: string): string {
    const g = this.g;
    return g.op1('Mul', [g.ms('QuickGelu', [a], { alpha: float(1) })[0]!, b]);
  }

  /**
   * Embedding lookup from a converted table `prefix` for int32 `indices` [B, S]:
   * GatherBlockQuantized over `${prefix}.q/.scales` (rank 2 [rows, H*bits/8] or the rank-3
   * MatMulNBits layout [rows, k_blocks, blob], symmetric), or Gather over `${prefix}.w`.
   * Returns [B, S, H] in the activation dtype. Out-of-range indices give zeros (GBQ) or garbage
   * (Gather); callers mask them.
   */
  embed(indices: string, prefix: string, hidden: number): string {
    const g = this.g;
    if (!this.has(`${prefix}.q`)) return g.op1('Gather', [this.weight(`${prefix}.w`), indices], { axis: 0 });
    const q = this.tensor(`${prefix}.q`);
    const rank3 = q.dims.length === 3;
    const bits = rank3 ? (q.dims[2]! * 8) / 32 : (q.dims[1]! * 8) / hidden;
    const rows = q.dims[0]!;
    if (this.quantizedLookup === 'Gather') return this.embedByGather(indices, prefix, hidden, bits);
    const scales = rank3 ? this.weight(`${prefix}.scales`, { dims: [rows, q.dims[1]!, 1] }) : this.weight(`${prefix}.scales`);
    const out = g.ms('GatherBlockQuantized', [this.weight(`${prefix}.q`), indices, scales], {
      bits,
      block_size: 32,
      gather_axis: 0,
      quantize_axis: rank3 ? 2 : 1,
    })[0]!;
    if (!rank3) return out;
    // [B, S, k_blocks, 32] → [B, S, H]
    return g.op1('Reshape', [out, g.constInt64([0, 0, hidden])]);
  }

  /**
   * GatherBlockQuantized's lookup in standard ops, for runtimes without it. The packed rows
   * [B, S, H*bits/8] (either layout: the bytes of a row are the same) become int32 indices into a
   * table holding each byte's levels minus the implicit zero point 2^(bits-1) (4-bit: [256, 2],
   * low nibble first, the order quantize.ts packs; 8-bit: [256]); those small integers are exact
   * in f16 and f32, so the product with the row's block scales is rounded once, as in GBQ.
   */
  private embedByGather(indices: string, prefix: string, hidden: number, bits: number): string {
    const g = this.g;
    const kBlocks = hidden / 32;
    const packed = g.op1('Gather', [this.weight(`${prefix}.q`), indices], { axis: 0 });
    const zp = 1 << (bits - 1);
    const levels = bits === 4
      ? Array.from({ length: 512 }, (_, i) => ((i & 1 ? (i >> 1) >> 4 : (i >> 1) & 15) - zp))
      : Array.from({ length: 256 }, (_, i) => i - zp);
    const table = this.constAct(levels, bits === 4 ? [256, 2] : [256]);
    const values = g.op1('Gather', [table, g.op1('Cast', [packed], { to: 6 /* int32 */ })], { axis: 0 });
    const blocks = g.op1('Reshape', [values, g.constInt64([0, 0, kBlocks, 32])]);
    // scales [rows, k_blocks] → this token's [B, S, k_blocks, 1]
    const scales = g.op1('Unsqueeze', [g.op1('Gather', [this.weight(`${prefix}.scales`), indices], { axis: 0 }), g.constInt64([3])]);
    return g.op1('Reshape', [g.op1('Mul', [blocks, scales]), g.constInt64([0, 0, hidden])]);
  }
}
