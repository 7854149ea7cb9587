// Everything an engine needs from a model, whatever it was loaded from (a converted bundle, or
// the original checkpoints converted in memory): specs, tokenizer and the converted weights.
import type { LmSpec, NamedTensor } from '../model-spec.ts';
import type { TextTokenizer } from '../formats/tokenizer.ts';
import type { CosmosDecoderSpec } from '../convert/vq/describe.ts';
import type { PreviewMap } from '../preview.ts';
import { buildLmGraph, type KvCacheMode } from '../convert/lm/graph.ts';
import { buildDecoderGraph } from '../convert/vq/graph.ts';

export interface EngineModel {
  name: string;
  lm: LmSpec;
  tokenizer: TextTokenizer;
  /** Converted LM weights by stable name (convert-weights.ts). */
  lmWeights: ReadonlyMap<string, NamedTensor>;
  decoder: CosmosDecoderSpec;
  /** Converted decoder weights by name (vq/weights.ts). */
  decoderWeights: ReadonlyMap<string, NamedTensor>;
  preview?: PreviewMap;
}

export type Activations = 'f32' | 'f16';

/**
 * accuracyLevel: MatMulNBits' (graph.ts LmGraphOptions; 0 computes with the activations as they
 * are). graphCapture: total_sequence_length fixed at the capacity, for a captured WebGPU session.
 * kvCache: graph.ts LmGraphOptions.kvCache ('read-only' for onnxruntime-node).
 */
export function lmGraphBytes(
  model: EngineModel,
  activations: Activations,
  capacity: number,
  options: { accuracyLevel?: 0 | 4; graphCapture?: boolean; kvCache?: KvCacheMode } = {},
): Uint8Array {
  return buildLmGraph(model.lm, (n) => model.lmWeights.get(n), {
    activations,
    maxSeqLen: capacity,
    accuracyLevel: options.accuracyLevel ?? 0,
    ...(options.graphCapture ? { fixedTotalSequenceLength: capacity } : {}),
    ...(options.kvCache ? { kvCache: options.kvCache } : {}),
  });
}

export function decoderGraphBytes(model: EngineModel, activations: Activations): Uint8Array {
  return buildDecoderGraph(model.decoder, model.decoderWeights, { activations: activations === 'f16' ? 'float16' : 'float32' });
}
