// The Cosmos DV decoder's structure, read from its tensor names and shapes (docs/model.md#decoder-structure,
// docs/model.md#decoder-parameters):
// widths, number of levels and res blocks, which attention blocks exist. Only what tensors
// cannot tell (the compression factors that decide which upsamplers are temporal, the FSQ
// levels behind the 6-dim codes) comes from the known DV configuration, and is checked.
import { ModelFileError } from '../base/errors.ts';
import type { TensorReader } from '../formats/tensor.ts';
import type { TorchScriptReader } from '../formats/torchscript/index.ts';

export interface ShapeInfo {
  name: string;
  shape: readonly number[];
}

export interface ResBlockSpec {
  /** Source prefix, e.g. `decoder.up.0.block.0`. */
  prefix: string;
  inChannels: number;
  outChannels: number;
  /** A 1×1 `nin_shortcut` conv (in ≠ out); identity otherwise. */
  shortcut: boolean;
}

/** `nn.Sequential(CausalAttnBlock, CausalTemporalAttnBlock)` at `prefix` (`.0` spatial, `.1` temporal). */
export interface AttentionSpec {
  prefix: string;
  channels: number;
}

export interface UpsampleSpec {
  prefix: string;
  channels: number;
  /** conv1 (temporal (3,1,1), folded to 1×1 at T=1) + residual: used only when true. */
  temporal: boolean;
  /** nearest 2× then conv2 (3×3) + residual. */
  spatial: boolean;
}

export interface UpLevelSpec {
  /** `decoder.up.<index>`; levels run from the highest index down to 0. */
  index: number;
  blocks: ResBlockSpec[];
  /** One attention pair after each block, or none (the released decoder has none). */
  attentions: AttentionSpec[];
  upsample: UpsampleSpec | null;
}

export interface CosmosDecoderSpec {
  fsq: { levels: number[]; embeddingDim: number; codebookSize: number };
  /** post_quant_conv output channels (z_channels, 16). */
  zChannels: number;
  /** conv_in output channels (block_in, 512 released). */
  latentChannels: number;
  mid: { block1: ResBlockSpec; attention: AttentionSpec; block2: ResBlockSpec };
  /** In execution order (index n-1 … 0). */
  up: UpLevelSpec[];
  /** norm_out / conv_out input channels (256 released). */
  finalChannels: number;
  /** conv_out output channels = imageChannels · patch³ (192). */
  outChannels: number;
  imageChannels: number;
  /** Inverse Haar levels (log2 patch size, 2). */
  haarLevels: number;
  /** Output pixels per latent cell along each axis (16 for DV8x16x16). */
  upscale: number;
}

export interface DescribeOptions {
  /** Cosmos config values that tensor shapes cannot show; the DV defaults of docs/model.md#decoder-configuration. */
  spatialCompression?: number;
  temporalCompression?: number;
  legacyMode?: boolean;
  imageChannels?: number;
  /** FSQ levels; by default the known config for the code dimension (6 → [8,8,8,5,5,5]). */
  fsqLevels?: number[];
  /** File name for error messages. */
  file?: string;
}

/** FSQ configurations of the released Cosmos discrete tokenizers, by code dimension. */
export const KNOWN_FSQ_LEVELS: Record<number, number[]> = { 6: [8, 8, 8, 5, 5, 5] };

const log2Int = (n: number): number | null => {
  const l = Math.round(Math.log2(n));
  return 2 ** l === n ? l : null;
};

