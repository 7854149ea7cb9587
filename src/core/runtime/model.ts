// Everything an engine needs from a model, whatever it was loaded from (a converted bundle, or
// the original checkpoints converted in memory): specs, tokenizer and the converted weights.
import type { LmSpec, NamedTensor } from '../base/model-spec.ts';
import type { TextTokenizer } from '../formats/tokenizer.ts';
import type { GenerationSettings } from '../formats/model-config.ts';
import type { CosmosDecoderSpec } from '../model/decoder-spec.ts';
import type { PreviewMap } from '../model/preview.ts';
import { buildLmGraph, buildLmGraphWithExternalData, type KvCacheMode, type LmGraphOptions, type QuantizedLinear, type QuantizedLookup } from '../model/lm-graph.ts';
import type { ModelWithExternalData } from '../base/onnx-builder.ts';

export interface EngineModel {
  name: string;
  lm: LmSpec;
  tokenizer: TextTokenizer;
  /** Converted LM weights by stable name (convert/lm-weights.ts). */
  lmWeights: ReadonlyMap<string, NamedTensor>;
  decoder: CosmosDecoderSpec;
  /** Converted decoder weights by name (model/decoder-weights.ts). */
  decoderWeights: ReadonlyMap<string, NamedTensor>;
  preview?: PreviewMap;
  /** What the checkpoint's generation_config.json says (its repetition penalty is the engine's
   * default); absent from bundles converted before it was recorded. */
  generation?: GenerationSettings;
}

export type Activations = 'f32' | 'f16';

/**
 * accuracyLevel: MatMulNBits' (model/lm-graph.ts LmGraphOptions; 0 computes with the activations as they
 * are). graphCapture: total_sequence_length fixed at the capacity, for a captured WebGPU session.
 * kvCache: model/lm-graph.ts LmGraphOptions.kvCache ('read-only' for onnxruntime-node). quantizedLookup:
 * model/lm-graph.ts LmGraphOptions.quantizedLookup ('Gather' for the wasm EP).
 */
export function lmGraphBytes(model: EngineModel, activations: Activations, capacity: number, options: LmGraphChoices = {}): Uint8Array {
  return buildLmGraph(model.lm, (n) => model.lmWeights.get(n), lmGraphOptions(activations, capacity, options));
}

/**
 * The graph of lmGraphBytes with its weights as external data (onnxruntime-web's session option
 * `externalData`): for the wasm EP, whose models must stay under 2 GB.
 */
export function lmGraphWithExternalData(model: EngineModel, activations: Activations, capacity: number, options: LmGraphChoices = {}): ModelWithExternalData {
  return buildLmGraphWithExternalData(model.lm, (n) => model.lmWeights.get(n), lmGraphOptions(activations, capacity, options));
}

/** What a backend chooses of the LM graph (model/lm-graph.ts LmGraphOptions). */
export interface LmGraphChoices {
  accuracyLevel?: 0 | 4;
  graphCapture?: boolean;
  kvCache?: KvCacheMode;
  quantizedLookup?: QuantizedLookup;
  quantizedLinear?: QuantizedLinear;
}

function lmGraphOptions(activations: Activations, capacity: number, options: LmGraphChoices): LmGraphOptions {
  return {
    activations,
    maxSeqLen: capacity,
    accuracyLevel: options.accuracyLevel ?? 0,
    ...(options.graphCapture ? { fixedTotalSequenceLength: capacity } : {}),
    ...(options.kvCache ? { kvCache: options.kvCache } : {}),
    ...(options.quantizedLookup ? { quantizedLookup: options.quantizedLookup } : {}),
    ...(options.quantizedLinear ? { quantizedLinear: options.quantizedLinear } : {}),
  };
}
