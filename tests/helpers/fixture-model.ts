// Loads a tiny fixture checkpoint (original HF + Cosmos formats) straight into an EngineModel,
// converting in memory: the same converters the bundle path uses, without the bundle.
import { join } from 'node:path';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { openSafetensors } from '../../src/core/formats/safetensors.ts';
import { readModelConfig } from '../../src/core/formats/model-config.ts';
import { loadTokenizer } from '../../src/core/formats/tokenizer.ts';
import { openTorchScript } from '../../src/core/formats/torchscript/index.ts';
import { collectLmWeights, type LmWeightFormat } from '../../src/core/convert/lm/convert-weights.ts';
import { convertDecoderWeights, describeDecoderFile } from '../../src/core/convert/vq/index.ts';
import type { NamedTensor } from '../../src/core/model-spec.ts';
import type { EngineModel } from '../../src/core/engine/model.ts';

export const FIXTURES = join(import.meta.dirname, '../fixtures');

export async function loadFixtureModel(
  checkpoint = 'tiny-simplear',
  cosmos = 'tiny-cosmos',
  weights: LmWeightFormat = 'f32',
): Promise<EngineModel> {
  const folder = openFolder(join(FIXTURES, checkpoint));
  const tokenizer = await loadTokenizer(folder);
  const { lm } = await readModelConfig(folder, tokenizer.length);
  const lmWeights = await collectLmWeights(await openSafetensors(folder), lm, { weights });
  const jit = await openTorchScript(openFolder(join(FIXTURES, cosmos)).open('decoder.jit'));
  const decoder = await describeDecoderFile(jit);
  const decoderWeights = new Map<string, NamedTensor>();
  for await (const t of convertDecoderWeights(jit, { dtype: 'f32', spec: decoder })) decoderWeights.set(t.name, t);
  return { name: `${checkpoint}+${cosmos}`, lm, tokenizer, lmWeights, decoder, decoderWeights };
}
