// The models the page offers, where their files come from (the released checkpoints, or a mirror
// named in the page's URL), and whether this device can hold them. Pure: no DOM, no network.
import type { LoadModelOptions, ModelSource } from '../client/protocol.ts';
import type { DeviceFacts } from '../core/runtime/device.ts';
import { DEFAULT_VQ_URL, sourceFromQuery } from '../client/model-source.ts';

const HUB = 'https://huggingface.co';

export interface CatalogEntry {
  id: string;
  label: string;
  /** The model repository (owner/name). */
  repo: string;
  /** Parameters of the language model (Qwen2.5 + 64,000 visual embedding rows), approximate. */
  parameters: number;
  /** Rows × width of the tied embedding / visual head: the engine's largest single weight. */
  embedding: { rows: number; width: number };
  note: string;
}

/** Visual (64,000) + text (151,672) rows of SimpleAR's tied embedding. */
const VOCAB_ROWS = 215_672;

export const CATALOG: readonly CatalogEntry[] = [
  {
    id: 'simplear-0.5b-rl',
    label: 'SimpleAR-0.5B-RL',
    repo: 'Daniel0724/SimpleAR-0.5B-RL',
    parameters: 0.55e9,
    embedding: { rows: VOCAB_ROWS, width: 896 },
    note: 'the default: tuned with reinforcement learning, the best images of the 0.5B models',
  },
  {
    id: 'simplear-0.5b-sft',
    label: 'SimpleAR-0.5B-SFT',
    repo: 'Daniel0724/SimpleAR-0.5B-SFT',
    parameters: 0.55e9,
    embedding: { rows: VOCAB_ROWS, width: 896 },
    note: 'the same model before reinforcement learning',
  },
  {
    id: 'simplear-1.5b-rl',
    label: 'SimpleAR-1.5B-RL',
    repo: 'Daniel0724/SimpleAR-1.5B-RL',
    parameters: 1.64e9,
    embedding: { rows: VOCAB_ROWS, width: 1536 },
    note: 'larger and slower; needs a GPU with more memory',
  },
  {
    id: 'simplear-1.5b-sft',
    label: 'SimpleAR-1.5B-SFT',
    repo: 'Daniel0724/SimpleAR-1.5B-SFT',
    parameters: 1.64e9,
    embedding: { rows: VOCAB_ROWS, width: 1536 },
    note: 'the 1.5B model before reinforcement learning',
  },
];

export const DEFAULT_MODEL_ID = 'simplear-0.5b-rl';

/** 4-bit blocks of 32 with one f16 scale each: 0.5 + 2/32 bytes per weight. */
const Q4_BYTES_PER_WEIGHT = 0.5 + 2 / 32;

/** Estimated bytes of the engine's largest single GPU buffer (the embedding, 4-bit). */
export function largestWeightBytes(entry: CatalogEntry): number {
  return Math.ceil(entry.embedding.rows * entry.embedding.width * Q4_BYTES_PER_WEIGHT);
}

export function sourceOf(entry: CatalogEntry): ModelSource {
  return { kind: 'original', model: `${HUB}/${entry.repo}/resolve/main/`, vq: DEFAULT_VQ_URL };
}

export type Suitability = { ok: true } | { ok: false; reason: string };

/**
 * Whether this device can hold `entry`: the largest weight must fit one storage binding and one
 * buffer; the 1.5B models also want a device that reports at least 8 GB of memory
 * (navigator.deviceMemory, where the browser tells). Without WebGPU only the 0.5B models.
 */
export function suitability(entry: CatalogEntry, device: DeviceFacts, deviceMemoryGB?: number): Suitability {
  const largest = largestWeightBytes(entry);
  const large = entry.parameters > 1e9;
  if (!device.ok) {
    return large ? { ok: false, reason: 'without WebGPU only the 0.5B models are offered: on the CPU they are already slow, and the 1.5B ones are about three times larger' } : { ok: true };
  }
  const { maxBufferSize, maxStorageBufferBindingSize } = device.limits;
  const limit = Math.min(maxBufferSize, maxStorageBufferBindingSize);
  if (limit < largest) {
    const mb = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
    return { ok: false, reason: `its largest weight (about ${mb(largest)}) exceeds this GPU’s buffer limit (${mb(limit)})` };
  }
  if (large && deviceMemoryGB !== undefined && deviceMemoryGB < 8) {
    return { ok: false, reason: `this device reports ${deviceMemoryGB} GB of memory; the 1.5B models need about 8 GB` };
  }
  return { ok: true };
}

/** A model source named in the page's URL (?model=&vq=, or ?bundle=), for mirrors and self-hosting. */
export type UrlSource = { source: ModelSource; label: string } | { error: string } | null;

export function sourceFromUrl(params: URLSearchParams, base: string): UrlSource {
  if (!params.has('bundle') && !params.has('model') && !params.has('vq')) return null;
  try {
    const source = sourceFromQuery(params.toString(), base);
    return { source, label: source.kind === 'bundle' ? `Bundle from ${source.url}` : `Model from ${source.model}` };
  } catch (e) {
    return { error: `The model address in this page’s URL cannot be used: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** Engine options the URL may set: ?weights=q4|q8|f16|f32 (default q4). */
export function optionsFromUrl(params: URLSearchParams): LoadModelOptions {
  const weights = params.get('weights');
  const options: LoadModelOptions = { backend: 'auto' };
  if (weights === 'q4' || weights === 'q8' || weights === 'f16' || weights === 'f32') options.weights = weights;
  const decoder = params.get('decoder');
  if (decoder === 'f16' || decoder === 'f32') options.decoderDtype = decoder;
  return options;
}
