// The conversion pipeline: an original SimpleAR checkpoint (HF Qwen2 safetensors + tokenizer
// files) and Cosmos decoder.jit → one converted model bundle (model-bundle.ts describes what it
// holds). Isomorphic: the sources are FileFolders (local directory or any base URL, read with
// range requests), the output a BundleSink (atomic directory in Node, IndexedDB in browsers),
// and the ONNX Runtime used to fit the live-preview map is passed in.
//
// Order: open and check everything (config, tokenizer, tensor headers, decoder structure) before
// converting; then the decoder (its weights are kept to fit the preview map on a decoded grid),
// then the LM, one tensor at a time; then the tokenizer files and the manifest. Any failure
// aborts the sink: no half bundle is ever left.
import { SimpleARError } from '../base/errors.ts';
import { readJson, type FileFolder } from '../formats/byte-source.ts';
import { readModelConfig } from '../formats/model-config.ts';
import { openSafetensors } from '../formats/safetensors.ts';
import { DTYPE_BYTES, numel, type TensorReader } from '../formats/tensor.ts';
import { openTorchScript } from '../formats/torchscript/index.ts';
import { DECODER_FILE } from '../formats/inspect-checkpoint.ts';
import { loadTokenizer } from '../formats/tokenizer.ts';
import { withBundleWriter, type BundleManifest, type BundleSink, type BundleSource, type BundleWriter } from '../bundle/index.ts';
import type { LmSpec, NamedTensor } from '../base/model-spec.ts';
import { DECODER_PREFIX, LM_PREFIX, type LivePreviewFit, type ModelBundleWeights } from '../runtime/model-bundle.ts';
import { fitPreviewMap } from '../model/preview.ts';
import { Pcg32 } from '../sampling/prng.ts';
import type { OrtModule } from '../base/ort.ts';
import { DecoderRunner } from '../runtime/decoder-runner.ts';
import { convertLmWeights, type LmWeightFormat } from './lm-weights.ts';
import { convertDecoderWeights, decoderWeightPlan, describeDecoderFile, type CosmosDecoderSpec, type WeightDType } from '../model/decoder.ts';

/** The released checkpoints (any mirror or local copy with the same files works). */
export const DEFAULT_MODEL_SOURCE = 'https://huggingface.co/Daniel0724/SimpleAR-0.5B-RL/resolve/main/';
export const DEFAULT_DECODER_SOURCE = 'https://huggingface.co/nvidia/Cosmos-1.0-Tokenizer-DV8x16x16/resolve/main/';

/** Block length of the quantized LM weights (MatMulNBits / GatherBlockQuantized). */
const QUANT_BLOCK = 32;
/** The live-preview map is fitted on this grid of PCG32 codes, decoded by the converted decoder. */
export const PREVIEW_GRID: [number, number] = [16, 16];
export const PREVIEW_SEED = 0x5eed;

export type ConvertPhase = 'open' | 'decoder' | 'preview' | 'lm' | 'finish';

export interface ConvertProgress {
  phase: ConvertPhase;
  /** Converted tensors written in this phase, and how many it writes. */
  tensors: number;
  tensorsTotal: number;
  /** Source bytes read in this phase, and how many it reads. */
  bytes: number;
  bytesTotal: number;
  /** The tensor just written. */
  tensor?: string;
}

export interface ConvertModelOptions {
  /** The LM checkpoint folder: config.json, tokenizer files, safetensors (single or sharded). */
  model: FileFolder;
  /** The folder holding decoder.jit. */
  decoder: FileFolder;
  sink: BundleSink;
  /** LM weights (default q4). */
  weights?: LmWeightFormat;
  /** Decoder weights (default f16; f32 when `weights` is f32, for a full-precision bundle). */
  decoderDType?: WeightDType;
  /** Fuse each decoder 3×3 conv with its folded 1×1 (fewer FLOPs; default false). */
  fuseDecoder?: boolean;
  /** ONNX Runtime to decode the preview-fit grid with; without it the bundle has no preview map. */
  ort?: OrtModule;
  /** For the ETag/revision of URL sources (HEAD requests); default globalThis.fetch. */
  fetch?: typeof fetch;
  signal?: AbortSignal;
  onProgress?: (p: ConvertProgress) => void;
  /** Bundle chunk size (default: the bundle format's, 32 MiB). */
  chunkSize?: number;
  createdAt?: Date;
}

