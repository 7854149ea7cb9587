// decoder.jit weights → the exact 2D single-frame form (docs/model.md#reduction-to-2d,
// docs/model.md#decoder-parameters):
//   (1,3,3) convs → 3×3 conv weights            W[:, :, 0]
//   (3,1,1) convs → 1×1 conv weights            W[:, :, 0] + W[:, :, 1] + W[:, :, 2]  (summed in fp32)
//   (1,1,1) convs → 1×1 conv weights
// Weights unused at T=1 are dropped: the temporal attention's q/k (softmax over one key is 1) and
// conv1 of upsamplers without temporal upsampling (up.2 in DV). FSQ and Haar buffers are not
// weights: the graph recomputes them.
// Optional (`fuse`): each 3×3 conv followed by its folded 1×1 becomes one 3×3 conv,
// W = W₁·W₃ per tap, b = W₁·b₃ + b₁ (exact in real arithmetic, products summed in f64; zero
// padding commutes with it). −4.9 M parameters and −7 % FLOPs for the released decoder.
import { ModelFileError } from '../base/errors.ts';
import type { NamedTensor } from '../base/model-spec.ts';
import { float32ToFloat16Bytes, numel, toFloat32, type TensorReader } from '../formats/tensor.ts';
import { describeDecoderFile, type AttentionSpec, type CosmosDecoderSpec, type ResBlockSpec } from './decoder-spec.ts';

export type WeightDType = 'f16' | 'f32';

/** How one converted tensor is made from one source tensor. */
export interface WeightPlanEntry {
  /** Converted name: the source name without `.conv3d` / the inner `.norm` module. */
  name: string;
  source: string;
  /** 'conv3x3' (1,3,3)→3×3; 'temporal' (3,1,1)→folded 1×1; 'pointwise' (1,1,1)→1×1; 'vector' as is;
   *  'fused3x3' / 'fusedBias': `source` (3×3 weight / bias) combined with the folded (3,1,1) conv in `then`. */
  kind: 'conv3x3' | 'temporal' | 'pointwise' | 'vector' | 'fused3x3' | 'fusedBias';
  /** For fused entries: the (3,1,1) conv applied after `source` (its `.conv3d` prefix). */
  then?: string;
}

export interface WeightPlanOptions {
  /** Fuse every 3×3 conv with the folded 1×1 conv after it (see the file comment). Default false. */
  fuse?: boolean;
}

/** `decoder.mid.block_1.conv1.0.conv3d.weight` → `decoder.mid.block_1.conv1.0.weight`;
 *  `decoder.mid.block_1.norm1.norm.bias` → `decoder.mid.block_1.norm1.bias`. */
export const convertedName = (source: string): string => source.replace(/\.(conv3d|norm)\.(weight|bias)$/, '.$2');

/** The converted tensors, in execution order. */
export function decoderWeightPlan(spec: CosmosDecoderSpec, options: WeightPlanOptions = {}): WeightPlanEntry[] {
  const plan: WeightPlanEntry[] = [];
  const add = (source: string, kind: WeightPlanEntry['kind']) => plan.push({ name: convertedName(source), source, kind });
  const conv = (prefix: string, kind: 'conv3x3' | 'temporal' | 'pointwise') => {
    add(`${prefix}.conv3d.weight`, kind);
    add(`${prefix}.conv3d.bias`, 'vector');
  };
  const norm = (prefix: string) => {
    add(`${prefix}.norm.weight`, 'vector');
    add(`${prefix}.norm.bias`, 'vector');
  };
  const fconv = (prefix: string) => {
    if (options.fuse) {
      const then = `${prefix}.1.conv3d`;
      plan.push({ name: convertedName(`${prefix}.0.conv3d.weight`), source: `${prefix}.0.conv3d.weight`, kind: 'fused3x3', then });
      plan.push({ name: convertedName(`${prefix}.0.conv3d.bias`), source: `${prefix}.0.conv3d.bias`, kind: 'fusedBias', then });
      return;
    }
    conv(`${prefix}.0`, 'conv3x3');
    conv(`${prefix}.1`, 'temporal');
  };
  const block = (b: ResBlockSpec) => {
    norm(`${b.prefix}.norm1`);
    fconv(`${b.prefix}.conv1`);
    norm(`${b.prefix}.norm2`);
    fconv(`${b.prefix}.conv2`);
    if (b.shortcut) conv(`${b.prefix}.nin_shortcut`, 'pointwise');
  };
  const attention = (a: AttentionSpec) => {
    norm(`${a.prefix}.0.norm`);
    for (const p of ['q', 'k', 'v', 'proj_out']) conv(`${a.prefix}.0.${p}`, 'pointwise');
    norm(`${a.prefix}.1.norm`);
    for (const p of ['v', 'proj_out']) conv(`${a.prefix}.1.${p}`, 'pointwise'); // q, k unused at T=1
  };

  conv('post_quant_conv', 'pointwise');
  fconv('decoder.conv_in');
  block(spec.mid.block1);
  attention(spec.mid.attention);
  block(spec.mid.block2);
  for (const level of spec.up) {
    level.blocks.forEach((b, i) => {
      block(b);
      if (level.attentions[i]) attention(level.attentions[i]!);
    });
    const u = level.upsample;
    if (u && (u.temporal || u.spatial)) {
      if (u.temporal) conv(`${u.prefix}.conv1`, 'temporal');
      if (u.spatial) conv(`${u.prefix}.conv2`, 'conv3x3');
      conv(`${u.prefix}.conv3`, 'pointwise');
    }
  }
  norm('decoder.norm_out');
  fconv('decoder.conv_out');
  return plan;
}

