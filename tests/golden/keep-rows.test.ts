// Redraw below a row against the PyTorch reference (tools/fixtures/make_keep_golden.py) on the
// held-out checkpoint: with the top K rows of a grid teacher-forced after both prompts, greedy f32
// generations give the reference's codes below them, plain and with SJD, with and without a
// repetition penalty (whose seen set holds the kept codes); bad keeps fail before any work.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { encodePrompt } from '../../src/core/model/prompt.ts';
import { SJD_WINDOW_LIMITS } from '../../src/core/engine/settings.ts';
import type { GenerationProgress } from '../../src/core/engine/types.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';
import { goldenGreedy, goldenKeepRows, loadFixtureModel } from '../helpers/fixture-model.ts';

const ref = goldenKeepRows();
const side = ref.grid[1];
const greedy = { prompt: ref.prompt, size: side * 16, temperature: 0, seed: 1, repetitionPenalty: 1 };

async function engine() {
  return createCpuEngine(ort, await loadFixtureModel(ref.checkpoint, 'tiny-cosmos-b', 'f32'), { maxLatentSide: side });
}

describe('kept rows (redraw below a row)', () => {
  it('the golden keeps rows that are not the model’s own, from the prompts the engine encodes', async () => {
    expect(ref.checkpoint).toBe('tiny-simplear-b');
    expect(ref.codes_own_greedy.slice(0, 16)).toEqual(goldenGreedy(ref.checkpoint).greedy.codes);
    for (const c of ref.cases) {
      const K = c.keep_rows * side;
      expect(c.codes.slice(0, K)).toEqual(ref.kept_grid.slice(0, K));
      // The rows below differ from the plain image's: the kept prefix changed what follows.
      expect(c.codes.slice(K)).not.toEqual(ref.codes_own_greedy.slice(K));
      if (c.codes_if_kept_not_penalised) expect(c.codes_if_kept_not_penalised).not.toEqual(c.codes);
    }
    const model = await loadFixtureModel(ref.checkpoint, 'tiny-cosmos-b', 'f32');
    expect(encodePrompt(model.tokenizer, ref.prompt, {})).toEqual({ cond: ref.cond_ids, uncond: ref.uncond_ids });
  });

  it('greedy f32: the reference’s codes below every kept prefix, plain and SJD at windows 1, 4 and 30', async () => {
    const e = await engine();
    for (const c of ref.cases) {
      const keep = { codes: ref.kept_grid, rows: c.keep_rows };
      const label = `K ${c.keep_rows}, penalty ${c.repetition_penalty}`;
      const plain = await e.generate({ ...greedy, repetitionPenalty: c.repetition_penalty, keep });
      expect(Array.from(plain.codes), label).toEqual(c.codes);
      expect(plain.keptRows).toBe(c.keep_rows);
      expect(plain.stats.steps).toBe(side * side - c.keep_rows * side);
      for (const window of [1, 4, SJD_WINDOW_LIMITS.max]) {
        const sjd = await e.generate({ ...greedy, repetitionPenalty: c.repetition_penalty, keep, sjd: { window } });
        expect(Array.from(sjd.codes), `${label}, SJD window ${window}`).toEqual(c.codes);
      }
    }
    // Keeping 0 rows is a plain generation.
    const none = await e.generate({ ...greedy, keep: { codes: ref.kept_grid, rows: 0 } });
    expect(Array.from(none.codes)).toEqual(ref.codes_own_greedy);
    expect(none.keptRows).toBeUndefined();
    await e.dispose();
  });

  it('progress starts at the kept rows, with their codes, and reports each row below once', async () => {
    const e = await engine();
    const K = 3;
    const events: GenerationProgress[] = [];
    await e.generate({ ...greedy, keep: { codes: ref.kept_grid, rows: K } }, { onProgress: (p) => events.push(p), progressIntervalMs: 0 });
    const decode = events.filter((p) => p.phase === 'decode');
    expect(decode[0]!.done).toBe(K * side);
    expect(Array.from(decode[0]!.codes!)).toEqual(ref.kept_grid.slice(0, K * side));
    const rows = decode.filter((p) => p.codes).map((p) => p.done);
    expect(rows).toEqual([3, 4, 5, 6].map((r) => r * side));
    const done = decode.map((p) => p.done);
    expect(done).toEqual([...done].sort((a, b) => a - b));
    await e.dispose();
  });

  it('with a sampled seed, the codes below equal a plain generation’s when the kept rows are its own (uniforms keyed on the step)', async () => {
    const e = await engine();
    const sampled = { prompt: ref.prompt, size: side * 16, temperature: 1, topK: 50, seed: 1234 };
    const whole = await e.generate(sampled);
    const below = await e.generate({ ...sampled, keep: { codes: whole.codes, rows: 2 } });
    expect(Array.from(below.codes)).toEqual(Array.from(whole.codes));
    const other = await e.generate({ ...sampled, seed: 99, keep: { codes: whole.codes, rows: 2 } });
    expect(Array.from(other.codes.slice(0, 2 * side))).toEqual(Array.from(whole.codes.slice(0, 2 * side)));
    expect(Array.from(other.codes.slice(2 * side))).not.toEqual(Array.from(whole.codes.slice(2 * side)));
    await e.dispose();
  });

  it('rows outside 0 … side − 1, codes of another size or outside the visual range fail before any work', async () => {
    const e = await engine();
    const bad = [
      { codes: ref.kept_grid, rows: side },
      { codes: ref.kept_grid, rows: -1 },
      { codes: ref.kept_grid, rows: 1.5 },
      { codes: ref.kept_grid.slice(1), rows: 1 },
      { codes: [...ref.kept_grid.slice(1), 64000], rows: 1 },
      { codes: [...ref.kept_grid.slice(1), -1], rows: 1 },
    ];
    for (const keep of bad) {
      let progress = 0;
      const call = () => e.generate({ ...greedy, keep }, { onProgress: () => progress++ });
      expect(call, JSON.stringify(keep.rows)).toThrow(SimpleARError);
      try {
        call();
      } catch (err) {
        expect((err as SimpleARError).code).toBe('InvalidSettings');
        expect((err as SimpleARError).message).toMatch(/^keep: /);
      }
      expect(progress).toBe(0);
    }
    await e.dispose();
  });
});
