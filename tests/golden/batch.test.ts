// Several images per request (generateImages, count N): one pass of 2N streams on the CPU engine.
// Greedy f32 batches give the PyTorch reference's tokens for every image (plain, with a
// repetition penalty, below kept rows); sampled image i equals the single generation with seed
// s + i; SJD runs the images one after another; bad counts and counts whose KV cache would not fit
// fail before any work.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { kvBytesPerStream } from '../../src/core/engine/engine.ts';
import { MAX_IMAGES_PER_REQUEST } from '../../src/core/engine/settings.ts';
import type { GenerationProgress } from '../../src/core/engine/types.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';
import { goldenKeepRows, goldenRepetitionPenalty, loadFixtureModel } from '../helpers/fixture-model.ts';

const penalty = goldenRepetitionPenalty();
const keepRef = goldenKeepRows();
const side = penalty.grid[0];
const greedy = { prompt: penalty.prompt, size: side * 16, temperature: 0, seed: 1 };
const sampled = { prompt: penalty.prompt, size: side * 16, temperature: 1, topK: 50, seed: 4000 };

async function engine(batchMemoryBytes?: number) {
  const model = await loadFixtureModel(penalty.checkpoint, 'tiny-cosmos-b', 'f32');
  return createCpuEngine(ort, model, { maxLatentSide: side, ...(batchMemoryBytes !== undefined ? { batchMemoryBytes } : {}) });
}

const codesOf = (r: { codes: Int32Array }) => Array.from(r.codes);