export function describeCosmosDecoder(tensors: readonly ShapeInfo[], options: DescribeOptions = {}): CosmosDecoderSpec {
  const file = options.file ?? 'decoder';
  const shapes = new Map(tensors.map((t) => [t.name, t.shape]));
  const fail = (problem: string, tensor?: string): never => {
    throw new ModelFileError(file, `not a Cosmos DV decoder: ${problem}`, tensor, 'ModelMismatch');
  };

  /** [out, in] of a conv, checking its kernel (kT, kH, kW) and its bias. */
  const conv = (prefix: string, kernel: [number, number, number]): [number, number] => {
    const w = `${prefix}.conv3d.weight`;
    const s = shapes.get(w) ?? fail('missing tensor', w);
    if (s.length !== 5 || s[2] !== kernel[0] || s[3] !== kernel[1] || s[4] !== kernel[2]) {
      fail(`shape ${JSON.stringify(s)}, expected a (${kernel.join(',')}) kernel`, w);
    }
    const b = shapes.get(`${prefix}.conv3d.bias`);
    if (!b || b.length !== 1 || b[0] !== s[0]) fail('missing or mis-shaped bias', `${prefix}.conv3d.bias`);
    return [s[0]!, s[1]!];
  };
  const norm = (prefix: string, channels: number): void => {
    for (const p of ['weight', 'bias']) {
      const n = `${prefix}.norm.${p}`;
      const s = shapes.get(n) ?? fail('missing tensor', n);
      if (s.length !== 1 || s[0] !== channels) fail(`shape ${JSON.stringify(s)}, expected [${channels}]`, n);
    }
  };
  /** A (1,3,3) conv followed by a (3,1,1) conv (a 3×3 conv then a folded 1×1 at T=1, docs/model.md#reduction-to-2d); returns [out, in]. */
  const fconv = (prefix: string): [number, number] => {
    const [o, i] = conv(`${prefix}.0`, [1, 3, 3]);
    const [o2, i2] = conv(`${prefix}.1`, [3, 1, 1]);
    if (i2 !== o || o2 !== o) fail(`temporal conv is ${i2}→${o2}, expected ${o}→${o}`, `${prefix}.1.conv3d.weight`);
    return [o, i];
  };
  const resBlock = (prefix: string, inChannels: number): ResBlockSpec => {
    norm(`${prefix}.norm1`, inChannels);
    const [out, inn] = fconv(`${prefix}.conv1`);
    if (inn !== inChannels) fail(`input has ${inn} channels, expected ${inChannels}`, `${prefix}.conv1.0.conv3d.weight`);
    norm(`${prefix}.norm2`, out);
    const [out2, in2] = fconv(`${prefix}.conv2`);
    if (in2 !== out || out2 !== out) fail(`conv2 is ${in2}→${out2}, expected ${out}→${out}`, `${prefix}.conv2.0.conv3d.weight`);
    const shortcut = shapes.has(`${prefix}.nin_shortcut.conv3d.weight`);
    if (shortcut) {
      const [so, si] = conv(`${prefix}.nin_shortcut`, [1, 1, 1]);
      if (so !== out || si !== inChannels) fail(`shortcut is ${si}→${so}`, `${prefix}.nin_shortcut.conv3d.weight`);
    } else if (out !== inChannels) {
      fail(`${inChannels}→${out} block without nin_shortcut`, `${prefix}.nin_shortcut.conv3d.weight`);
    }
    return { prefix, inChannels, outChannels: out, shortcut };
  };
  const attention = (prefix: string, channels: number): AttentionSpec => {
    for (const part of ['0', '1']) {
      norm(`${prefix}.${part}.norm`, channels);
      for (const p of ['q', 'k', 'v', 'proj_out']) {
        const [o, i] = conv(`${prefix}.${part}.${p}`, [1, 1, 1]);
        if (o !== channels || i !== channels) fail(`${i}→${o}, expected ${channels}→${channels}`, `${prefix}.${part}.${p}.conv3d.weight`);
      }
    }
    return { prefix, channels };
  };

  // Codes → latent.
  const [zChannels, embeddingDim] = conv('post_quant_conv', [1, 1, 1]);
  const levels = options.fsqLevels ?? KNOWN_FSQ_LEVELS[embeddingDim] ?? fail(`no known FSQ levels for ${embeddingDim}-dim codes`, 'post_quant_conv.conv3d.weight');
  if (levels.length !== embeddingDim) fail(`${levels.length} FSQ levels for ${embeddingDim}-dim codes`);
  const [latentChannels, convInIn] = fconv('decoder.conv_in');
  if (convInIn !== zChannels) fail(`conv_in takes ${convInIn} channels, post_quant_conv gives ${zChannels}`, 'decoder.conv_in.0.conv3d.weight');

  const block1 = resBlock('decoder.mid.block_1', latentChannels);
  const midAttention = attention('decoder.mid.attn_1', block1.outChannels);
  const block2 = resBlock('decoder.mid.block_2', block1.outChannels);

  // Up levels: indices and block counts from the names.
  const blockCount = new Map<number, number>();
  for (const name of shapes.keys()) {
    const m = /^decoder\.up\.(\d+)\.block\.(\d+)\./.exec(name);
    if (m) blockCount.set(Number(m[1]), Math.max(blockCount.get(Number(m[1])) ?? 0, Number(m[2]) + 1));
  }
  const numLevels = blockCount.size;
  if (numLevels === 0) fail('no decoder.up.* blocks');
  for (let l = 0; l < numLevels; l++) if (!blockCount.has(l)) fail(`decoder.up.${l} is missing`);

  // Config facts (docs/model.md#decoder-configuration): patch size from conv_out, then which upsamplers are temporal.
  const imageChannels = options.imageChannels ?? 3;
  const finalChannels0 = shapes.get('decoder.norm_out.norm.weight')?.[0] ?? fail('missing tensor', 'decoder.norm_out.norm.weight');
  const [outChannels, convOutIn] = fconv('decoder.conv_out');
  if (convOutIn !== finalChannels0) fail(`conv_out takes ${convOutIn} channels, norm_out has ${finalChannels0}`, 'decoder.conv_out.0.conv3d.weight');
  const patchCube = outChannels / imageChannels;
  const patch = Math.round(Math.cbrt(patchCube));
  const haarLevels =
    (patch ** 3 === patchCube ? log2Int(patch) : null) ??
    fail(`conv_out has ${outChannels} channels: not ${imageChannels}·p³ for a power-of-two p`);
  const spatialUps = (log2Int(options.spatialCompression ?? 16) ?? fail('spatial compression must be a power of 2')) - haarLevels;
  const temporalUps = (log2Int(options.temporalCompression ?? 8) ?? fail('temporal compression must be a power of 2')) - haarLevels;
  const legacy = options.legacyMode ?? false;

  const up: UpLevelSpec[] = [];
  let channels = block2.outChannels;
  let upscale = patch;
  for (let index = numLevels - 1; index >= 0; index--) {
    const blocks: ResBlockSpec[] = [];
    const attentions: AttentionSpec[] = [];
    for (let b = 0; b < blockCount.get(index)!; b++) {
      const block = resBlock(`decoder.up.${index}.block.${b}`, channels);
      blocks.push(block);
      channels = block.outChannels;
      if (shapes.has(`decoder.up.${index}.attn.${b}.0.q.conv3d.weight`)) attentions.push(attention(`decoder.up.${index}.attn.${b}`, channels));
    }
    if (attentions.length && attentions.length !== blocks.length) fail(`decoder.up.${index} has attention after only some blocks`);
    let upsample: UpsampleSpec | null = null;
    const prefix = `decoder.up.${index}.upsample`;
    if (index !== 0) {
      const reverse = numLevels - index - 1;
      const temporal = legacy ? reverse < temporalUps : reverse > 0 && reverse < temporalUps + 1;
      const spatial = temporal || (reverse < spatialUps && spatialUps > temporalUps);
      for (const [part, kernel] of [['conv1', [3, 1, 1]], ['conv2', [1, 3, 3]], ['conv3', [1, 1, 1]]] as const) {
        const [o, i] = conv(`${prefix}.${part}`, [...kernel]);
        if (o !== channels || i !== channels) fail(`${i}→${o}, expected ${channels}→${channels}`, `${prefix}.${part}.conv3d.weight`);
      }
      upsample = { prefix, channels, temporal, spatial };
      if (spatial) upscale *= 2;
    } else if (shapes.has(`${prefix}.conv1.conv3d.weight`)) {
      fail('level 0 has an upsampler', `${prefix}.conv1.conv3d.weight`);
    }
    up.push({ index, blocks, attentions, upsample });
  }
  if (channels !== finalChannels0) fail(`the last block gives ${channels} channels, norm_out has ${finalChannels0}`, 'decoder.norm_out.norm.weight');
  norm('decoder.norm_out', channels);

  return {
    fsq: { levels: [...levels], embeddingDim, codebookSize: levels.reduce((a, b) => a * b, 1) },
    zChannels,
    latentChannels,
    mid: { block1, attention: midAttention, block2 },
    up,
    finalChannels: channels,
    outChannels,
    imageChannels,
    haarLevels,
    upscale,
  };
}

