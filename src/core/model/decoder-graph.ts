// The Cosmos DV decoder as ONE ONNX graph, in its exact 2D single-frame form (docs/model.md#decoder):
//
//   codes int64 [h, w]            visual codes 0..63999 (clamped), row-major latent grid
//   → FSQ inverse                 6 digits by integer division, (d − ⌊L/2⌋)/⌊L/2⌋        6×h×w
//   → post_quant_conv             1×1, 6→16                                              16×h×w
//   → conv_in                     3×3 16→512, folded 1×1                                512×h×w
//   → mid                         res block, spatial attention, temporal attention
//                                 (= x + proj_out(v(norm x)) at T=1), res block         512×h×w
//   → up levels 2, 1, 0           res blocks, then upsample (conv1 folded + residual if
//                                 temporal; nearest 2×, 3×3 conv2 + residual; 1×1 conv3)  256×4h×4w
//   → norm_out, swish, conv_out   3×3 256→192, folded 1×1                              192×4h×4w
//   → inverse Haar × 2            closed form (docs/model.md#inverse-haar): 192 → 24×8h×8w → 3×16h×16w
//   → bytes                       u8 = ⌊clamp((x+1)/2, 0, 1)·255 + 0.5⌋, alpha 255
//   rgba uint8 [16h, 16w, 4]      ready for an ImageData
//
// GroupNorm(1 group) is a normalization over C×H×W per image (eps 1e-6) with per-channel affine;
// its statistics are computed in fp32 in both variants.
//
// WebGPU memory (docs/model.md#decoder-memory): at 1024² (h = w = 64) the tensors after up.1's upsampler are
// 512×256×256 — 128 MiB in fp32, exactly the default maxStorageBufferBindingSize (the f16 graph
// casts each GroupNorm input to fp32 for its statistics, so it has one such tensor too). Where a
// budget is smaller, decoderStages/buildDecoderStage cut the graph at its norms so that
// decoder-runner.ts can run it in bands of rows.
import { GraphBuilder, float, type ElemType, type ExternalDataFile } from '../base/onnx-builder.ts';
import type { NamedTensor } from '../base/model-spec.ts';
import { ModelFileError } from '../base/errors.ts';
import { float32ToFloat16Bytes, halfToFloat } from '../formats/tensor.ts';
import type { AttentionSpec, CosmosDecoderSpec, ResBlockSpec, UpsampleSpec } from './decoder-spec.ts';
import { decoderWeightPlan } from './decoder-weights.ts';

export type ActivationType = 'float32' | 'float16';

export interface DecoderGraphOptions {
  /** 'float16' on adapters with shader-f16 (weights and activations f16, statistics f32). */
  activations: ActivationType;
  /** Input `codes` as [h, w] (default) or [1, h, w]. */
  codesRank?: 2 | 3;
  /** Also output `image` float32 [3, H, W]: the decoder output before the byte mapping. */
  floatImage?: boolean;
  /**
   * Also output `activation_check` float32 [2·K]: for each of K points (every GroupNorm's input,
   * then the image before the byte mapping), the largest |x| and the mean of x², in fp32. A
   * non-finite value there, or a peak near f16's range, means the f16 decode cannot be trusted
   * (checkActivations). Default: on with f16 activations.
   */
  checks?: boolean;
  /** Initializers of at least this many bytes go to external data (DecoderGraph.externalData). */
  externalData?: number;
}

export const DECODER_INPUT = 'codes';
export const DECODER_OUTPUT = 'rgba';
export const DECODER_FLOAT_OUTPUT = 'image';
export const DECODER_CHECK_OUTPUT = 'activation_check';

/** The largest finite f16 value. */
export const F16_MAX = 65504;
/**
 * A checked activation whose |x| reaches this is treated as overflowing: within 4× of f16's range
 * a conv or residual sum downstream can pass 65504, and WGSL leaves f16 overflow undefined (it
 * need not give an infinity the later checks would see).
 */
export const F16_SAFE_PEAK = F16_MAX / 4;

export interface DecoderGraph {
  model: Uint8Array;
  /** With DecoderGraphOptions.externalData: the weights, which `model` refers to by file name. */
  externalData?: ExternalDataFile[];
  /** What each pair of `activation_check` values measures (a GroupNorm's prefix, or 'image'). */
  checks: string[];
}

