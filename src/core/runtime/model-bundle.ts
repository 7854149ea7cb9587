// A converted SimpleAR model bundle (written by convert/convert-model.ts), opened for use: the LM
// and decoder descriptions, the tokenizer, the live-preview map, and the weights in the form the
// graph builders take. Tensor names in the bundle are namespaced by model part:
//   lm/<name>   the LM's converted tensors (names: convert/lm-weights.ts)
//   vq/<name>   the decoder's converted tensors (names: model/decoder-weights.ts)
import { BundleError, MANIFEST_FILE, openBundle, type BundleManifest, type BundleReader, type OpenBundleOptions } from '../bundle/index.ts';
import type { CosmosDecoderSpec } from '../model/decoder-spec.ts';
import type { EngineModel } from './model.ts';
import type { LmWeightFormat } from '../model/quantize.ts';
import type { WeightDType } from '../model/decoder-weights.ts';
import { folderFile, type FileFolder } from '../formats/byte-source.ts';
import type { GenerationSettings } from '../formats/model-config.ts';
import type { TextTokenizer } from '../formats/tokenizer.ts';
import type { LmSpec, NamedTensor } from '../base/model-spec.ts';
import type { PreviewMap } from '../model/preview.ts';

export const LM_PREFIX = 'lm/';
export const DECODER_PREFIX = 'vq/';

/** The fitted live-preview colour map (preview.ts) and the grid it was fitted on. */
export interface LivePreviewFit {
  /** RGB = M·[fsq, 1]: 21 numbers, 0..255 units. */
  map: PreviewMap;
  /** The pseudo-random grid decoded to fit it: [h, w] and the PCG32 seed of its codes. */
  grid: [number, number];
  seed: number;
}

/** How the weights were converted (manifest `weights`). */
export interface ModelBundleWeights {
  /** Same as `lm` (the bundle's headline mode). */
  mode: LmWeightFormat;
  lm: LmWeightFormat;
  /** Block length of the quantized LM weights (q4/q8). */
  blockSize: number;
  decoder: WeightDType;
  /** Each decoder 3×3 conv fused with its folded 1×1 (model/decoder-weights.ts). */
  decoderFused: boolean;
}

export class ModelBundle {
  readonly lm: LmSpec;
  readonly decoder: CosmosDecoderSpec;
  readonly generation: GenerationSettings | undefined;
  readonly preview: LivePreviewFit | undefined;
  readonly weights: ModelBundleWeights;

  constructor(readonly reader: BundleReader) {
    const m = reader.manifest;
    const where = folderFile(reader.folder, MANIFEST_FILE);
    this.lm = m.model.lm;
    this.decoder = checkDecoderSpec(m.model.decoder, where);
    this.generation = m.model.generation;
    this.preview = m.model.preview;
    this.weights = checkWeights(m.weights, where);
    for (const prefix of [LM_PREFIX, DECODER_PREFIX]) {
      if (!m.tensors.some((t) => t.name.startsWith(prefix))) {
        throw new BundleError(where, `no ${prefix}* tensors: not a SimpleAR model bundle`);
      }
    }
  }

  get manifest(): BundleManifest {
    return this.reader.manifest;
  }

  /** The tokenizer embedded in the bundle (checked against the manifest's length and ids). */
  tokenizer(signal?: AbortSignal): Promise<TextTokenizer> {
    return this.reader.tokenizer(signal);
  }

  /**
   * Every LM tensor by its converted name, read (and SHA-256-checked) up front: buildLmGraph
   * takes a synchronous getter, `(name) => weights.get(name)`. Holds the LM's bytes in memory.
   */
  loadLmWeights(signal?: AbortSignal): Promise<Map<string, NamedTensor>> {
    return this.readPart(LM_PREFIX, signal);
  }

  /** The decoder's converted weights by name, as buildDecoderGraph takes them. */
  loadDecoderWeights(signal?: AbortSignal): Promise<Map<string, NamedTensor>> {
    return this.readPart(DECODER_PREFIX, signal);
  }

