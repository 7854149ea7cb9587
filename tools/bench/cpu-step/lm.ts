// The language model section a times: the full-size random checkpoint converted to q4 when one
// has been written (and not --quick), else random-model.ts's weights of SimpleAR-0.5B's shapes.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SIMPLEAR_05B, type LmSpec, type NamedTensor } from '../../../src/core/base/model-spec.ts';
import { collectLmWeights } from '../../../src/core/convert/lm-weights.ts';
import { openFolder } from '../../../src/core/formats/byte-source.ts';
import { readModelConfig } from '../../../src/core/formats/model-config.ts';
import { openSafetensors } from '../../../src/core/formats/safetensors.ts';
import { loadTokenizer } from '../../../src/core/formats/tokenizer.ts';
import { encodePrompt } from '../../../src/core/model/prompt.ts';
import { memoryReader, randomCheckpoint } from '../../../tests/helpers/random-model.ts';
import { FULL_CHECKPOINT, SAMPLE_PROMPT } from '../inputs.ts';
import { log } from '../log.ts';

export interface BenchLm {
  spec: LmSpec;
  /** The converted (q4) tensors. */
  weights: Map<string, NamedTensor>;
  /** Where the weights came from, for the report. */
  source: string;
  /** Prompt tokens of the cond and uncond streams. */
  prompt: [number, number];
}

export async function loadLm(quick: boolean): Promise<BenchLm> {
  if (!quick && existsSync(join(FULL_CHECKPOINT, 'model.safetensors'))) {
    const folder = openFolder(FULL_CHECKPOINT);
    const tokenizer = await loadTokenizer(folder);
    const { lm } = await readModelConfig(folder, tokenizer.length);
    const t = performance.now();
    const weights = await collectLmWeights(await openSafetensors(folder), lm, { weights: 'q4' });
    const ids = encodePrompt(tokenizer, SAMPLE_PROMPT);
    log(`  q4 conversion of ${FULL_CHECKPOINT}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
    return { spec: lm, weights, source: `${FULL_CHECKPOINT} (random weights, converted to q4)`, prompt: [ids.cond.length, ids.uncond.length] };
  }
  // Full widths; --quick: 2 layers and a small text vocabulary (the head keeps its 64,000 rows).
  const spec: LmSpec = quick ? { ...SIMPLEAR_05B, numLayers: 2, visualOffset: 1000, vocabSize: 65000 } : SIMPLEAR_05B;
  const t = performance.now();
  const weights = await collectLmWeights(memoryReader(spec, randomCheckpoint(spec, 7)), spec, { weights: 'q4' });
  log(`  random checkpoint (random-model.ts) → q4: ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return { spec, weights, source: quick ? 'random-model.ts, full widths, 2 layers (--quick)' : 'random-model.ts (SimpleAR-0.5B shapes)', prompt: [24, 96] };
}