interface OpenedSources {
  tokenizer: Awaited<ReturnType<typeof loadTokenizer>>;
  config: Awaited<ReturnType<typeof readModelConfig>>;
  lmReader: TensorReader;
  decoderReader: Awaited<ReturnType<typeof openTorchScript>>;
  decoderSpec: CosmosDecoderSpec;
}

/** Converts the checkpoint into the sink and commits it; returns the manifest written. */
export async function convertModel(options: ConvertModelOptions): Promise<BundleManifest> {
  const { sink, signal } = options;
  const weights = options.weights ?? 'q4';
  const decoderDType = options.decoderDType ?? (weights === 'f32' ? 'f32' : 'f16');
  const fuse = options.fuseDecoder ?? false;
  const progress = options.onProgress ?? (() => {});
  const writerOptions = { ...(signal ? { signal } : {}), ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}) };
  try {
    return await withBundleWriter(sink, writerOptions, async (writer) => {
      progress({ phase: 'open', tensors: 0, tensorsTotal: 0, bytes: 0, bytesTotal: 0 });
      const src = await openSources(options.model, options.decoder, signal);
      const { lm } = src.config;
      const sources = provenance(options, src.lmReader);
      sources.catch(() => {}); // awaited at the end; a failure before then must not go unhandled

      const decoderWeights = await writeDecoder(writer, src, { dtype: decoderDType, fuse, keep: !!options.ort, signal, progress });
      let preview: LivePreviewFit | undefined;
      if (options.ort) {
        progress({ phase: 'preview', tensors: 0, tensorsTotal: 0, bytes: 0, bytesTotal: 0 });
        preview = await fitPreview(options.ort, src.decoderSpec, decoderWeights!);
      }
      decoderWeights?.clear();

      await writeLm(writer, src.lmReader, lm, { weights, signal, progress });

      progress({ phase: 'finish', tensors: 0, tensorsTotal: 0, bytes: 0, bytesTotal: 0 });
      const tokenizerFiles: Record<string, string> = {
        'tokenizer.json': JSON.stringify(src.tokenizer.files.tokenizerJson),
        'tokenizer_config.json': JSON.stringify(src.tokenizer.files.tokenizerConfig ?? {}),
      };
      for (const [name, content] of Object.entries(tokenizerFiles)) await writer.addFile(name, content);
      const weightsInfo: ModelBundleWeights = { mode: weights, lm: weights, blockSize: QUANT_BLOCK, decoder: decoderDType, decoderFused: fuse };
      return writer.finish({
        model: { lm, decoder: { ...src.decoderSpec }, generation: src.config.generation, ...(preview ? { preview } : {}) },
        tokenizer: { files: Object.keys(tokenizerFiles), specialIds: src.tokenizer.specialIds, length: src.tokenizer.length },
        weights: { ...weightsInfo },
        sources: await sources,
        ...(options.createdAt ? { createdAt: options.createdAt } : {}),
      });
    });
  } catch (e) {
    if (signal?.aborted && !(e instanceof SimpleARError && e.code === 'Aborted')) {
      throw new SimpleARError('Aborted', 'conversion aborted', { reason: String(signal.reason) });
    }
    throw e;
  }
}

