// Loads a tiny fixture checkpoint (original HF + Cosmos formats) into an EngineModel, converting
// in memory with the same converters the bundle path uses.
import { join } from 'node:path';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import type { LmWeightFormat } from '../../src/core/convert/lm/convert-weights.ts';
import type { EngineModel } from '../../src/core/engine/model.ts';
import { loadOriginalModel } from '../../src/core/engine/load-original.ts';

export const FIXTURES = join(import.meta.dirname, '../fixtures');

export function loadFixtureModel(checkpoint = 'tiny-simplear', cosmos = 'tiny-cosmos', weights: LmWeightFormat = 'f32'): Promise<EngineModel> {
  return loadOriginalModel(openFolder(join(FIXTURES, checkpoint)), openFolder(join(FIXTURES, cosmos)), {
    weights,
    decoderDtype: 'f32',
    name: `${checkpoint}+${cosmos}`,
  });
}
