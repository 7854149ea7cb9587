// Runs the Cosmos decoder graph (convert/vq/graph.ts) on any ONNX Runtime module (onnxruntime-node
// in the CLI and at conversion time, onnxruntime-web in the worker): a grid of visual codes in,
// RGBA bytes out. The GPU-resident engine may keep its own session; this is the plain path.
import { SimpleARError } from '../errors.ts';
import type { InferenceSession, OrtModule } from '../engine/ort.ts';
import { buildDecoderGraph, DECODER_INPUT, DECODER_OUTPUT, type ActivationType } from '../convert/vq/graph.ts';
import type { CosmosDecoderSpec } from '../convert/vq/describe.ts';
import type { NamedTensor } from '../model-spec.ts';

export interface DecodedImage {
  width: number;
  height: number;
  /** Row-major RGBA, alpha 255 (SPEC C.11 quantisation). */
  rgba: Uint8Array;
}

export class DecoderRunner {
  private constructor(
    private readonly ort: OrtModule,
    private readonly session: InferenceSession,
    readonly spec: CosmosDecoderSpec,
  ) {}

  /** Builds the graph with the converted weights embedded and opens an ORT session on it. */
  static async create(
    ort: OrtModule,
    spec: CosmosDecoderSpec,
    weights: ReadonlyMap<string, NamedTensor>,
    options: { activations?: ActivationType; session?: InferenceSession.SessionOptions } = {},
  ): Promise<DecoderRunner> {
    const model = buildDecoderGraph(spec, weights, { activations: options.activations ?? 'float32' });
    return new DecoderRunner(ort, await ort.InferenceSession.create(model, options.session), spec);
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
    const out = await this.session.run({ [DECODER_INPUT]: new this.ort.Tensor('int64', input, [h, w]) });
    const rgba = out[DECODER_OUTPUT]!;
    const [height, width] = rgba.dims as [number, number, number];
    const data = (rgba.location === 'cpu' || rgba.location === undefined ? rgba.data : await rgba.getData()) as Uint8Array;
    return { width, height, rgba: data };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
