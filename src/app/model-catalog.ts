// The models the page offers, where their files come from (the released checkpoints, or a mirror
// named in the page's URL), and whether this device can hold them. Pure: no DOM, no network.
import type { LoadModelOptions, ModelSource } from '../client/protocol.ts';
import type { DeviceFacts } from '../core/runtime/device.ts';
import { DEFAULT_VQ_URL, sourceFromQuery } from '../client/model-source.ts';
import { SIMPLEAR_05B, type LmSpec } from '../core/base/model-spec.ts';
import { SimpleARError } from '../core/base/errors.ts';
import { lmRuntimeBytes, planBackend } from '../core/engine/capabilities.ts';
import type { LmWeightFormat } from '../core/model/quantize.ts';

const HUB = 'https://huggingface.co';

export interface CatalogEntry {
  id: string;
  label: string;
  /** The model repository (owner/name). */
  repo: string;
  /** Parameters of the language model (Qwen2.5 + 64,000 visual embedding rows), approximate. */
  parameters: number;
  /** The LM's shapes (its config.json), which size every weight the engine will hold. */
  lm: LmSpec;
  note: string;
}

/** SimpleAR-1.5B: Qwen2.5-1.5B's shapes with the same vocabulary as the 0.5B. */
/** NVIDIA's DV8x16x16 decoder (the same for every model here). */
const DECODER_PARAMS = 66_148_080;

const SIMPLEAR_15B: LmSpec = { ...SIMPLEAR_05B, hiddenSize: 1536, numLayers: 28, numHeads: 12, numKvHeads: 2, headDim: 128, intermediateSize: 8960 };

export const CATALOG: readonly CatalogEntry[] = [
  {
    id: 'simplear-0.5b-rl',
    label: 'SimpleAR-0.5B-RL',
    repo: 'Daniel0724/SimpleAR-0.5B-RL',
    parameters: 0.55e9,
    lm: SIMPLEAR_05B,
    note: 'the default: tuned with reinforcement learning, the best images of the 0.5B models',
  },
  {
    id: 'simplear-0.5b-sft',
    label: 'SimpleAR-0.5B-SFT',
    repo: 'Daniel0724/SimpleAR-0.5B-SFT',
    parameters: 0.55e9,
    lm: SIMPLEAR_05B,
    note: 'the same model before reinforcement learning',
  },
  {
    id: 'simplear-1.5b-rl',
    label: 'SimpleAR-1.5B-RL',
    repo: 'Daniel0724/SimpleAR-1.5B-RL',
    parameters: 1.64e9,
    lm: SIMPLEAR_15B,
    note: 'larger and slower; needs a GPU with more memory',
  },
  {
    id: 'simplear-1.5b-sft',
    label: 'SimpleAR-1.5B-SFT',
    repo: 'Daniel0724/SimpleAR-1.5B-SFT',
    parameters: 1.64e9,
    lm: SIMPLEAR_15B,
    note: 'the 1.5B model before reinforcement learning',
  },
];

export const DEFAULT_MODEL_ID = 'simplear-0.5b-rl';

/**
 * Bytes of the engine's largest single GPU buffer with `weights`: the converted model splits the
 * tied embedding into the text table (151,672 rows) and the visual head (64,000 rows), so the
 * larger of the two, the text table, in the chosen format (capabilities.ts holds the same rule).
 */
export function largestWeightBytes(entry: CatalogEntry, weights: LmWeightFormat, activations: 'f16' | 'f32'): number {
  const table = (rows: number) => lmRuntimeBytes({ ...entry.lm, numLayers: 0, visualOffset: rows, visualCount: 0 }, weights, activations);
  return Math.max(table(entry.lm.visualOffset), table(entry.lm.visualCount));
}

export function sourceOf(entry: CatalogEntry): ModelSource {
  return { kind: 'original', model: `${HUB}/${entry.repo}/resolve/main/`, vq: DEFAULT_VQ_URL };
}

export type Suitability = { ok: true } | { ok: false; reason: string };

/**
 * Whether this device can hold `entry` with `weights` (the page's choice, q4 unless the URL says
 * otherwise): the engine's own plan (capabilities.ts planBackend) must accept it, i.e. the text
 * table must fit one storage binding and one buffer, the LM one ONNX model, and on the CPU the
 * wasm heap; the 1.5B models also want a device that reports at least 8 GB of memory
 * (navigator.deviceMemory, where the browser tells). Without WebGPU only the 0.5B models.
 */
export function suitability(entry: CatalogEntry, device: DeviceFacts, deviceMemoryGB?: number, weights: LmWeightFormat = 'q4'): Suitability {
  const large = entry.parameters > 1e9;
  if (!device.ok && large) {
    return { ok: false, reason: 'without WebGPU only the 0.5B models are offered: on the CPU they are already slow, and the 1.5B ones are about three times larger' };
  }
  try {
    planBackend({ lm: entry.lm, weights, decoderParams: DECODER_PARAMS }, { backend: 'auto' }, device);
  } catch (e) {
    if (e instanceof SimpleARError && e.code === 'BackendUnsupported') return { ok: false, reason: e.message };
    throw e;
  }
  if (!device.ok) return { ok: true };
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