  /**
   * Everything an engine needs (specs, tokenizer, both models' weights, the preview map). The
   * weights are read in one pass over the chunks (BundleReader.readMany: each chunk read and
   * checked once, reads overlapping hashes, tensors as views of the chunks), and the tokenizer is
   * parsed meanwhile. `onChunk(done, total)`: after each chunk the weights lie in is read and checked.
   */
  async loadModel(options: { name?: string; signal?: AbortSignal; onChunk?: (done: number, total: number) => void } = {}): Promise<EngineModel> {
    const { signal } = options;
    const names = this.reader.list().filter((e) => e.name.startsWith(LM_PREFIX) || e.name.startsWith(DECODER_PREFIX)).map((e) => e.name);
    const [tokenizer, all] = await Promise.all([
      this.tokenizer(signal),
      this.reader.readMany(names, { ...(signal ? { signal } : {}), ...(options.onChunk ? { onChunk: options.onChunk } : {}) }),
    ]);
    return {
      name: options.name ?? this.reader.folder.base,
      lm: this.lm,
      tokenizer,
      lmWeights: part(all, LM_PREFIX),
      decoder: this.decoder,
      decoderWeights: part(all, DECODER_PREFIX),
      ...(this.preview ? { preview: this.preview.map } : {}),
      ...(this.generation ? { generation: this.generation } : {}),
    };
  }

  private async readPart(prefix: string, signal?: AbortSignal): Promise<Map<string, NamedTensor>> {
    const names = this.reader.list().filter((e) => e.name.startsWith(prefix)).map((e) => e.name);
    return part(await this.reader.readMany(names, signal ? { signal } : {}), prefix);
  }
}

/** The tensors under `prefix`, renamed without it. */
function part(all: ReadonlyMap<string, NamedTensor>, prefix: string): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  for (const [full, t] of all) {
    if (!full.startsWith(prefix)) continue;
    const name = full.slice(prefix.length);
    out.set(name, { ...t, name });
  }
  return out;
}

/** Opens a converted model bundle from a folder (local directory, base URL, or another store). */
export async function openModelBundle(folder: FileFolder, options: OpenBundleOptions = {}): Promise<ModelBundle> {
  return new ModelBundle(await openBundle(folder, options));
}

function checkDecoderSpec(value: unknown, where: string): CosmosDecoderSpec {
  const s = value as Partial<CosmosDecoderSpec>;
  const ok =
    typeof s === 'object' &&
    s !== null &&
    Array.isArray(s.fsq?.levels) &&
    Array.isArray(s.up) &&
    typeof s.mid === 'object' &&
    s.mid !== null &&
    [s.zChannels, s.latentChannels, s.finalChannels, s.outChannels, s.imageChannels, s.haarLevels, s.upscale].every(
      (v) => Number.isInteger(v) && (v as number) > 0,
    );
  if (!ok) throw new BundleError(where, 'model.decoder is not a Cosmos decoder description');
  return s as CosmosDecoderSpec;
}

const LM_FORMATS: readonly string[] = ['q4', 'q8', 'f16', 'f32'];
const DECODER_DTYPES: readonly string[] = ['f16', 'f32'];

function checkWeights(value: BundleManifest['weights'], where: string): ModelBundleWeights {
  const w = value as Partial<ModelBundleWeights>;
  if (!LM_FORMATS.includes(w.lm as string) || !DECODER_DTYPES.includes(w.decoder as string)) {
    throw new BundleError(where, `unknown weight formats (lm ${JSON.stringify(w.lm)}, decoder ${JSON.stringify(w.decoder)})`);
  }
  return {
    mode: w.lm!,
    lm: w.lm!,
    blockSize: typeof w.blockSize === 'number' ? w.blockSize : 32,
    decoder: w.decoder!,
    decoderFused: w.decoderFused === true,
  };
}
