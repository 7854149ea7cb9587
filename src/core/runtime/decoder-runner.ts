// Runs the Cosmos decoder graph (convert/vq/graph.ts) on any ONNX Runtime module (onnxruntime-node
// in the CLI and at conversion time, onnxruntime-web in the worker, on WebGPU or wasm): a grid of
// visual codes in, RGBA bytes out.
//
// With f16 activations the graph also returns its activation checks (largest |x| and mean square
// at every GroupNorm input and at the image); when they show an overflow (non-finite values, or
// peaks near f16's range) the decode is run again in f32, from the same weights upcast, and the
// result says so: an f16 decode never silently returns garbage.
import { SimpleARError } from '../errors.ts';
import type { InferenceSession, OrtModule } from '../engine/ort.ts';
import {
  buildDecoder,
  checkActivations,
  DECODER_CHECK_OUTPUT,
  DECODER_INPUT,
  DECODER_OUTPUT,
  type ActivationType,
} from '../convert/vq/graph.ts';
import type { CosmosDecoderSpec } from '../convert/vq/describe.ts';
import type { NamedTensor } from '../model-spec.ts';

/** Why and how a decode was redone: the f16 activations overflowed, f32 gave the image. */
export interface DecoderFallback {
  activations: 'float32';
  reason: string;
}

export interface DecodedImage {
  width: number;
  height: number;
  /** Row-major RGBA, alpha 255 (SPEC C.11 quantisation). */
  rgba: Uint8Array;
  /** Set when the f16 decode failed its checks and this image is the f32 rerun. */
  fallback?: DecoderFallback;
}

export interface DecoderRunnerOptions {
  activations?: ActivationType;
  session?: InferenceSession.SessionOptions;
  /** With f16 activations: rerun in f32 when the activation checks fail (default true). */
  fallback?: boolean;
}

type Tensor = { dims: readonly number[]; data: unknown; location?: string; getData?: () => Promise<unknown> };

export class DecoderRunner {
  private constructor(
    private readonly ort: OrtModule,
    private readonly session: InferenceSession,
    readonly spec: CosmosDecoderSpec,
    /** Kept for the f32 rerun (the f16 weights upcast); undefined when there is none. */
    private readonly weights: ReadonlyMap<string, NamedTensor> | undefined,
    /** Names of the graph's activation check points; empty when it has none. */
    private readonly checks: readonly string[],
    private readonly sessionOptions: InferenceSession.SessionOptions | undefined,
    readonly activations: ActivationType,
  ) {}

  /** Builds the graph with the converted weights embedded and opens an ORT session on it. */
  static async create(
    ort: OrtModule,
    spec: CosmosDecoderSpec,
    weights: ReadonlyMap<string, NamedTensor>,
    options: DecoderRunnerOptions = {},
  ): Promise<DecoderRunner> {
    const activations = options.activations ?? 'float32';
    const { model, checks } = buildDecoder(spec, weights, { activations });
    const session = await ort.InferenceSession.create(model, options.session);
    const keep = checks.length > 0 && (options.fallback ?? true) ? weights : undefined;
    return new DecoderRunner(ort, session, spec, keep, checks, options.session, activations);
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
    const feeds = () => ({ [DECODER_INPUT]: new this.ort.Tensor('int64', input, [h, w]) });
    const out = (await this.session.run(feeds())) as Record<string, Tensor>;
    const reason = this.checks.length ? checkActivations((await read(out[DECODER_CHECK_OUTPUT]!)) as Float32Array, this.checks) : undefined;
    if (reason === undefined || !this.weights) return image(out);

    // The f16 activations overflowed: the same weights in f32, in a session that lives for this
    // one decode (its weights are twice the f16 ones).
    const { model } = buildDecoder(this.spec, this.weights, { activations: 'float32', checks: false });
    const f32 = await this.ort.InferenceSession.create(model, this.sessionOptions);
    try {
      return { ...(await image((await f32.run(feeds())) as Record<string, Tensor>)), fallback: { activations: 'float32', reason } };
    } finally {
      await f32.release();
    }
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

async function read(t: Tensor): Promise<unknown> {
  return t.location === 'cpu' || t.location === undefined ? t.data : await t.getData!();
}

async function image(out: Record<string, Tensor>): Promise<DecodedImage> {
  const rgba = out[DECODER_OUTPUT]!;
  const [height, width] = rgba.dims as [number, number, number];
  const data = (await read(rgba)) as Uint8Array;
  return { width, height, rgba: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
