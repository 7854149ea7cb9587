// Runs the Cosmos decoder graph (model/decoder-graph.ts) on any ONNX Runtime module (onnxruntime-node
// in the CLI and at conversion time, onnxruntime-web in the worker, on WebGPU or wasm): a grid of
// visual codes in, RGBA bytes out.
//
// With f16 activations the graph also returns its activation checks (largest |x| and mean square
// at every GroupNorm input and at the image); when they show an overflow (non-finite values, or
// peaks near f16's range) the decode is run again in f32, from the same weights upcast, and the
// result says so: an f16 decode never silently returns garbage.
//
// Where the whole image's largest activation would exceed a budget (a WebGPU buffer limit, a memory
// budget), the decoder runs in bands of rows instead: the graph is cut at its GroupNorms
// (decoderStages) and each stage runs band by band with a margin of rows for its 3×3 convs, the
// bands' outputs kept in JS memory; each norm's statistics are summed over all bands before the
// next stage, so the result is the whole decode's (within rounding), not a blend of tiles.
import { SimpleARError } from '../base/errors.ts';
import type { InferenceSession, OrtModule } from '../base/ort.ts';
import {
  buildDecoder,
  buildDecoderStage,
  checkActivations,
  decoderStages,
  F16_MAX,
  F16_SAFE_PEAK,
  GROUP_NORM_EPS,
  STAGE_H,
  STAGE_NORM_INV_STD,
  STAGE_NORM_MEAN,
  STAGE_OUTPUT,
  STAGE_X,
  type DecoderStage,
  DECODER_CHECK_OUTPUT,
  DECODER_INPUT,
  DECODER_OUTPUT,
  type ActivationType,
} from '../model/decoder-graph.ts';
import type { CosmosDecoderSpec } from '../model/decoder-spec.ts';
import type { ExternalDataFile } from '../base/onnx-builder.ts';
import type { NamedTensor } from '../base/model-spec.ts';
import { createSessionFromFiles, type ModelFiles } from './model-files.ts';
import { releaseWeights } from './model.ts';

/** Why and how a decode was redone: the f16 activations overflowed, f32 gave the image. */
export interface DecoderFallback {
  activations: 'float32';
  reason: string;
}

export interface DecodedImage {
  width: number;
  height: number;
  /** Row-major RGBA, alpha 255 (bytes as docs/model.md#pixels). */
  rgba: Uint8Array;
  /** Set when the f16 decode failed its checks and this image is the f32 rerun. */
  fallback?: DecoderFallback;
}

export interface DecoderRunnerOptions {
  activations?: ActivationType;
  session?: InferenceSession.SessionOptions;
  /** With f16 activations: rerun in f32 when the activation checks fail (default true). */
  fallback?: boolean;
  /**
   * Largest activation (bytes) a whole decode may hold; grids whose largest exceeds it decode in
   * bands of rows sized to fit (decoderActivationBytes). Default: no limit.
   */
  maxActivationBytes?: number;
  /** The largest grid side decoded: with maxActivationBytes, decides whole or banded up front. */
  maxSide?: number;
  /** Open the sessions from files (model-files.ts: onnxruntime-node maps their weights). */
  files?: ModelFiles;
  /**
   * Empty `weights` once the sessions hold them (runtime/model.ts WeightRelease), unless they are
   * kept for the f32 rerun of an f16 decode.
   */
  releaseWeights?: boolean;
}

/**
 * The largest tensor (bytes) of a whole decode of an h×w grid: the widest feature map at each
 * resolution (fp32: the f16 graph casts each GroupNorm input to fp32 for its statistics), the mid
 * block's attention scores, the fp32 image.
 */
export function decoderActivationBytes(spec: CosmosDecoderSpec, h: number, w: number): number {
  let pixels = h * w;
  let largest = Math.max(spec.latentChannels * pixels, pixels * pixels);
  for (const level of spec.up) {
    for (const b of level.blocks) largest = Math.max(largest, Math.max(b.inChannels, b.outChannels) * pixels);
    if (level.upsample?.spatial) pixels *= 4;
    if (level.upsample) largest = Math.max(largest, level.upsample.channels * pixels);
  }
  largest = Math.max(largest, spec.outChannels * pixels, spec.imageChannels * h * w * spec.upscale ** 2);
  return 4 * largest;
}