export const GROUP_NORM_EPS = 1e-6;

export const STAGE_X = 'x';
export const STAGE_H = 'h';
export const STAGE_NORM_MEAN = 'norm_mean';
export const STAGE_NORM_INV_STD = 'norm_inv_std';
export const STAGE_OUTPUT = 'y';

/**
 * The decoder cut at its GroupNorms, for decoding in bands of rows (decoder-runner.ts): each stage
 * after the head runs from one norm to the input of the next, so a band needs only its own rows
 * plus a margin, given the norm's statistics over the whole input. The released decoder has no
 * attention after the mid block; one there would need the whole image, so such a decoder has no
 * stages (undefined).
 */
export type DecoderStage =
  /** codes → features after the mid block (latent resolution, run whole). */
  | { kind: 'head' }
  /** x → conv1(swish(norm1 x)). */
  | { kind: 'norm1'; block: ResBlockSpec }
  /** x, h → skip(x) + conv2(swish(norm2 h)), then the level's upsampler after its last block. */
  | { kind: 'norm2'; block: ResBlockSpec; upsample: UpsampleSpec | null }
  /** x → rgba bytes (norm_out, conv_out, inverse Haar). */
  | { kind: 'pixels' };

export function decoderStages(spec: CosmosDecoderSpec): DecoderStage[] | undefined {
  if (spec.up.some((l) => l.attentions.some(Boolean))) return undefined;
  const stages: DecoderStage[] = [{ kind: 'head' }];
  for (const level of spec.up) {
    level.blocks.forEach((block, i) => {
      const last = i === level.blocks.length - 1;
      stages.push({ kind: 'norm1', block }, { kind: 'norm2', block, upsample: last ? level.upsample : null });
    });
  }
  stages.push({ kind: 'pixels' });
  return stages;
}

/** One stage's graph (fp32 inputs `x` [and `h`], `norm_mean`, `norm_inv_std`; output `y` or `rgba`). */
export function buildDecoderStage(
  spec: CosmosDecoderSpec,
  weights: ReadonlyMap<string, NamedTensor>,
  stage: DecoderStage,
  options: DecoderGraphOptions,
): DecoderGraph {
  return new DecoderGraphBuilder(spec, weights, options).buildStage(stage);
}

/** Builds the decoder graph with the converted weights (any float type) embedded as initializers. */
export function buildDecoderGraph(
  spec: CosmosDecoderSpec,
  weights: Iterable<NamedTensor> | ReadonlyMap<string, NamedTensor>,
  options: DecoderGraphOptions,
): Uint8Array {
  const byName = weights instanceof Map ? (weights as ReadonlyMap<string, NamedTensor>) : new Map([...(weights as Iterable<NamedTensor>)].map((w) => [w.name, w]));
  return buildDecoder(spec, weights, options).model;
}

/** buildDecoderGraph, with the names of the `activation_check` points when checks are on. */
export function buildDecoder(
  spec: CosmosDecoderSpec,
  weights: Iterable<NamedTensor> | ReadonlyMap<string, NamedTensor>,
  options: DecoderGraphOptions,
): DecoderGraph {
  const byName = weights instanceof Map ? (weights as ReadonlyMap<string, NamedTensor>) : new Map([...(weights as Iterable<NamedTensor>)].map((w) => [w.name, w]));
  return new DecoderGraphBuilder(spec, byName, options).build();
}

/**
 * Reads an `activation_check` output: why the decode cannot be trusted (a non-finite value, or a
 * peak of F16_SAFE_PEAK or more, naming the first point), or undefined when every point is fine.
 */
export function checkActivations(values: ArrayLike<number>, checks: readonly string[]): string | undefined {
  for (let i = 0; i < checks.length; i++) {
    const peak = values[2 * i]!;
    const meanSquare = values[2 * i + 1]!;
    if (!Number.isFinite(peak) || !Number.isFinite(meanSquare)) return `non-finite activations at ${checks[i]}`;
    if (peak >= F16_SAFE_PEAK) return `activations reach ${peak.toPrecision(3)} at ${checks[i]} (f16 overflows past ${F16_MAX})`;
  }
  return undefined;
}

