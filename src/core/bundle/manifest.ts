// The converted-bundle format: chunk files + manifest.json.
//
// Layout. All data items (tensors, then embedded files such as tokenizer.json) are laid end to
// end in ONE logical byte stream, each starting at a multiple of `layout.alignment` (zero
// padding between items). The stream is cut into chunk files of exactly `layout.chunkSize`
// bytes (the last one shorter). An item is addressed by the chunk it starts in and its offset
// there; a large item simply continues into the following chunks. So tensors may span chunks:
// the embedding (hundreds of MB) needs no special case, every chunk but the last has the same
// size (predictable memory, one IndexedDB value each), and a chunk is the unit of download,
// resume and SHA-256 integrity.
import { SimpleARError } from '../base/errors.ts';
import type { ElemType } from '../base/onnx-builder.ts';
import type { LmSpec } from '../base/model-spec.ts';
import type { GenerationSettings } from '../formats/model-config.ts';
import type { SpecialIds } from '../formats/tokenizer.ts';
export { sha256Hex } from '../base/sha256.ts';

export const BUNDLE_FORMAT = 'simplear-bundle';
export const BUNDLE_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024;
export const DEFAULT_ALIGNMENT = 64;

export const ELEM_BYTES: Readonly<Record<ElemType, number>> = {
  float32: 4,
  float16: 2,
  int64: 8,
  int32: 4,
  uint8: 1,
  bool: 1,
};

/** chunk-00000.bin, chunk-00001.bin, … */
export const chunkFileName = (index: number): string => `chunk-${String(index).padStart(5, '0')}.bin`;

/** Where one item (tensor or file) lives in the chunked stream. */
export interface BundleLocation {
  /** Index of the chunk the item starts in. */
  chunk: number;
  /** Byte offset in that chunk (a multiple of layout.alignment). */
  offset: number;
  /** Total bytes; may run on into the following chunks. */
  byteLength: number;
}

export interface BundleTensorEntry extends BundleLocation {
  name: string;
  type: ElemType;
  dims: number[];
}

export interface BundleFileEntry extends BundleLocation {
  name: string;
}

export interface BundleChunk {
  file: string;
  byteLength: number;
  /** Lower-case hex SHA-256 of the chunk file. */
  sha256: string;
}

/** Where the original weights came from (for cache invalidation and provenance). */
export interface BundleSource {
  /** What this source provided, e.g. "lm", "decoder". */
  role: string;
  /** Repo or base URL. */
  url: string;
  /** Git revision / commit, if known. */
  revision?: string;
  /** ETag (or X-Linked-Etag) per source file, if known. */
  etags?: Record<string, string>;
}

export interface BundleModel {
  lm: LmSpec;
  /** The VQ decoder's description (owned by the decoder converter; opaque here). */
  decoder: Record<string, unknown>;
  generation?: GenerationSettings;
  /** The live-preview colour map fitted at conversion time (see model-bundle.ts). */
  preview?: { map: number[]; grid: [number, number]; seed: number };
}

export interface BundleWeights {
  /** e.g. "q4", "q8", "f16": how the weights were converted. */
  mode: string;
  [key: string]: unknown;
}

export interface BundleTokenizer {
  /** Names of the embedded files (see `files`), e.g. tokenizer.json, tokenizer_config.json. */
  files: string[];
  specialIds: SpecialIds;
  /** len(tokenizer) = lm.visualOffset. */
  length: number;
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: typeof BUNDLE_VERSION;
  /** ISO 8601. */
  createdAt: string;
  model: BundleModel;
  tokenizer: BundleTokenizer;
  weights: BundleWeights;
  sources: BundleSource[];
  layout: { chunkSize: number; alignment: number; totalBytes: number };
  chunks: BundleChunk[];
  tensors: BundleTensorEntry[];
  files: BundleFileEntry[];
}

/** A bundle that is not what its manifest says: names the chunk / tensor / file concerned. */
export class BundleError extends SimpleARError {
  constructor(
    readonly where: string,
    problem: string,
    details: { chunk?: string; tensor?: string; file?: string; [k: string]: unknown } = {},
  ) {
    super('BundleInvalid', `${where}: ${problem}`, { where, ...details });
  }
}