/** Shape of a converted tensor from its source shape. */
export function convertedShape(entry: WeightPlanEntry, source: readonly number[]): number[] {
  switch (entry.kind) {
    case 'vector':
    case 'fusedBias':
      return [...source];
    case 'conv3x3':
    case 'fused3x3':
      return [source[0]!, source[1]!, source[3]!, source[4]!];
    default:
      return [source[0]!, source[1]!, 1, 1];
  }
}

/** Source tensors the graph never uses (for reports and tests). */
export function unusedSourceTensors(spec: CosmosDecoderSpec, names: readonly string[]): string[] {
  const used = new Set(decoderWeightPlan(spec).map((e) => e.source));
  return names.filter((n) => !used.has(n));
}

export interface ConvertDecoderOptions extends WeightPlanOptions {
  /** Storage type of the converted weights; f16 is the bundle default. */
  dtype: WeightDType;
  /** The decoder's structure; described from the reader (`describeDecoderFile`) if absent. */
  spec?: CosmosDecoderSpec;
  signal?: AbortSignal;
}

/** Reads, folds and casts the decoder's weights one tensor at a time, in execution order. */
export async function* convertDecoderWeights(reader: TensorReader, options: ConvertDecoderOptions): AsyncIterable<NamedTensor> {
  const spec = options.spec ?? (await describeDecoderFile(reader, {}, options.signal));
  const readF32 = async (name: string) => {
    const t = await reader.read(name, options.signal);
    return { shape: t.shape, values: toFloat32(t) };
  };
  for (const entry of decoderWeightPlan(spec, options)) {
    options.signal?.throwIfAborted();
    const src = await readF32(entry.source);
    let values: Float32Array;
    if (entry.then) {
      const w1 = await readF32(`${entry.then}.weight`);
      const pointwise = foldWeight({ ...entry, source: `${entry.then}.weight`, kind: 'temporal' }, w1.shape, w1.values, reader.file);
      const [o, m] = w1.shape as [number, number];
      if (entry.kind === 'fused3x3') {
        values = fuseConvWeights(pointwise, o, m, foldWeight({ ...entry, kind: 'conv3x3' }, src.shape, src.values, reader.file));
      } else {
        values = fuseConvBias(pointwise, o, m, src.values, (await readF32(`${entry.then}.bias`)).values);
      }
    } else {
      values = foldWeight(entry, src.shape, src.values, reader.file);
    }
    const dims = convertedShape(entry, src.shape);
    yield {
      name: entry.name,
      type: options.dtype === 'f16' ? 'float16' : 'float32',
      dims,
      raw: options.dtype === 'f16' ? float32ToFloat16Bytes(values) : new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    };
  }
}

/** W[o, ·] = Σ_m W₁[o, m]·W₃[m, ·] for W₁ [O, M] (1×1) after W₃ [M, I, kh, kw]; sums in f64. */
export function fuseConvWeights(w1: Float32Array, o: number, m: number, w3: Float32Array): Float32Array {
  const k = w3.length / m;
  const out = new Float32Array(o * k);
  const acc = new Float64Array(k);
  for (let r = 0; r < o; r++) {
    acc.fill(0);
    for (let j = 0; j < m; j++) {
      const a = w1[r * m + j]!;
      if (a === 0) continue;
      const row = j * k;
      for (let c = 0; c < k; c++) acc[c]! += a * w3[row + c]!;
    }
    out.set(acc, r * k);
  }
  return out;
}

/** b = W₁·b₃ + b₁. */
export function fuseConvBias(w1: Float32Array, o: number, m: number, b3: Float32Array, b1: Float32Array): Float32Array {
  const out = new Float32Array(o);
  for (let r = 0; r < o; r++) {
    let s = b1[r]!;
    for (let j = 0; j < m; j++) s += w1[r * m + j]! * b3[j]!;
    out[r] = s;
  }
  return out;
}

/** Applies the plan entry's T=1 reduction to fp32 values of the source tensor. */
export function foldWeight(entry: WeightPlanEntry, shape: readonly number[], values: Float32Array, file = 'decoder'): Float32Array {
  if (entry.kind === 'vector') return values;
  const [o, i, kt, kh, kw] = shape as [number, number, number, number, number];
  if (shape.length !== 5) throw new ModelFileError(file, `expected a 5-D conv weight, got ${JSON.stringify(shape)}`, entry.source);
  if (entry.kind === 'conv3x3' || entry.kind === 'pointwise') {
    if (kt !== 1) throw new ModelFileError(file, `expected temporal kernel 1, got ${kt}`, entry.source);
    return values; // (O,I,1,kh,kw) and (O,I,kh,kw) have the same row-major layout
  }
  if (kh !== 1 || kw !== 1) throw new ModelFileError(file, `expected a (kT,1,1) kernel, got ${JSON.stringify(shape)}`, entry.source);
  // Replicate padding makes all kT taps see the same frame at T=1: their sum is the 1×1 weight.
  const out = new Float32Array(o * i);
  for (let k = 0; k < o * i; k++) {
    let s = 0;
    for (let t = 0; t < kt; t++) s += values[k * kt + t]!;
    out[k] = Math.fround(s);
  }
  if (numel(shape) !== values.length) throw new ModelFileError(file, 'size mismatch', entry.source);
  return out;
}

/** Converted shapes of every weight, from the source shapes (sizes can be known before reading). */
export function convertedWeightShapes(
  spec: CosmosDecoderSpec,
  sourceShapes: ReadonlyMap<string, readonly number[]>,
  options: WeightPlanOptions = {},
): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const e of decoderWeightPlan(spec, options)) {
    const s = sourceShapes.get(e.source);
    if (!s) throw new ModelFileError('decoder', 'missing tensor', e.source, 'ModelMismatch');
    out.set(e.name, convertedShape(e, s));
  }
  return out;
}