type Tensor = { dims: readonly number[]; data: unknown; location?: string; getData?: () => Promise<unknown> };
type Outputs = Record<string, Tensor>;

/** A decode that ran: the image, or why its f16 activations cannot be trusted. */
interface Attempt {
  image: DecodedImage;
  problem?: string;
}

/** One way of running the decoder at one activation type: whole, or in stages and bands. */
interface Pipeline {
  decode(codes: BigInt64Array, h: number, w: number): Promise<Attempt>;
  release(): Promise<void>;
}

export class DecoderRunner {
  private constructor(
    private readonly ort: OrtModule,
    private readonly open: Opener,
    private readonly pipeline: Pipeline,
    readonly spec: CosmosDecoderSpec,
    /** Kept for the f32 rerun (the f16 weights upcast); undefined when there is none. */
    private readonly weights: ReadonlyMap<string, NamedTensor> | undefined,
    private readonly sessionOptions: InferenceSession.SessionOptions | undefined,
    readonly activations: ActivationType,
    /** Band budget when decoding in stages; undefined: whole. */
    readonly bandBytes: number | undefined,
    private readonly external: number | undefined,
  ) {}

  /** Builds the graph with the converted weights embedded and opens an ORT session on it. */
  static async create(
    ort: OrtModule,
    spec: CosmosDecoderSpec,
    weights: ReadonlyMap<string, NamedTensor>,
    options: DecoderRunnerOptions = {},
  ): Promise<DecoderRunner> {
    const activations = options.activations ?? 'float32';
    const budget = options.maxActivationBytes;
    const banded =
      budget !== undefined &&
      decoderStages(spec) !== undefined &&
      (options.maxSide === undefined || decoderActivationBytes(spec, options.maxSide, options.maxSide) > budget);
    const bandBytes = banded ? budget : undefined;
    const open: Opener = (graph, session) =>
      options.files && graph.externalData
        ? createSessionFromFiles(ort, options.files, { model: graph.model, externalData: graph.externalData }, session)
        : ort.InferenceSession.create(graph.model, session);
    const external = options.files ? EXTERNAL_DATA_BYTES : undefined;
    const pipeline = await openPipeline(open, ort, spec, weights, activations, bandBytes, options.session, activations === 'float16', external);
    const keep = activations === 'float16' && (options.fallback ?? true) ? weights : undefined;
    if (options.releaseWeights && !keep) releaseWeights(weights);
    return new DecoderRunner(ort, open, pipeline, spec, keep, options.session, activations, bandBytes, external);
  }

  /** Decodes an h×w grid of codes (row-major, each 0..codebookSize-1) to an image of 16h×16w. */
  async decode(codes: ArrayLike<number>, h: number, w: number): Promise<DecodedImage> {
    if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1 || codes.length !== h * w) {
      throw new SimpleARError('InvalidSettings', `a ${h}×${w} grid needs ${h * w} codes, got ${codes.length}`, { h, w, count: codes.length });
    }
    const size = this.spec.fsq.codebookSize;
    const input = new BigInt64Array(h * w);
    for (let i = 0; i < input.length; i++) {
      const c = codes[i]!;
      if (!Number.isInteger(c) || c < 0 || c >= size) {
        throw new SimpleARError('InvalidSettings', `code ${i} is ${c}: visual codes are integers 0..${size - 1}`, { index: i, value: c });
      }
      input[i] = BigInt(c);
    }
    const first = await this.pipeline.decode(input, h, w);
    if (first.problem === undefined || !this.weights) return first.image;

    // The f16 activations overflowed: the same weights in f32, in sessions that live for this
    // one decode (their weights are twice the f16 ones).
    const f32 = await openPipeline(this.open, this.ort, this.spec, this.weights, 'float32', this.bandBytes, this.sessionOptions, false, this.external);
    try {
      const again = await f32.decode(input, h, w);
      return { ...again.image, fallback: { activations: 'float32', reason: first.problem } };
    } finally {
      await f32.release();
    }
  }

  release(): Promise<void> {
    return this.pipeline.release();
  }
}

/** Opens a session on a built graph (from its bytes, or through files). */
type Opener = (graph: { model: Uint8Array; externalData?: ExternalDataFile[] }, session: InferenceSession.SessionOptions | undefined) => Promise<InferenceSession>;