class DecoderGraphBuilder {
  private readonly g = new GraphBuilder('cosmos_dv_decoder');
  private readonly act: ActivationType;
  private readonly added = new Set<string>();
  private readonly fused: boolean;
  private readonly checks: { name: string; peak: string; meanSquare: string }[] = [];
  private readonly checking: boolean;
  /** In a stage graph: the norm's statistics are inputs (there is one norm per stage). */
  private normStats: { mean: string; invStd: string } | undefined;

  constructor(
    private readonly spec: CosmosDecoderSpec,
    private readonly weights: ReadonlyMap<string, NamedTensor>,
    private readonly options: DecoderGraphOptions,
  ) {
    this.act = options.activations;
    this.checking = options.checks ?? this.act === 'float16';
    // Fail early, naming the first weight that is missing or mis-shaped. Fused weights (no
    // `decoder.conv_in.1.weight`) have each 3×3 conv and its 1×1 conv in one.
    this.fused = !weights.has('decoder.conv_in.1.weight');
    for (const e of decoderWeightPlan(spec, { fuse: this.fused })) {
      const w = weights.get(e.name);
      if (!w) throw new ModelFileError('decoder weights', 'missing converted weight', e.name, 'BundleInvalid');
      if (e.kind !== 'vector' && e.kind !== 'fusedBias' && w.dims.length !== 4) {
        throw new ModelFileError('decoder weights', `expected a 4-D conv weight, got ${JSON.stringify(w.dims)}`, e.name, 'BundleInvalid');
      }
    }
  }

  build(): DecoderGraph {
    let x = this.head();
    for (const level of this.spec.up) {
      level.blocks.forEach((block, i) => {
        x = this.resBlock(x, block);
        if (level.attentions[i]) x = this.attention(x, level.attentions[i]!);
      });
      if (level.upsample) x = this.upsample(x, level.upsample);
    }
    this.pixels(x);
    return this.finish();
  }

  /**
   * One stage of the tiled decode: the graph from one GroupNorm to the next, on a band of rows
   * (fp32 in and out; the norm's mean and 1/std over the WHOLE input are inputs, measured by the
   * runner across all bands). 'head' is the whole latent-resolution part.
   */
  buildStage(stage: DecoderStage): DecoderGraph {
    const { g } = this;
    const input = (name: string, channels: number) => {
      const x = g.input(name, 'float32', [1, channels, 'rows', 'cols']);
      return this.act === 'float16' ? g.op1('Cast', [x], { to: 10 }) : x;
    };
    const output = (y: string, channels: number) => {
      g.op('Identity', [this.f32(y)], {}, [STAGE_OUTPUT]);
      g.output(STAGE_OUTPUT, 'float32', [1, channels, 'out_rows', 'out_cols']);
    };
    if (stage.kind === 'head') {
      output(this.head(), this.spec.mid.block2.outChannels);
      return this.finish();
    }
    const mean = g.input(STAGE_NORM_MEAN, 'float32', []);
    const invStd = g.input(STAGE_NORM_INV_STD, 'float32', []);
    this.normStats = { mean, invStd };
    if (stage.kind === 'norm1') {
      const b = stage.block;
      output(this.fconv(this.swish(this.groupNorm(input(STAGE_X, b.inChannels), `${b.prefix}.norm1`, b.inChannels)), `${b.prefix}.conv1`), b.outChannels);
    } else if (stage.kind === 'norm2') {
      const b = stage.block;
      let y = this.resBlockEnd(input(STAGE_X, b.inChannels), input(STAGE_H, b.outChannels), b);
      if (stage.upsample) y = this.upsample(y, stage.upsample);
      output(y, b.outChannels);
    } else {
      this.pixels(input(STAGE_X, this.spec.finalChannels));
    }
    return this.finish();
  }

  /** codes → the latent-resolution features after the mid block: [1, 512, h, w]. */
  private head(): string {
    const { g, spec } = this;
    const rank = this.options.codesRank ?? 2;
    const codesIn = g.input(DECODER_INPUT, 'int64', rank === 3 ? [1, 'h', 'w'] : ['h', 'w']);
    const codes = rank === 3 ? g.op1('Squeeze', [codesIn, g.constInt64([0])]) : codesIn;

    let x = this.fsqInverse(codes); //                                   [1, 6, h, w]
    x = this.conv(x, 'post_quant_conv'); //                              [1, 16, h, w]
    x = this.fconv(x, 'decoder.conv_in'); //                            [1, 512, h, w]

    x = this.resBlock(x, spec.mid.block1);
    x = this.attention(x, spec.mid.attention);
    return this.resBlock(x, spec.mid.block2);
  }

