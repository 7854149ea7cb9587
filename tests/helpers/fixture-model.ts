// Loads a tiny fixture checkpoint (original HF + Cosmos formats) into an EngineModel, converting
// in memory with the same converters the bundle path uses.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LocalFileSource, openFolder } from '../../src/core/formats/byte-source.ts';
import type { LmWeightFormat } from '../../src/core/convert/lm-weights.ts';
import type { EngineModel } from '../../src/core/runtime/model.ts';
import { loadOriginalModel } from '../../src/core/engine/load-original.ts';
import { openTorchScript } from '../../src/core/formats/torchscript/index.ts';
import { collectWeights, convertDecoderWeights, describeDecoderFile, type CosmosDecoderSpec } from '../../src/core/model/decoder.ts';
import type { NamedTensor } from '../../src/core/base/model-spec.ts';

export const FIXTURES = join(import.meta.dirname, '../fixtures');

export function loadFixtureModel(checkpoint = 'tiny-simplear', cosmos = 'tiny-cosmos', weights: LmWeightFormat = 'f32'): Promise<EngineModel> {
  return loadOriginalModel(openFolder(join(FIXTURES, checkpoint)), openFolder(join(FIXTURES, cosmos)), {
    weights,
    decoderDtype: 'f32',
    name: `${checkpoint}+${cosmos}`,
  });
}

/** A fixture's Cosmos decoder (`cosmos`/decoder.jit) described and converted with its weights in `dtype`. */
export async function loadFixtureDecoder(cosmos: string, dtype: 'f32' | 'f16'): Promise<{ spec: CosmosDecoderSpec; weights: Map<string, NamedTensor> }> {
  const reader = await openTorchScript(new LocalFileSource(join(FIXTURES, cosmos, 'decoder.jit')));
  const spec = await describeDecoderFile(reader);
  return { spec, weights: await collectWeights(convertDecoderWeights(reader, { spec, dtype })) };
}

/** A greedy-generation case of golden.json: the PyTorch reference's tokens for a fixture prompt. */
export interface GoldenGreedyCase {
  checkpoint: string;
  prompt: string;
  greedy: { steps: number; codes: number[] };
}

/** The reference's greedy case for `checkpoint` (tools/fixtures/make_fixtures.py wrote golden.json). */
export function goldenGreedy(checkpoint: string): GoldenGreedyCase {
  const golden = JSON.parse(readFileSync(join(FIXTURES, 'golden/golden.json'), 'utf8')) as { lm: GoldenGreedyCase[] };
  const found = golden.lm.find((c) => c.checkpoint === checkpoint);
  if (!found) throw new Error(`golden.json has no LM case for ${checkpoint}`);
  return found;
}

/** The reference's greedy tokens with a repetition penalty (tools/fixtures/make_penalty_golden.py). */
export interface GoldenPenaltyCase {
  checkpoint: string;
  prompt: string;
  cond_ids: number[];
  uncond_ids: number[];
  cfg_scale: number;
  repetition_penalty: number;
  grid: [number, number];
  codes: number[];
  codes_without_penalty: number[];
}

export function goldenRepetitionPenalty(): GoldenPenaltyCase {
  return JSON.parse(readFileSync(join(FIXTURES, 'golden/repetition-penalty.json'), 'utf8')) as GoldenPenaltyCase;
}

/** golden/keep-rows.json (tools/fixtures/make_keep_golden.py): greedy codes below a kept prefix of rows. */
export interface GoldenKeepRows {
  checkpoint: string;
  prompt: string;
  cond_ids: number[];
  uncond_ids: number[];
  grid: [number, number];
  /** The grid whose top rows are kept (the plain greedy image's rows, reversed). */
  kept_grid: number[];
  /** The plain greedy image (nothing kept, penalty 1). */
  codes_own_greedy: number[];
  cases: {
    keep_rows: number;
    repetition_penalty: number;
    /** The kept codes, then the reference's greedy ones. */
    codes: number[];
    min_top2_gap: number;
    /** With a penalty: what the draw would be if the kept codes were left out of the penalised set. */
    codes_if_kept_not_penalised?: number[];
  }[];
}

export function goldenKeepRows(): GoldenKeepRows {
  return JSON.parse(readFileSync(join(FIXTURES, 'golden/keep-rows.json'), 'utf8')) as GoldenKeepRows;
}
