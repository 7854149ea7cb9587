// The repetition penalty against the PyTorch reference (tools/fixtures/make_penalty_golden.py) on the
// held-out checkpoint: greedy f32 generations with penalty 1.3 give the reference's tokens, plain
// and with SJD at several windows (each window row penalised for its own prefix); the
// checkpoint's generation_config.json value is the default a request may override.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { encodePrompt } from '../../src/core/model/prompt.ts';
import { SJD_WINDOW_LIMITS } from '../../src/core/engine/settings.ts';
import type { EngineModel } from '../../src/core/runtime/model.ts';
import { goldenGreedy, goldenRepetitionPenalty, loadFixtureModel } from '../helpers/fixture-model.ts';

const ref = goldenRepetitionPenalty();
const side = ref.grid[0];
const greedy = { prompt: ref.prompt, size: side * 16, temperature: 0, seed: 1 };

async function engineFor(model: EngineModel) {
  return createCpuEngine(ort, model, { maxLatentSide: side });
}

describe('repetition penalty (Transformers order: conditional stream, before CFG)', () => {
  it('the golden is one the penalty changes, from the prompts the engine encodes', async () => {
    expect(ref.checkpoint).toBe('tiny-simplear-b');
    expect(ref.repetition_penalty).not.toBe(1);
    expect(ref.codes).not.toEqual(ref.codes_without_penalty);
    // Without the penalty the reference's first 16 codes are golden.json's greedy ones.
    expect(ref.codes_without_penalty.slice(0, 16)).toEqual(goldenGreedy(ref.checkpoint).greedy.codes);
    const model = await loadFixtureModel(ref.checkpoint, 'tiny-cosmos-b', 'f32');
    expect(encodePrompt(model.tokenizer, ref.prompt, {})).toEqual({ cond: ref.cond_ids, uncond: ref.uncond_ids });
  });

  it(`greedy f32: the reference's tokens with penalty ${ref.repetition_penalty}, and without it; SJD gives the same at every window`, async () => {
    const engine = await engineFor(await loadFixtureModel(ref.checkpoint, 'tiny-cosmos-b', 'f32'));
    const penalised = await engine.generate({ ...greedy, repetitionPenalty: ref.repetition_penalty });
    expect(Array.from(penalised.codes)).toEqual(ref.codes);
    expect(penalised.settings.repetitionPenalty).toBe(ref.repetition_penalty);
    const off = await engine.generate({ ...greedy, repetitionPenalty: 1 });
    expect(Array.from(off.codes)).toEqual(ref.codes_without_penalty);
    for (const window of [1, 4, SJD_WINDOW_LIMITS.max]) {
      const sjd = await engine.generate({ ...greedy, repetitionPenalty: ref.repetition_penalty, sjd: { window } });
      expect(Array.from(sjd.codes), `window ${window}`).toEqual(ref.codes);
    }
    await engine.dispose();
  });

  it("the default is the checkpoint's generation_config.json value (1 where it has none); a request overrides it", async () => {
    const model = await loadFixtureModel(ref.checkpoint, 'tiny-cosmos-b', 'f32');
    // The fixture's generation_config.json sets no penalty.
    expect(model.generation?.repetitionPenalty).toBe(1);
    const plain = await engineFor(model);
    const byDefault = await plain.generate(greedy);
    expect(byDefault.settings.repetitionPenalty).toBe(1);
    expect(Array.from(byDefault.codes)).toEqual(ref.codes_without_penalty);
    await plain.dispose();
    const configured = await engineFor({ ...model, generation: { ...model.generation!, repetitionPenalty: ref.repetition_penalty } });
    const fromConfig = await configured.generate(greedy);
    expect(fromConfig.settings.repetitionPenalty).toBe(ref.repetition_penalty);
    expect(Array.from(fromConfig.codes)).toEqual(ref.codes);
    const overridden = await configured.generate({ ...greedy, repetitionPenalty: 1 });
    expect(Array.from(overridden.codes)).toEqual(ref.codes_without_penalty);
    await configured.dispose();
  });
});