/** Initializers this large go to external data files when sessions open from files. */
const EXTERNAL_DATA_BYTES = 64 * 1024;

async function openPipeline(
  open: Opener,
  ort: OrtModule,
  spec: CosmosDecoderSpec,
  weights: ReadonlyMap<string, NamedTensor>,
  activations: ActivationType,
  bandBytes: number | undefined,
  session: InferenceSession.SessionOptions | undefined,
  checks: boolean,
  externalData: number | undefined,
): Promise<Pipeline> {
  const options = { activations, checks, ...(externalData !== undefined ? { externalData } : {}) };
  if (bandBytes !== undefined) {
    // One arena per session would keep every stage's band buffers for the life of the runner.
    const bandSession: InferenceSession.SessionOptions = { ...session, enableCpuMemArena: false };
    const stages: { stage: DecoderStage; session: InferenceSession; checks: string[] }[] = [];
    try {
      for (const stage of decoderStages(spec)!) {
        const graph = buildDecoderStage(spec, weights, stage, options);
        stages.push({ stage, session: await open(graph, bandSession), checks: graph.checks });
      }
    } catch (e) {
      await Promise.all(stages.map((s) => s.session.release()));
      throw e;
    }
    return new BandedPipeline(ort, spec, stages, bandBytes, checks);
  }
  const graph = buildDecoder(spec, weights, options);
  return new WholePipeline(ort, await open(graph, session), graph.checks);
}

class WholePipeline implements Pipeline {
  constructor(
    private readonly ort: OrtModule,
    private readonly session: InferenceSession,
    private readonly checks: readonly string[],
  ) {}