/** Reads and checks every source's metadata before anything is converted. */
async function openSources(model: FileFolder, decoder: FileFolder, signal?: AbortSignal): Promise<OpenedSources> {
  const tokenizer = await loadTokenizer(model, signal);
  const config = await readModelConfig(model, tokenizer.length, signal);
  const lmReader = await openSafetensors(model, signal);
  const decoderReader = await openTorchScript(decoder.open(DECODER_FILE), signal);
  const decoderSpec = await describeDecoderFile(decoderReader, {}, signal);
  return { tokenizer, config, lmReader, decoderReader, decoderSpec };
}

interface PhaseOptions {
  signal?: AbortSignal | undefined;
  progress: (p: ConvertProgress) => void;
}

/** Streams the decoder's converted weights into the bundle; returns them if `keep`. */
async function writeDecoder(
  writer: BundleWriter,
  src: OpenedSources,
  opts: PhaseOptions & { dtype: WeightDType; fuse: boolean; keep: boolean },
): Promise<Map<string, NamedTensor> | undefined> {
  const reader = src.decoderReader;
  const plan = decoderWeightPlan(src.decoderSpec, { fuse: opts.fuse });
  const infos = new Map(reader.list().map((t) => [t.name, t]));
  const bytesOf = (name: string) => {
    const t = infos.get(name);
    return t ? numel(t.shape) * DTYPE_BYTES[t.dtype] : 0;
  };
  const entryBytes = plan.map((e) => bytesOf(e.source) + (e.then ? bytesOf(`${e.then}.weight`) + (e.kind === 'fusedBias' ? bytesOf(`${e.then}.bias`) : 0) : 0));
  const bytesTotal = entryBytes.reduce((a, b) => a + b, 0);
  const kept = opts.keep ? new Map<string, NamedTensor>() : undefined;
  let n = 0;
  let bytes = 0;
  for await (const t of convertDecoderWeights(reader, { spec: src.decoderSpec, dtype: opts.dtype, fuse: opts.fuse, signal: opts.signal })) {
    await writer.addTensor({ ...t, name: DECODER_PREFIX + t.name });
    kept?.set(t.name, t);
    bytes += entryBytes[n] ?? 0;
    n++;
    opts.progress({ phase: 'decoder', tensors: n, tensorsTotal: plan.length, bytes, bytesTotal, tensor: t.name });
  }
  return kept;
}

/** Streams the LM's converted weights into the bundle. */
async function writeLm(writer: BundleWriter, reader: TensorReader, spec: LmSpec, opts: PhaseOptions & { weights: LmWeightFormat }): Promise<void> {
  const tensorsTotal = lmTensorCount(spec, opts.weights, reader.has('lm_head.weight'));
  let n = 0;
  let read = { done: 0, total: 0 };
  const converted = convertLmWeights(reader, spec, {
    weights: opts.weights,
    ...(opts.signal ? { signal: opts.signal } : {}),
    onProgress: ({ done, total }) => (read = { done, total }),
  });
  for await (const t of converted) {
    await writer.addTensor({ ...t, name: LM_PREFIX + t.name });
    n++;
    opts.progress({ phase: 'lm', tensors: n, tensorsTotal, bytes: read.done, bytesTotal: read.total, tensor: t.name });
  }
}

/**
 * How many tensors convertLmWeights writes (see the layout at the top of lm-weights.ts):
 * per layer 2 norms + the qkv bias + 4 linears; the final norm; the head and text-embedding
 * tables (+ the visual embedding when untied). Quantized linears are q + scales + zero points;
 * quantized tables are q + scales (tables of a width that is not whole blocks stay f16).
 */
export function lmTensorCount(spec: LmSpec, weights: LmWeightFormat, hasLmHead: boolean): number {
  const quantized = weights === 'q4' || weights === 'q8';
  const linear = quantized ? 3 : 1;
  const table = quantized && spec.hiddenSize % QUANT_BLOCK === 0 ? 2 : 1;
  const tables = !spec.tieWordEmbeddings && hasLmHead ? 3 : 2;
  return spec.numLayers * (3 + 4 * linear) + 1 + tables * table;
}