describe('N images per request in one pass', () => {
  it('greedy f32: every image of a batch has the reference’s tokens, with and without a penalty and below kept rows', async () => {
    expect(keepRef.checkpoint).toBe(penalty.checkpoint);
    const e = await engine();
    const plain = await e.generateImages({ ...greedy, count: 3, repetitionPenalty: 1 });
    expect(plain).toHaveLength(3);
    for (const r of plain) expect(codesOf(r)).toEqual(penalty.codes_without_penalty);
    const penalised = await e.generateImages({ ...greedy, count: 2, repetitionPenalty: penalty.repetition_penalty });
    for (const r of penalised) expect(codesOf(r)).toEqual(penalty.codes);
    for (const c of keepRef.cases) {
      const kept = await e.generateImages({ ...greedy, count: 2, repetitionPenalty: c.repetition_penalty, keep: { codes: keepRef.kept_grid, rows: c.keep_rows } });
      for (const r of kept) {
        expect(codesOf(r), `K ${c.keep_rows}`).toEqual(c.codes);
        expect(r.keptRows).toBe(c.keep_rows);
      }
    }
    // One pass: one prefill and one LM run per step for all images, the pass's size in the stats.
    expect(plain[0]!.stats).toMatchObject({ imagesPerPass: 3, prefillRuns: 1, runs: side * side - 1 });
    expect(plain.map((r) => r.image)).toEqual([0, 1, 2].map((index) => ({ index, count: 3 })));
    await e.dispose();
  });

  it('sampled: image i is the single generation with seed s + i, token for token', async () => {
    const e = await engine();
    const batch = await e.generateImages({ ...sampled, count: 4 });
    expect(batch.map((r) => r.settings.seed)).toEqual([4000, 4001, 4002, 4003]);
    for (let i = 0; i < 4; i++) {
      const single = await e.generate({ ...sampled, seed: sampled.seed + i });
      expect(codesOf(batch[i]!), `image ${i}`).toEqual(codesOf(single));
      expect(Array.from(batch[i]!.rgba)).toEqual(Array.from(single.rgba));
    }
    // Different seeds, different images.
    expect(new Set(batch.map((r) => codesOf(r).join(','))).size).toBe(4);
    // A penalty and kept rows, sampled: each image still equals its single generation.
    const keep = { codes: batch[0]!.codes, rows: 2 };
    const kept = await e.generateImages({ ...sampled, seed: 77, count: 2, repetitionPenalty: 1.3, keep });
    for (let i = 0; i < 2; i++) {
      expect(codesOf(kept[i]!)).toEqual(codesOf(await e.generate({ ...sampled, seed: 77 + i, repetitionPenalty: 1.3, keep })));
    }
    await e.dispose();
  });

  it('with SJD the images run one after another, each equal to its single SJD generation', async () => {
    const e = await engine();
    const batch = await e.generateImages({ ...sampled, count: 2, sjd: { window: 4 } });
    for (let i = 0; i < 2; i++) {
      expect(batch[i]!.stats.sjd?.window).toBe(4);
      expect(batch[i]!.stats.imagesPerPass).toBeUndefined();
      expect(codesOf(batch[i]!)).toEqual(codesOf(await e.generate({ ...sampled, seed: sampled.seed + i, sjd: { window: 4 } })));
    }
    await e.dispose();
    // A one-shot engine (the CLI's) keeps its LM until the request's last image has its tokens.
    const model = await loadFixtureModel(penalty.checkpoint, 'tiny-cosmos-b', 'f32');
    const oneShot = await createCpuEngine(ort, model, { maxLatentSide: side, oneShot: true });
    const again = await oneShot.generateImages({ ...sampled, count: 2, sjd: { window: 4 } });
    expect(again.map(codesOf)).toEqual(batch.map(codesOf));
    expect(() => oneShot.generateImages({ ...sampled, count: 1 })).toThrow(/one image only/);
    await oneShot.dispose();
  });

  it('progress names each image: one prefill, then every row of every image', async () => {
    const e = await engine();
    const events: GenerationProgress[] = [];
    await e.generateImages({ ...sampled, count: 3 }, { onProgress: (p) => events.push(p), progressIntervalMs: 0 });
    expect(events.every((p) => p.count === 3)).toBe(true);
    for (let i = 0; i < 3; i++) {
      const rows = events.filter((p) => p.phase === 'decode' && p.image === i && p.codes && p.codes.length > 0).map((p) => p.done);
      expect(rows, `image ${i}`).toEqual(Array.from({ length: side }, (_, r) => (r + 1) * side));
      expect(events.some((p) => p.phase === 'vq-decode' && p.image === i)).toBe(true);
    }
    await e.dispose();
  });

  it('counts outside 1 … 8, or past the memory budget, fail before any work', async () => {
    const model = await loadFixtureModel(penalty.checkpoint, 'tiny-cosmos-b', 'f32');
    // The budget holds exactly 2 images' streams at this size (the longer prompt + side² slots).
    const slots = Math.max(penalty.cond_ids.length, penalty.uncond_ids.length) + side * side;
    const perImage = 2 * kvBytesPerStream(model.lm, slots, 4);
    const e = await engine(2 * perImage);
    for (const count of [0, MAX_IMAGES_PER_REQUEST + 1, 1.5, -1]) {
      let progress = 0;
      const call = () => e.generateImages({ ...greedy, count }, { onProgress: () => progress++ });
      expect(call, String(count)).toThrow(/^count: must be a whole number from 1 to 8/);
      expect(progress).toBe(0);
    }
    expect(() => e.generate({ ...greedy, count: 2 })).toThrow(/^count: generate\(\) makes one image/);
    let progress = 0;
    try {
      void e.generateImages({ ...greedy, count: 3 }, { onProgress: () => progress++ });
      expect.unreachable('a count of 3 was accepted with room for 2');
    } catch (err) {
      expect(err).toBeInstanceOf(SimpleARError);
      expect((err as SimpleARError).code).toBe('InvalidSettings');
      expect((err as SimpleARError).message).toMatch(/^count: 3 images at once need .* choose a count of at most 2/);
      expect((err as SimpleARError).details).toMatchObject({ field: 'count', maxCount: 2 });
    }
    expect(progress).toBe(0);
    // Two fit; and the engine still works after the refusal.
    const two = await e.generateImages({ ...greedy, count: 2, repetitionPenalty: 1 });
    for (const r of two) expect(codesOf(r)).toEqual(penalty.codes_without_penalty);
    await e.dispose();
  });
});