  async decode(codes: BigInt64Array, h: number, w: number): Promise<Attempt> {
    const out = (await this.session.run({ [DECODER_INPUT]: new this.ort.Tensor('int64', codes, [h, w]) })) as Outputs;
    const problem = this.checks.length ? checkActivations((await read(out[DECODER_CHECK_OUTPUT]!)) as Float32Array, this.checks) : undefined;
    return { image: await image(out), ...(problem !== undefined ? { problem } : {}) };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** A feature map held in JS: [channels, rows, cols], fp32. */
interface Feature {
  data: Float32Array;
  channels: number;
  rows: number;
  cols: number;
}

/** Per-channel sums over a feature map (float64), for its GroupNorm, and its largest |x|. */
class NormStats {
  readonly sum: Float64Array;
  readonly sumSq: Float64Array;
  peak = 0;
  count = 0;
  constructor(channels: number) {
    this.sum = new Float64Array(channels);
    this.sumSq = new Float64Array(channels);
  }

  /** Adds rows [r0, r1) of `f` (all channels). */
  add(f: Feature, r0: number, r1: number): void {
    const plane = f.rows * f.cols;
    for (let c = 0; c < f.channels; c++) {
      let s = 0;
      let q = 0;
      let p = this.peak;
      const end = c * plane + r1 * f.cols;
      for (let i = c * plane + r0 * f.cols; i < end; i++) {
        const v = f.data[i]!;
        s += v;
        q += v * v;
        const a = Math.abs(v);
        if (a > p) p = a; // a NaN shows in the sums (problem() checks both)
      }
      this.sum[c]! += s;
      this.sumSq[c]! += q;
      this.peak = p;
    }
    this.count += (r1 - r0) * f.cols;
  }

  /** The norm's mean and 1/√(var + eps), combined as the whole graph combines them. */
  moments(): { mean: number; invStd: number } {
    const n = this.sum.length;
    const meanC = Array.from(this.sum, (s) => s / this.count);
    const mean = meanC.reduce((a, b) => a + b, 0) / n;
    let variance = 0;
    for (let c = 0; c < n; c++) variance += this.sumSq[c]! / this.count - meanC[c]! ** 2 + (meanC[c]! - mean) ** 2;
    return { mean, invStd: 1 / Math.sqrt(variance / n + GROUP_NORM_EPS) };
  }

  /** Why these activations cannot be trusted in f16, or undefined. */
  problem(name: string): string | undefined {
    if (!Number.isFinite(this.peak) || this.sumSq.some((q) => !Number.isFinite(q))) return `non-finite activations at ${name}`;
    if (this.peak >= F16_SAFE_PEAK) return `activations reach ${this.peak.toPrecision(3)} at ${name} (f16 overflows past ${F16_MAX})`;
    return undefined;
  }
}

/** The stages' geometry: output rows per input row, and input rows of margin each side. */
function stageShape(spec: CosmosDecoderSpec, stage: DecoderStage): { scale: number; margin: number; channels: number; widest: number } {
  switch (stage.kind) {
    case 'norm1':
      // conv1: one 3×3 conv (its folded 1×1 adds no reach).
      return { scale: 1, margin: 1, channels: stage.block.outChannels, widest: Math.max(stage.block.inChannels, stage.block.outChannels) };
    case 'norm2': {
      // conv2's 3×3, then the upsampler's 3×3 at twice the resolution: half an input row more.
      const up = stage.upsample?.spatial ? 2 : 1;
      const widest = Math.max(stage.block.inChannels, stage.block.outChannels) * up * up;
      return { scale: up, margin: up === 2 ? 2 : 1, channels: stage.block.outChannels, widest };
    }
    case 'pixels':
      // conv_out's 3×3, then the inverse Haar levels (2× each, pointwise).
      return { scale: 2 ** spec.haarLevels, margin: 1, channels: 4, widest: Math.max(spec.finalChannels, spec.outChannels) };
    case 'head':
      throw new Error('the head runs whole');
  }
}

class BandedPipeline implements Pipeline {
  constructor(
    private readonly ort: OrtModule,
    private readonly spec: CosmosDecoderSpec,
    private readonly stages: readonly { stage: DecoderStage; session: InferenceSession; checks: string[] }[],
    private readonly bandBytes: number,
    private readonly checking: boolean,
  ) {}

  async decode(codes: BigInt64Array, h: number, w: number): Promise<Attempt> {
    const [head, ...rest] = this.stages;
    const out = (await head!.session.run({ [DECODER_INPUT]: new this.ort.Tensor('int64', codes, [h, w]) })) as Outputs;
    let problem = head!.checks.length ? checkActivations((await read(out[DECODER_CHECK_OUTPUT]!)) as Float32Array, head!.checks) : undefined;
    let x = feature(out[STAGE_OUTPUT]!, (await read(out[STAGE_OUTPUT]!)) as Float32Array);
    let branch: Feature | undefined;
    let stats = new NormStats(x.channels);
    stats.add(x, 0, x.rows);
    for (const { stage, session } of rest) {
      if (this.checking && problem === undefined) problem = stats.problem(normName(stage));
      const { mean, invStd } = stats.moments();
      const norms = { [STAGE_NORM_MEAN]: new this.ort.Tensor('float32', Float32Array.of(mean), []), [STAGE_NORM_INV_STD]: new this.ort.Tensor('float32', Float32Array.of(invStd), []) };
      if (stage.kind === 'pixels') {
        const rgba = await this.pixels(session, stage, x, norms);
        if (this.checking && problem === undefined) problem = rgba.problem;
        return { image: rgba.image, ...(problem !== undefined ? { problem } : {}) };
      }
      const inputs = stage.kind === 'norm2' ? [x, branch!] : [x];
      const result = await this.bands(session, stage, inputs, norms);
      stats = result.stats;
      if (stage.kind === 'norm1') branch = result.feature;
      else [x, branch] = [result.feature, undefined];
    }
    throw new Error('the decoder stages end with the pixels');
  }

  /** Input rows per band for a stage: its widest tensor per input row within the budget. */
  private bandRows(stage: DecoderStage, cols: number): number {
    const { widest, margin } = stageShape(this.spec, stage);
    return Math.max(1, Math.floor(this.bandBytes / (4 * widest * cols)) - 2 * margin);
  }

  /** Runs a feature stage band by band into one output map, summing the next norm's statistics. */
  private async bands(
    session: InferenceSession,
    stage: DecoderStage,
    inputs: Feature[],
    norms: Record<string, unknown>,
  ): Promise<{ feature: Feature; stats: NormStats }> {
    const { scale, margin, channels } = stageShape(this.spec, stage);
    const { rows, cols } = inputs[0]!;
    const result: Feature = { data: new Float32Array(channels * rows * scale * cols * scale), channels, rows: rows * scale, cols: cols * scale };
    const stats = new NormStats(channels);
    const step = this.bandRows(stage, cols);
    for (let r0 = 0; r0 < rows; r0 += step) {
      const r1 = Math.min(rows, r0 + step);
      const a = Math.max(0, r0 - margin);
      const b = Math.min(rows, r1 + margin);
      const feeds: Record<string, unknown> = { ...norms, [STAGE_X]: this.slice(inputs[0]!, a, b) };
      if (inputs[1]) feeds[STAGE_H] = this.slice(inputs[1], a, b);
      const out = (await session.run(feeds as never)) as Outputs;
      const band = feature(out[STAGE_OUTPUT]!, (await read(out[STAGE_OUTPUT]!)) as Float32Array);
      // Keep rows [r0, r1) of the band (its margins were computed against zero padding).
      const skip = (r0 - a) * scale;
      const keep = (r1 - r0) * scale;
      for (let c = 0; c < channels; c++) {
        const from = c * band.rows * band.cols + skip * band.cols;
        result.data.set(band.data.subarray(from, from + keep * band.cols), c * result.rows * result.cols + r0 * scale * result.cols);
      }
      stats.add(result, r0 * scale, r1 * scale);
    }
    return { feature: result, stats };
  }

  /** The last stage, band by band: rows of RGBA bytes (and the image checks). */
  private async pixels(
    session: InferenceSession,
    stage: DecoderStage,
    x: Feature,
    norms: Record<string, unknown>,
  ): Promise<{ image: DecodedImage; problem?: string }> {
    const { scale, margin } = stageShape(this.spec, stage);
    const width = x.cols * scale;
    const rgba = new Uint8Array(x.rows * scale * width * 4);
    const step = this.bandRows(stage, x.cols);
    let problem: string | undefined;
    for (let r0 = 0; r0 < x.rows; r0 += step) {
      const r1 = Math.min(x.rows, r0 + step);
      const a = Math.max(0, r0 - margin);
      const b = Math.min(x.rows, r1 + margin);
      const out = (await session.run({ ...norms, [STAGE_X]: this.slice(x, a, b) } as never)) as Outputs;
      const band = (await read(out[DECODER_OUTPUT]!)) as Uint8Array;
      const rowBytes = width * 4;
      rgba.set(band.subarray((r0 - a) * scale * rowBytes, (r1 - a) * scale * rowBytes), r0 * scale * rowBytes);
      if (this.checking && problem === undefined && out[DECODER_CHECK_OUTPUT]) {
        problem = checkActivations((await read(out[DECODER_CHECK_OUTPUT])) as Float32Array, ['image']);
      }
    }
    return { image: { width, height: x.rows * scale, rgba }, ...(problem !== undefined ? { problem } : {}) };
  }

  /** Rows [a, b) of a feature map as a [1, C, b − a, W] tensor. */
  private slice(f: Feature, a: number, b: number): unknown {
    const plane = f.rows * f.cols;
    const n = (b - a) * f.cols;
    const data = a === 0 && b === f.rows ? f.data : new Float32Array(f.channels * n);
    if (data !== f.data) for (let c = 0; c < f.channels; c++) data.set(f.data.subarray(c * plane + a * f.cols, c * plane + b * f.cols), c * n);
    return new this.ort.Tensor('float32', data, [1, f.channels, b - a, f.cols]);
  }

  async release(): Promise<void> {
    await Promise.all(this.stages.map((s) => s.session.release()));
  }
}

/** The GroupNorm a stage starts with (for messages). */
function normName(stage: DecoderStage): string {
  if (stage.kind === 'norm1') return `${stage.block.prefix}.norm1`;
  if (stage.kind === 'norm2') return `${stage.block.prefix}.norm2`;
  return stage.kind === 'pixels' ? 'decoder.norm_out' : 'the head';
}

function feature(t: Tensor, data: Float32Array): Feature {
  const [, channels, rows, cols] = t.dims as [number, number, number, number];
  return { data, channels, rows, cols };
}

async function read(t: Tensor): Promise<unknown> {
  return t.location === 'cpu' || t.location === undefined ? t.data : await t.getData!();
}

async function image(out: Outputs): Promise<DecodedImage> {
  const rgba = out[DECODER_OUTPUT]!;
  const [height, width] = rgba.dims as [number, number, number];
  const data = (await read(rgba)) as Uint8Array;
  return { width, height, rgba: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