  /** norm_out, swish, conv_out, inverse Haar, bytes: the `rgba` output (and `image`). */
  private pixels(features: string): void {
    const { g, spec } = this;
    let x = this.swish(this.groupNorm(features, 'decoder.norm_out', spec.finalChannels));
    x = this.fconv(x, 'decoder.conv_out'); //                            [1, 192, 4h, 4w]

    let image = this.act === 'float16' ? g.op1('Cast', [x], { to: 1 }) : x; // fp32 from here on
    let channels = spec.outChannels;
    for (let l = 0; l < spec.haarLevels; l++) {
      image = this.inverseHaar(image, channels);
      channels /= 8;
    } //                                                                 [1, 3, 16h, 16w]

    if (this.checking) this.check('image', image);
    if (this.options.floatImage) {
      g.op('Squeeze', [image, g.constInt64([0])], {}, [DECODER_FLOAT_OUTPUT]);
      g.output(DECODER_FLOAT_OUTPUT, 'float32', [spec.imageChannels, 'H', 'W']);
    }
    this.toRgbaBytes(image);
    g.output(DECODER_OUTPUT, 'uint8', ['H', 'W', 4]);
  }

  private finish(): DecoderGraph {
    const { g } = this;
    if (this.checking && this.checks.length) {
      const one = g.constInt64([0]);
      const parts = this.checks.flatMap((c) => [g.op1('Unsqueeze', [c.peak, one]), g.op1('Unsqueeze', [c.meanSquare, one])]);
      g.op('Concat', parts, { axis: 0 }, [DECODER_CHECK_OUTPUT]);
      g.output(DECODER_CHECK_OUTPUT, 'float32', [2 * this.checks.length]);
    }
    const checks = this.checks.map((c) => c.name);
    if (this.options.externalData === undefined) return { model: g.toBytes(), checks };
    return { ...g.toModelWithExternalData(this.options.externalData), checks };
  }

  /**
   * Records an fp32 tensor's largest |x| (max of its max and −min: two reductions, no |x| tensor)
   * and mean square (NaN-propagating: the max alone may skip NaNs) as a check point.
   */
  private check(name: string, x: string, meanSquare?: string): void {
    const g = this.g;
    const peak = g.op1('Max', [g.op1('ReduceMax', [x], { keepdims: 0 }), g.op1('Neg', [g.op1('ReduceMin', [x], { keepdims: 0 })])]);
    this.checks.push({ name, peak, meanSquare: meanSquare ?? g.op1('ReduceMean', [g.op1('Mul', [x, x])], { keepdims: 0 }) });
  }

  // ---- weights ---------------------------------------------------------------------------

  /** The converted weight `name` as an initializer of the activation type. */
  private weight(name: string): string {
    if (this.added.has(name)) return name;
    const w = this.weights.get(name);
    if (!w) throw new ModelFileError('decoder weights', 'missing converted weight', name, 'BundleInvalid');
    this.g.initializer(name, { type: this.act, dims: w.dims, raw: castFloatBytes(w, this.act) });
    this.added.add(name);
    return name;
  }

  private constAct(values: number[], dims: number[] = [values.length]): string {
    if (this.act === 'float32') return this.g.constFloat32(values, dims);
    return this.g.constTensor('c_f16', { type: 'float16', dims, raw: float32ToFloat16Bytes(Float32Array.from(values)) });
  }

  // ---- building blocks -------------------------------------------------------------------

  /** A converted conv (`prefix.weight` [O, I, k, k], `prefix.bias`), zero padding k/2. */
  private conv(x: string, prefix: string): string {
    const w = this.weight(`${prefix}.weight`);
    const k = this.weights.get(w)!.dims[2]!;
    const pad = (k - 1) / 2;
    return this.g.op1('Conv', [x, w, this.weight(`${prefix}.bias`)], { kernel_shape: [k, k], pads: [pad, pad, pad, pad] });
  }