/** Checks the archive's own FSQ `_levels` buffer (if it has one) against the spec. */
export function checkFsqLevels(spec: CosmosDecoderSpec, stored: readonly number[] | null, file = 'decoder'): void {
  if (!stored) return;
  if (stored.length !== spec.fsq.levels.length || stored.some((v, i) => v !== spec.fsq.levels[i])) {
    throw new ModelFileError(
      file,
      `FSQ levels in the file are [${stored.join(',')}], expected [${spec.fsq.levels.join(',')}]`,
      'inv_quant.quantizer._levels',
      'ModelMismatch',
    );
  }
}

const LEVELS_BUFFER = 'inv_quant.quantizer._levels';

/**
 * Describes the decoder from its tensor list. Where the archive has the FSQ `_levels` buffer, it
 * is checked against the known config (or, for code sizes without one, used as the levels).
 */
export async function describeDecoderFile(
  reader: TensorReader | TorchScriptReader,
  options: DescribeOptions = {},
  signal?: AbortSignal,
): Promise<CosmosDecoderSpec> {
  const torch = 'tensors' in reader ? reader : null;
  const tensors = torch ? torch.tensors() : reader.list();
  let stored: number[] | null = null;
  if (torch?.info(LEVELS_BUFFER)?.dtype === 'i32' || torch?.info(LEVELS_BUFFER)?.dtype === 'i64') {
    const t = await torch.readAny(LEVELS_BUFFER, signal);
    const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
    const size = t.dtype === 'i64' ? 8 : 4;
    stored = Array.from({ length: t.bytes.byteLength / size }, (_, i) =>
      size === 8 ? Number(view.getBigInt64(i * 8, true)) : view.getInt32(i * 4, true),
    );
  }
  const codeDim = tensors.find((t) => t.name === 'post_quant_conv.conv3d.weight')?.shape[1];
  const fallback = codeDim !== undefined && !KNOWN_FSQ_LEVELS[codeDim] ? stored : null;
  const spec = describeCosmosDecoder(tensors, { file: reader.file, ...options, fsqLevels: options.fsqLevels ?? fallback ?? undefined });
  checkFsqLevels(spec, stored, reader.file);
  return spec;
}