export function numelOf(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;

/**
 * Parses and checks a manifest: format and version, and that every chunk, tensor and file entry
 * is consistent with the layout (sizes, bounds, dims × element size). `where` names the file.
 */
export function parseManifest(json: unknown, where = MANIFEST_FILE): BundleManifest {
  const bad = (problem: string, details: Record<string, unknown> = {}): never => {
    throw new BundleError(where, problem, details);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad('not a JSON object');
  const m = json as BundleManifest;
  if (m.format !== BUNDLE_FORMAT) bad(`not a ${BUNDLE_FORMAT} manifest (format ${JSON.stringify(m.format)})`);
  if (m.version !== BUNDLE_VERSION) {
    bad(
      isInt(m.version) && m.version > BUNDLE_VERSION
        ? `made by a newer version of the format (${m.version}; this build reads ${BUNDLE_VERSION})`
        : `unsupported format version ${JSON.stringify(m.version)}`,
    );
  }
  const layout = m.layout;
  if (!layout || !isInt(layout.chunkSize, 1) || !isInt(layout.alignment, 1) || !isInt(layout.totalBytes)) {
    bad('layout must have positive integer chunkSize and alignment, and totalBytes');
  }
  if (layout.chunkSize % layout.alignment !== 0) bad('layout.chunkSize is not a multiple of layout.alignment');
  if (typeof m.model !== 'object' || m.model === null || typeof m.model.lm !== 'object' || m.model.lm === null) {
    bad('model.lm is missing');
  }
  if (typeof m.model.decoder !== 'object' || m.model.decoder === null) bad('model.decoder is missing');
  if (typeof m.weights !== 'object' || m.weights === null || typeof m.weights.mode !== 'string') {
    bad('weights.mode is missing');
  }
  if (!Array.isArray(m.sources)) bad('sources must be an array');
  if (!Array.isArray(m.chunks) || !Array.isArray(m.tensors) || !Array.isArray(m.files)) {
    bad('chunks, tensors and files must be arrays');
  }

  let total = 0;
  m.chunks.forEach((c, i) => {
    if (typeof c?.file !== 'string' || !isInt(c.byteLength, 1) || !/^[0-9a-f]{64}$/.test(String(c.sha256))) {
      bad(`chunk ${i} must have file, byteLength > 0 and a hex sha256`, { chunk: c?.file });
    }
    const last = i === m.chunks.length - 1;
    if (last ? c.byteLength > layout.chunkSize : c.byteLength !== layout.chunkSize) {
      bad(`chunk ${c.file} is ${c.byteLength} bytes; the layout's chunk size is ${layout.chunkSize}`, {
        chunk: c.file,
      });
    }
    total += c.byteLength;
  });
  if (total !== layout.totalBytes) bad(`chunks hold ${total} bytes, layout.totalBytes says ${layout.totalBytes}`);

  const checkLocation = (kind: 'tensor' | 'file', e: BundleLocation & { name: string }) => {
    if (typeof e?.name !== 'string') bad(`a ${kind} entry has no name`);
    if (!isInt(e.chunk) || !isInt(e.offset) || !isInt(e.byteLength)) {
      bad(`${kind} ${e.name}: chunk, offset and byteLength must be integers ≥ 0`, { [kind]: e.name });
    }
    if (e.byteLength === 0) return;
    const start = e.chunk * layout.chunkSize + e.offset;
    if (e.offset >= layout.chunkSize || start + e.byteLength > total) {
      bad(`${kind} ${e.name} (bytes ${start}..${start + e.byteLength}) lies outside the ${total} stored bytes`, {
        [kind]: e.name,
      });
    }
  };
  const tensorNames = new Set<string>();
  for (const t of m.tensors) {
    checkLocation('tensor', t);
    if (tensorNames.has(t.name)) bad(`tensor ${t.name} is listed twice`, { tensor: t.name });
    tensorNames.add(t.name);
    const size = ELEM_BYTES[t.type];
    if (size === undefined) bad(`tensor ${t.name}: unknown type ${JSON.stringify(t.type)}`, { tensor: t.name });
    if (!Array.isArray(t.dims) || !t.dims.every((d) => isInt(d))) {
      bad(`tensor ${t.name}: dims must be integers ≥ 0`, { tensor: t.name });
    }
    if (numelOf(t.dims) * size !== t.byteLength) {
      bad(`tensor ${t.name}: dims ${JSON.stringify(t.dims)} × ${size} bytes ≠ byteLength ${t.byteLength}`, {
        tensor: t.name,
      });
    }
  }
  const fileNames = new Set<string>();
  for (const f of m.files) {
    checkLocation('file', f);
    if (fileNames.has(f.name)) bad(`file ${f.name} is listed twice`, { file: f.name });
    fileNames.add(f.name);
  }
  if (!m.tokenizer || !Array.isArray(m.tokenizer.files) || typeof m.tokenizer.specialIds !== 'object') {
    bad('tokenizer must list files and specialIds');
  }
  if (m.tokenizer.length !== m.model.lm.visualOffset) {
    bad(`tokenizer.length ${m.tokenizer.length} ≠ model.lm.visualOffset ${m.model.lm.visualOffset}`);
  }
  for (const f of m.tokenizer.files) {
    if (!fileNames.has(f)) bad(`tokenizer file ${f} is not among the embedded files`, { file: f });
  }
  return m;
}

