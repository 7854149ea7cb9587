// The page's pure logic for a request of several images: the Images field's check (the engine's
// own rule), the one progress line for the whole request (together or one after another), and
// the gallery order of one request's images.
import { describe, expect, test } from 'vitest';
import { countFromField } from '../../src/app/count-field.ts';
import { ImagesProgress } from '../../src/app/progress-text.ts';
import { galleryOrder } from '../../src/app/gallery-store.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';
import type { GenerationProgress } from '../../src/core/engine/types.ts';

describe('the Images field', () => {
  test('empty is 1; whole numbers 1–8 are taken as they are', () => {
    expect(countFromField('')).toBe(1);
    expect(countFromField(' 3 ')).toBe(3);
    expect(countFromField('8')).toBe(8);
  });

  test.each(['0', '9', '2.5', '-1', 'two', '0x2', '1e0'])('%s is refused with InvalidSettings naming count, as the engine would', (text) => {
    let error: unknown;
    try {
      countFromField(text);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SimpleARError);
    expect((error as SimpleARError).code).toBe('InvalidSettings');
    expect((error as SimpleARError).details.field).toBe('count');
    expect((error as SimpleARError).message).toMatch(/^count: must be a whole number from 1 to 8 images/);
  });
});

const event = (p: Partial<GenerationProgress> & Pick<GenerationProgress, 'phase'>): GenerationProgress => ({
  done: 0,
  total: 16,
  gridSide: 4,
  elapsedMs: 10,
  count: 3,
  ...p,
});

describe('one progress line for a request of several images', () => {
  test('drawn together: one row for all images, the fraction of the pass', () => {
    const progress = new ImagesProgress(3);
    expect(progress.update(event({ phase: 'prefill', done: 0, total: 1, image: 0 })).title).toBe('Reading the prompt · 3 images');
    expect(progress.together).toBeUndefined();
    // The pass announces every image at its start (no token drawn yet).
    for (const image of [0, 1, 2]) progress.update(event({ phase: 'decode', done: 0, image }));
    expect(progress.together).toBe(true);
    const r = progress.update(event({ phase: 'decode', done: 8, image: 1, tokensPerSecond: 48, etaMs: 500 }));
    expect(r).toEqual({ title: 'Drawing row 2 of 4 · 3 images', detail: '8 of 16 tokens per image · 48 tokens/s · about 0.5 s left', fraction: 0.5 });
    expect(progress.update(event({ phase: 'vq-decode', done: 1, total: 3, image: 1 })).title).toBe('Turning tokens into pixels · image 2 of 3');
  });

  test('one after another: which image, and the fraction of the whole request', () => {
    const progress = new ImagesProgress(3);
    progress.update(event({ phase: 'prefill', done: 0, total: 1, image: 0 }));
    progress.update(event({ phase: 'decode', done: 0, image: 0 }));
    // Image 0 draws tokens before image 1 is heard of.
    const r = progress.update(event({ phase: 'decode', done: 4, image: 0, tokensPerSecond: 16, etaMs: 750 }));
    expect(progress.together).toBe(false);
    // This image's 750 ms, then two more images of 16 tokens at 16 tokens/s.
    expect(r).toEqual({ title: 'Image 1 of 3 · drawing row 1 of 4', detail: '4 of 16 tokens · 16 tokens/s · about 2.8 s left', fraction: 4 / 48 });
    expect(progress.update(event({ phase: 'vq-decode', done: 0, total: 1, image: 0 }))).toMatchObject({ title: 'Image 1 of 3 · turning tokens into pixels', fraction: 1 / 3 });
    expect(progress.update(event({ phase: 'prefill', done: 0, total: 1, image: 1 })).title).toBe('Image 2 of 3 · reading the prompt');
    expect(progress.update(event({ phase: 'decode', done: 8, image: 2 })).fraction).toBeCloseTo((32 + 8) / 48);
  });

  test('a kept part (redraw below) starts every image at its rows: only a later token means one at a time', () => {
    const together = new ImagesProgress(2);
    together.update(event({ phase: 'decode', done: 8, image: 0, count: 2 }));
    together.update(event({ phase: 'decode', done: 8, image: 1, count: 2 }));
    expect(together.together).toBe(true);
    const oneByOne = new ImagesProgress(2);
    oneByOne.update(event({ phase: 'decode', done: 8, image: 0, count: 2 }));
    oneByOne.update(event({ phase: 'decode', done: 9, image: 0, count: 2 }));
    expect(oneByOne.together).toBe(false);
  });
});

test('the gallery lists newest first, and one request’s images in their order (seed, seed + 1, …)', () => {
  const entries = [
    { createdAt: 5, image: { index: 2, count: 3 }, name: 'c' },
    { createdAt: 1, name: 'old' },
    { createdAt: 5, image: { index: 0, count: 3 }, name: 'a' },
    { createdAt: 9, name: 'new' },
    { createdAt: 5, image: { index: 1, count: 3 }, name: 'b' },
  ];
  expect(entries.sort(galleryOrder).map((e) => e.name)).toEqual(['new', 'a', 'b', 'c', 'old']);
});
