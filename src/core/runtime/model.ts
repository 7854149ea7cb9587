// Everything an engine needs from a model, whatever it was loaded from (a converted bundle, or
// the original checkpoints converted in memory): specs, tokenizer and the converted weights.
import { SimpleARError } from '../base/errors.ts';
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
 * Engine option `releaseWeights`: the model was loaded for this one engine, which may empty its
 * weight maps as soon as its sessions hold their own copy (the wasm heap, GPU buffers), so the
 * bytes can be collected before the next session is built rather than live beside all of them.
 */
export interface WeightRelease {
  releaseWeights?: boolean;
}

/** Empties one part's weights (WeightRelease); the model can make no other engine afterwards. */
export function releaseWeights(weights: ReadonlyMap<string, NamedTensor>): void {
  if (weights instanceof Map) weights.clear();
}

/** Throws when a part's weights were released by an engine made from this model before. */
export function checkWeightsHeld(model: EngineModel): void {
  if (model.lmWeights.size === 0 || model.decoderWeights.size === 0) {
    throw new SimpleARError('InvalidSettings', `the weights of ${model.name} were released by the engine made from it: load the model again to make another engine`);
  }
}

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
