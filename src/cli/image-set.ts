// The images of one prompt: image i is the generation with seed s + i. This is the one place
// where `--count` becomes engine work: today one engine call per image, one after another on the
// same engine; a batched engine pass will replace the loop here and nothing around it.
import { SimpleARError } from '../core/base/errors.ts';
import type { GenerationSettings, KeptRows } from '../core/engine/settings.ts';
import type { GenerationProgress, GenerationResult } from '../core/engine/types.ts';
import type { EngineApi } from '../core/host/api.ts';

/** `--count`: images per prompt. */
export const COUNT_LIMITS = { min: 1, max: 8 } as const;

/** Image i's seed: s + i, wrapping past 2^32 − 1 (seeds are 32-bit). */
export function imageSeed(seed: number, i: number): number {
  return (seed + i) % 2 ** 32;
}

export interface ImageSetOptions {
  signal?: AbortSignal;
  /** Progress of image i. */
  onProgress?: (i: number, p: GenerationProgress) => void;
  /** Rows kept from an earlier image (--keep-rows, --from): every image redraws below them. */
  keep?: KeptRows;
}

/**
 * Makes the images `which` (numbers i ≥ 0) of the prompt in `settings` (seed s), handing each to
 * `onImage` before the next starts (so a run stopped later keeps it). Stopping: an abort before an
 * image starts or during it rejects with Aborted; the image under way is dropped.
 */
export async function generateImageSet(
  host: Pick<EngineApi, 'generate'>,
  settings: GenerationSettings,
  which: readonly number[],
  onImage: (i: number, result: GenerationResult) => Promise<void>,
  { signal, onProgress, keep }: ImageSetOptions = {},
): Promise<void> {
  for (const i of which) {
    if (signal?.aborted) throw new SimpleARError('Aborted', 'generation cancelled');
    let result: GenerationResult;
    try {
      result = await host.generate(
        { ...settings, seed: imageSeed(settings.seed, i), ...(keep ? { keep } : {}) },
        { ...(signal ? { signal } : {}), ...(onProgress ? { onProgress: (p: GenerationProgress) => onProgress(i, p) } : {}) },
      );
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') throw new SimpleARError('Aborted', 'generation cancelled');
      throw e;
    }
    await onImage(i, result);
  }
}