/** Decodes a fixed pseudo-random grid with the converted decoder and fits the preview map to it. */
export async function fitPreview(ort: OrtModule, spec: CosmosDecoderSpec, weights: ReadonlyMap<string, NamedTensor>): Promise<LivePreviewFit> {
  const [h, w] = PREVIEW_GRID;
  const codes = previewGridCodes(spec.fsq.codebookSize);
  const runner = await DecoderRunner.create(ort, spec, weights, { activations: 'float32' });
  try {
    const image = await runner.decode(codes, h, w);
    return { map: fitPreviewMap(codes, h, w, image.rgba), grid: [h, w], seed: PREVIEW_SEED };
  } finally {
    await runner.release();
  }
}

/** The preview-fit grid: PCG32(PREVIEW_SEED) draws modulo the codebook size, raster order. */
export function previewGridCodes(codebookSize: number): number[] {
  const rng = new Pcg32(PREVIEW_SEED);
  return Array.from({ length: PREVIEW_GRID[0] * PREVIEW_GRID[1] }, () => rng.nextU32() % codebookSize);
}

// ---- provenance ------------------------------------------------------------------------------

const isHttp = (base: string) => /^https?:/i.test(base);

/** Where each part came from; for URL sources, the ETag and revision of each file if served. */
async function provenance(options: ConvertModelOptions, lmReader: TensorReader): Promise<BundleSource[]> {
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const index = lmReader.file.endsWith('.index.json')
    ? await readJson<{ weight_map: Record<string, string> }>(options.model, 'model.safetensors.index.json', options.signal)
    : null;
  const lmFiles = [
    'config.json',
    'generation_config.json',
    'tokenizer.json',
    'tokenizer_config.json',
    ...(index ? ['model.safetensors.index.json', ...new Set(Object.values(index.weight_map))] : ['model.safetensors']),
  ];
  return Promise.all([
    describeSource('lm', options.model, lmFiles, fetchImpl, options.signal),
    describeSource('decoder', options.decoder, [DECODER_FILE], fetchImpl, options.signal),
  ]);
}

async function describeSource(role: string, folder: FileFolder, files: string[], fetchImpl: typeof fetch, signal?: AbortSignal): Promise<BundleSource> {
  const source: BundleSource = { role, url: folder.base };
  if (!isHttp(folder.base) || !fetchImpl) return source;
  const etags: Record<string, string> = {};
  await Promise.all(
    files.map(async (file) => {
      const headers = await headHeaders(fetchImpl, new URL(file, folder.base.endsWith('/') ? folder.base : `${folder.base}/`).href, signal);
      const etag = headers?.get('x-linked-etag') ?? headers?.get('etag');
      if (etag) etags[file] = etag;
      const revision = headers?.get('x-repo-commit');
      if (revision) source.revision = revision;
    }),
  );
  if (Object.keys(etags).length) source.etags = Object.fromEntries(files.filter((f) => etags[f]).map((f) => [f, etags[f]!]));
  return source;
}

/**
 * Headers of a HEAD request, best effort (null on any failure). Hugging Face puts the commit and
 * the LFS hash on its redirect, so the redirect itself is read where the platform allows it.
 */
async function headHeaders(fetchImpl: typeof fetch, url: string, signal?: AbortSignal): Promise<Headers | null> {
  try {
    const first = await fetchImpl(url, { method: 'HEAD', redirect: 'manual', ...(signal ? { signal } : {}) });
    if (first.status >= 300 && first.status < 400 && (first.headers.get('x-repo-commit') || first.headers.get('x-linked-etag'))) {
      return first.headers;
    }
    if (first.ok) return first.headers;
    const followed = await fetchImpl(url, { method: 'HEAD', ...(signal ? { signal } : {}) });
    return followed.ok ? followed.headers : null;
  } catch {
    return null;
  }
}
