// Loads a model straight from the original checkpoints (HF-layout SimpleAR folder + Cosmos
// decoder.jit folder, local or by URL), converting in memory with the bundle's converters.
import type { FileFolder } from '../formats/byte-source.ts';
import { openSafetensors } from '../formats/safetensors.ts';
import { readModelConfig } from '../formats/model-config.ts';
import { loadTokenizer } from '../formats/tokenizer.ts';
import { openTorchScript } from '../formats/torchscript/index.ts';
import { collectLmWeights, type LmWeightFormat } from '../convert/lm-weights.ts';
import { convertDecoderWeights, describeDecoderFile } from '../model/decoder.ts';
import type { NamedTensor } from '../base/model-spec.ts';
import type { EngineModel } from '../runtime/model.ts';

export interface LoadOriginalOptions {
  weights?: LmWeightFormat;
  decoderDtype?: 'f16' | 'f32';
  name?: string;
  signal?: AbortSignal;
}

export async function loadOriginalModel(model: FileFolder, vq: FileFolder, options: LoadOriginalOptions = {}): Promise<EngineModel> {
  const { signal } = options;
  const tokenizer = await loadTokenizer(model, signal);
  const { lm, generation } = await readModelConfig(model, tokenizer.length, signal);
  const lmWeights = await collectLmWeights(await openSafetensors(model, signal), lm, { weights: options.weights ?? 'q4', signal });
  const jit = await openTorchScript(vq.open('decoder.jit'), signal);
  const decoder = await describeDecoderFile(jit, {}, signal);
  const decoderWeights = new Map<string, NamedTensor>();
  for await (const t of convertDecoderWeights(jit, { dtype: options.decoderDtype ?? 'f16', spec: decoder, signal })) {
    decoderWeights.set(t.name, t);
  }
  return { name: options.name ?? model.base, lm, tokenizer, lmWeights, decoder, decoderWeights, generation };
}