  /** A (1,3,3)+(3,1,1) conv pair at T=1 (docs/model.md#reduction-to-2d): 3×3 conv then the folded 1×1 conv (one 3×3 conv when fused). */
  private fconv(x: string, prefix: string): string {
    const h = this.conv(x, `${prefix}.0`);
    return this.fused ? h : this.conv(h, `${prefix}.1`);
  }

  /** x·sigmoid(x). */
  private swish(x: string): string {
    return this.g.op1('Mul', [x, this.g.op1('Sigmoid', [x])]);
  }

  /**
   * GroupNorm with one group (docs/model.md#decoder-blocks): y = (x − mean_CHW)/√(var_CHW + 1e-6)·γ_c + β_c.
   * Statistics in fp32, per channel first (parallel over C, and no cross-channel cancellation):
   * var = mean_c(var_c) + mean_c((mean_c − mean)²). Applied as one per-channel affine pass
   * (BatchNormalization with mean 0, var 1, eps 0 computes exactly x·scale + shift).
   */
  private groupNorm(x: string, prefix: string, channels: number): string {
    const g = this.g;
    if (this.normStats) return this.affineNorm(x, prefix, channels, this.normStats.mean, this.normStats.invStd);
    const xf = this.act === 'float16' ? g.op1('Cast', [x], { to: 1 }) : x;
    const rows = g.op1('Reshape', [xf, g.constInt64([channels, -1])]); //   [C, HW]
    const axis1 = g.constInt64([1]);
    const meanC = g.op1('ReduceMean', [rows, axis1], { keepdims: 1 }); //   [C, 1]
    const sumSqC = g.op1('ReduceSumSquare', [rows, axis1], { keepdims: 1 });
    const count = g.op1('Cast', [g.op1('Gather', [g.op1('Shape', [rows]), g.constInt64([1], [])], { axis: 0 })], { to: 1 });
    const meanSqC = g.op1('Div', [sumSqC, count]);
    const varC = g.op1('Sub', [meanSqC, g.op1('Mul', [meanC, meanC])]);
    if (this.checking) this.check(prefix, rows, g.op1('ReduceMean', [meanSqC], { keepdims: 0 }));
    const all = g.constInt64([0, 1]);
    const mean = g.op1('ReduceMean', [meanC, all], { keepdims: 0 }); //      scalar
    const dev = g.op1('Sub', [meanC, mean]);
    const variance = g.op1('Add', [
      g.op1('ReduceMean', [varC, all], { keepdims: 0 }),
      g.op1('ReduceMean', [g.op1('Mul', [dev, dev]), all], { keepdims: 0 }),
    ]);
    const invStd = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [variance, g.constFloat32([GROUP_NORM_EPS], [])])])]);
    return this.affineNorm(x, prefix, channels, mean, invStd);
  }

  /** The norm as one per-channel affine pass, given the fp32 scalars mean and 1/√(var + eps). */
  private affineNorm(x: string, prefix: string, channels: number, mean: string, invStd: string): string {
    const g = this.g;
    const gamma = this.f32(this.weight(`${prefix}.weight`));
    const beta = this.f32(this.weight(`${prefix}.bias`));
    const scale = g.op1('Mul', [gamma, invStd]); //                          [C]
    const shift = g.op1('Sub', [beta, g.op1('Mul', [mean, scale])]);
    const zeros = this.constAct(new Array<number>(channels).fill(0));
    const ones = this.constAct(new Array<number>(channels).fill(1));
    return g.op1('BatchNormalization', [x, this.toAct(scale), this.toAct(shift), zeros, ones], { epsilon: float(0) });
  }

  private f32(x: string): string {
    return this.act === 'float32' ? x : this.g.op1('Cast', [x], { to: 1 });
  }

  private toAct(x: string): string {
    return this.act === 'float32' ? x : this.g.op1('Cast', [x], { to: 10 });
  }

  /** CausalResnetBlockFactorized3d at T=1: x' + conv2(swish(norm2(conv1(swish(norm1 x))))). */
  private resBlock(x: string, b: ResBlockSpec): string {
    const h = this.fconv(this.swish(this.groupNorm(x, `${b.prefix}.norm1`, b.inChannels)), `${b.prefix}.conv1`);
    return this.resBlockEnd(x, h, b);
  }

  /** The res block from its second norm on: x' + conv2(swish(norm2 h)). */
  private resBlockEnd(x: string, conv1Out: string, b: ResBlockSpec): string {
    let h = this.swish(this.groupNorm(conv1Out, `${b.prefix}.norm2`, b.outChannels));
    h = this.fconv(h, `${b.prefix}.conv2`);
    const skip = b.shortcut ? this.conv(x, `${b.prefix}.nin_shortcut`) : x;
    return this.g.op1('Add', [skip, h]);
  }

  /** Spatial attention (one head, d = C, HW tokens) then temporal attention reduced to T=1. */
  private attention(x: string, a: AttentionSpec): string {
    const g = this.g;
    const c = a.channels;
    // CausalAttnBlock: x + proj_out(V·softmax(QᵀK/√C)ᵀ).
    const h = this.groupNorm(x, `${a.prefix}.0.norm`, c);
    const rows = (t: string) => g.op1('Reshape', [t, g.constInt64([c, -1])]); // [C, HW]
    const q = rows(this.conv(h, `${a.prefix}.0.q`));
    const k = rows(this.conv(h, `${a.prefix}.0.k`));
    const v = rows(this.conv(h, `${a.prefix}.0.v`));
    let scores = g.op1('Gemm', [q, k], { transA: 1, alpha: float(c ** -0.5) }); // [HW, HW]
    scores = this.f32(scores); // fp32 softmax in the f16 variant
    const probs = this.toAct(g.op1('Softmax', [scores], { axis: -1 }));
    const attended = g.op1('Gemm', [v, probs], { transB: 1 }); //                [C, HW]
    const back = g.op1('Reshape', [attended, g.op1('Shape', [x])]);
    let y = g.op1('Add', [x, this.conv(back, `${a.prefix}.0.proj_out`)]);
    // CausalTemporalAttnBlock: one frame attends to itself only (softmax of one score = 1).
    const t = this.conv(this.groupNorm(y, `${a.prefix}.1.norm`, c), `${a.prefix}.1.v`);
    y = g.op1('Add', [y, this.conv(t, `${a.prefix}.1.proj_out`)]);
    return y;
  }

  /** CausalHybridUpsample3d at T=1 (docs/model.md#decoder-blocks). */
  private upsample(x: string, u: UpsampleSpec): string {
    const g = this.g;
    if (!u.temporal && !u.spatial) return x;
    let y = x;
    if (u.temporal) y = g.op1('Add', [this.conv(y, `${u.prefix}.conv1`), y]); // time factor 1 at T=1
    if (u.spatial) {
      y = g.op1('Resize', [y, '', g.constFloat32([1, 1, 2, 2])], {
        mode: 'nearest',
        coordinate_transformation_mode: 'asymmetric',
        nearest_mode: 'floor',
      });
      y = g.op1('Add', [this.conv(y, `${u.prefix}.conv2`), y]);
    }
    return this.conv(y, `${u.prefix}.conv3`);
  }

  /**
   * FSQ inverse (docs/model.md#fsq-inverse): digit_i = ⌊n / basis_i⌋ mod L_i, code_i = (digit_i − ⌊L_i/2⌋) / ⌊L_i/2⌋,
   * in int32 arithmetic (exact; the mod as a − ⌊a/L⌋·L). Channel 0 is the least significant digit.
   */
  private fsqInverse(codes: string): string {
    const g = this.g;
    const { levels, codebookSize } = this.spec.fsq;
    const basis = levels.map((_, i) => levels.slice(0, i).reduce((a, b) => a * b, 1));
    const int32 = (values: number[], dims = [values.length]) =>
      g.constTensor('c_i32', { type: 'int32', dims, raw: new Uint8Array(Int32Array.from(values).buffer) });
    let n = g.op1('Cast', [codes], { to: 6 }); //                        int32 [h, w]
    n = g.op1('Clip', [n, int32([0], []), int32([codebookSize - 1], [])]);
    n = g.op1('Unsqueeze', [n, g.constInt64([2])]); //                   [h, w, 1]
    const above = g.op1('Div', [n, int32(basis)]); //                    ⌊n / basis_i⌋
    const higher = g.op1('Div', [n, int32(basis.map((b, i) => b * levels[i]!))]);
    const digit = g.op1('Sub', [above, g.op1('Mul', [higher, int32(levels)])]); // [h, w, 6]
    const half = levels.map((l) => Math.floor(l / 2));
    const codeValues = g.op1('Mul', [
      g.op1('Sub', [g.op1('Cast', [digit], { to: elemCode(this.act) }), this.constAct(half)]),
      this.constAct(half.map((h) => 1 / h)),
    ]);
    return g.op1('Unsqueeze', [g.op1('Transpose', [codeValues], { perm: [2, 0, 1] }), g.constInt64([0])]); // [1, 6, h, w]
  }

  /**
   * One inverse Haar level in closed form (docs/model.md#inverse-haar): with g = C/8 and channel groups
   * [lll, llh, lhl, lhh, hll, hlh, hhl, hhh], Z_k = X_k − X_{k+4} = (LL, LH, HL, HH) and
   *   Y[2i+a, 2j+b] = LL + (−1)^b·LH + (−1)^a·HL + (−1)^(a+b)·HH.
   * As a ±1 1×1 conv (8g → 4g, output channel (2a+b)·g + c) then DepthToSpace (DCR, block 2).
   */
  private inverseHaar(x: string, channels: number): string {
    const g = this.g;
    const group = channels / 8;
    const w = new Float32Array(4 * group * channels);
    for (let a = 0; a < 2; a++) {
      for (let b = 0; b < 2; b++) {
        const sign = [1, b ? -1 : 1, a ? -1 : 1, a === b ? 1 : -1]; // LL, LH (W-high), HL (H-high), HH
        for (let c = 0; c < group; c++) {
          const o = (2 * a + b) * group + c;
          for (let k = 0; k < 4; k++) {
            w[o * channels + k * group + c] = sign[k]!;
            w[o * channels + (k + 4) * group + c] = -sign[k]!;
          }
        }
      }
    }
    const name = g.constTensor('haar_synthesis', { type: 'float32', dims: [4 * group, channels, 1, 1], raw: new Uint8Array(w.buffer) });
    const mixed = g.op1('Conv', [x, name], { kernel_shape: [1, 1] });
    return g.op1('DepthToSpace', [mixed], { blocksize: 2, mode: 'DCR' });
  }

  /** [1, 3, H, W] float → `rgba` uint8 [H, W, 4] (docs/model.md#pixels, alpha 255). */
  private toRgbaBytes(image: string): void {
    const g = this.g;
    const c = (v: number) => g.constFloat32([v], []);
    let y = g.op1('Mul', [g.op1('Add', [image, c(1)]), c(0.5)]);
    y = g.op1('Clip', [y, c(0), c(1)]);
    y = g.op1('Floor', [g.op1('Add', [g.op1('Mul', [y, c(255)]), c(0.5)])]);
    y = g.op1('Pad', [y, g.constInt64([0, 0, 0, 0, 0, 1, 0, 0]), c(255)], { mode: 'constant' }); // [1, 4, H, W]
    y = g.op1('Transpose', [y], { perm: [0, 2, 3, 1] }); //               [1, H, W, 4]
    y = g.op1('Cast', [y], { to: 2 }); //                                 uint8
    g.op('Squeeze', [y, g.constInt64([0])], {}, [DECODER_OUTPUT]);
  }
}

const elemCode = (t: ActivationType) => (t === 'float16' ? 10 : 1);

/** A NamedTensor's values as raw bytes of `to` (f16 ⇄ f32; bf16 sources widen exactly). */
function castFloatBytes(w: NamedTensor, to: ElemType): Uint8Array {
  if (w.type === to) return w.raw;
  const n = w.dims.reduce((a, b) => a * b, 1);
  const view = new DataView(w.raw.buffer, w.raw.byteOffset, w.raw.byteLength);
  const f = new Float32Array(n);
  if (w.type === 'float16') for (let i = 0; i < n; i++) f[i] = halfToFloat(view.getUint16(i * 2, true));
  else if (w.type === 'float32') for (let i = 0; i < n; i++) f[i] = view.getFloat32(i * 4, true);
  else throw new ModelFileError('decoder weights', `unsupported weight type ${w.type}`, w.name, 'BundleInvalid');
  if (to === 'float32') return new Uint8Array(f.buffer);
  if (to === 'float16') return float32ToFloat16Bytes(f);
  throw new ModelFileError('decoder weights', `cannot store weights as ${to}`, w.name, 'BundleInvalid');
}
