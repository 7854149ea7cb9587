// The images of one prompt: image i is the generation with seed s + i. This is the one place
// where `--count` becomes engine work: one `generateImages` call per contiguous run of the images
// still to make (a resumed prompt missing images 1 and 3: two calls, seed s+1 and seed s+3, one
// image each; missing 0..3: one call of 4), which the engine makes in one batched pass.
import { SimpleARError } from '../core/base/errors.ts';
import { imageSeed, MAX_IMAGES_PER_REQUEST, type GenerationSettings, type KeptRows } from '../core/engine/settings.ts';
import type { GenerationProgress, GenerationResult } from '../core/engine/types.ts';
import type { EngineApi } from '../core/host/api.ts';

/** One engine call: images first … first + count − 1 (image first gets seed s + first). */
export interface ImageRun {
  first: number;
  count: number;
}

/**
 * The engine calls that make the images `which` (ascending numbers): one per contiguous run, at
 * most MAX_IMAGES_PER_REQUEST each. `oneByOne` makes every image its own call: where the engine
 * has no batched pass (SJD) it would run a request's images one after another anyway and hand
 * them all back at the end, so single calls let each image be written as soon as it is made.
 */
export function imageRuns(which: readonly number[], oneByOne = false): ImageRun[] {
  const runs: ImageRun[] = [];
  for (const i of which) {
    const last = runs[runs.length - 1];
    if (!oneByOne && last && last.first + last.count === i && last.count < MAX_IMAGES_PER_REQUEST) last.count++;
    else runs.push({ first: i, count: 1 });
  }
  return runs;
}

/** Whether the images of these settings go one per call (imageRuns): SJD has no batched pass. */
export const oneImagePerCall = (settings: Pick<GenerationSettings, 'sjd'>): boolean => settings.sjd !== undefined;

export interface ImageSetOptions {
  signal?: AbortSignal;
  /** Progress of image i (a batch reports each of its images; `p.image` is within the call). */
  onProgress?: (i: number, p: GenerationProgress) => void;
  /** Rows kept from an earlier image (--keep-rows, --from): every image redraws below them. */
  keep?: KeptRows;
}

/**
 * Makes the images `which` (ascending numbers i ≥ 0) of the prompt in `settings` (seed s), handing
 * each to `onImage` in order once its call is done (so a run stopped later keeps it). Stopping:
 * an abort before a call starts or during it rejects with Aborted; the call's images are dropped
 * (a batch's images come back together, so a batch under way is dropped whole).
 */
export async function generateImageSet(
  host: Pick<EngineApi, 'generateImages'>,
  settings: GenerationSettings,
  which: readonly number[],
  onImage: (i: number, result: GenerationResult) => Promise<void>,
  { signal, onProgress, keep }: ImageSetOptions = {},
): Promise<void> {
  for (const { first, count } of imageRuns(which, oneImagePerCall(settings))) {
    if (signal?.aborted) throw new SimpleARError('Aborted', 'generation cancelled');
    let results: GenerationResult[];
    try {
      results = await host.generateImages(
        { ...settings, seed: imageSeed(settings.seed, first), count, ...(keep ? { keep } : {}) },
        {
          ...(signal ? { signal } : {}),
          ...(onProgress ? { onProgress: (p: GenerationProgress) => onProgress(first + (p.image ?? 0), p) } : {}),
        },
      );
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') throw new SimpleARError('Aborted', 'generation cancelled');
      throw e;
    }
    for (const [k, result] of results.entries()) await onImage(first + k, result);
  }
}
