// Generation settings: defaults from the reference (docs/model.md#generation-settings) and validation
// that runs before any work starts, so bad input fails fast with a message that says what to do.
import { SimpleARError } from '../base/errors.ts';
import { VISUAL_CODES } from '../base/model-spec.ts';

export interface SjdSettings {
  /** Draft tokens verified per model run (each run covers window + 1 tokens). */
  window: number;
}

export interface GenerationSettings {
  prompt: string;
  /** Negative prompt text without the template; undefined = the reference negative prompt. */
  negativePrompt?: string;
  /** Image side in pixels: a multiple of 16 (one token per 16×16 block). */
  size: number;
  cfg: number;
  /**
   * Transformers' repetition penalty on the conditional stream (sampling/repetition.ts); 1 = off.
   * Undefined = the checkpoint's `generation_config.json` value (1 where it has none): the engine
   * fills it in, and its result reports the value used.
   */
  repetitionPenalty?: number;
  temperature: number;
  topK: number;
  topP: number;
  /** uint32. */
  seed: number;
  /** Speculative Jacobi decoding; undefined or null = off. */
  sjd?: SjdSettings | null;
}

export const DEFAULT_SETTINGS = {
  size: 1024,
  cfg: 6,
  temperature: 1,
  topK: VISUAL_CODES,
  topP: 1,
} as const;

export const SIZE_LIMITS = { min: 16, max: 2048 } as const;
/** Transformers only requires a positive penalty; beyond 10 every seen code is all but banned. */
export const REPETITION_PENALTY_LIMITS = { min: 0, max: 10 } as const;
/** SJD drafts per run: a run covers window + 1 tokens, and the WebGPU EP's attention is only right
 * for calls of at most 31 new tokens (runtime/lm-runner.ts prefillSchedule), hence 30. */
export const SJD_WINDOW_LIMITS = { min: 1, max: 30 } as const;

function invalid(field: string, message: string): SimpleARError {
  return new SimpleARError('InvalidSettings', `${field}: ${message}`, { field });
}

/** Fills defaults and checks every field; throws InvalidSettings naming the field. */
export function resolveSettings(input: Partial<GenerationSettings> & { prompt: string; seed: number }): GenerationSettings {
  const s: GenerationSettings = { ...DEFAULT_SETTINGS, ...stripUndefined(input), prompt: input.prompt, seed: input.seed };
  if (typeof s.prompt !== 'string' || s.prompt.trim() === '') throw invalid('prompt', 'type a prompt describing the image');
  if (!Number.isInteger(s.size) || s.size % 16 !== 0 || s.size < SIZE_LIMITS.min || s.size > SIZE_LIMITS.max) {
    throw invalid('size', `must be a multiple of 16 between ${SIZE_LIMITS.min} and ${SIZE_LIMITS.max} pixels (got ${s.size})`);
  }
  if (!Number.isFinite(s.cfg) || s.cfg < 0 || s.cfg > 50) throw invalid('cfg', `must be between 0 and 50 (got ${s.cfg}); 6 is the reference`);
  if (s.repetitionPenalty !== undefined) {
    const { min, max } = REPETITION_PENALTY_LIMITS;
    const p = s.repetitionPenalty;
    if (typeof p !== 'number' || !Number.isFinite(p) || p <= min || p > max) {
      throw invalid('repetitionPenalty', `must be above ${min} and at most ${max} (got ${String(p)}); 1 = off`);
    }
  }
  if (!Number.isFinite(s.temperature) || s.temperature < 0 || s.temperature > 10) {
    throw invalid('temperature', `must be between 0 (greedy) and 10 (got ${s.temperature})`);
  }
  if (!Number.isInteger(s.topK) || s.topK < 1) throw invalid('topK', `must be a whole number >= 1 (got ${s.topK}); ${VISUAL_CODES} = off`);
  s.topK = Math.min(s.topK, VISUAL_CODES);
  if (!Number.isFinite(s.topP) || s.topP <= 0 || s.topP > 1) throw invalid('topP', `must be in (0, 1] (got ${s.topP}); 1 = off`);
  if (!Number.isInteger(s.seed) || s.seed < 0 || s.seed > 0xffffffff) throw invalid('seed', `must be a whole number from 0 to 4294967295 (got ${s.seed})`);
  if (s.sjd !== undefined && s.sjd !== null) {
    const w = typeof s.sjd === 'object' ? (s.sjd as { window?: unknown }).window : undefined;
    if (typeof w !== 'number' || !Number.isInteger(w) || w < SJD_WINDOW_LIMITS.min || w > SJD_WINDOW_LIMITS.max) {
      throw invalid('sjd', `window must be a whole number from ${SJD_WINDOW_LIMITS.min} to ${SJD_WINDOW_LIMITS.max} draft tokens per run (got ${String(w)})`);
    }
    s.sjd = { window: w };
  } else {
    delete s.sjd;
  }
  return s;
}

/**
 * "Redraw below a row": a previous image's codes (raster order, side²) and how many of its latent
 * rows to keep. The kept rows are fed after each stream's prompt as given (one prefill) and the
 * rest is sampled (docs/model.md#kept-rows).
 */
export interface KeptRows {
  codes: Int32Array | readonly number[];
  /** Latent rows kept from the top: 0 … side − 1 (0 = nothing kept, a plain generation). */
  rows: number;
}

/**
 * Checks a kept prefix against the image's latent side and the model's visual codes; returns the
 * kept codes (rows × side, a copy), empty when nothing is kept. Throws InvalidSettings naming `keep`.
 */
export function resolveKeep(keep: KeptRows | undefined, side: number, visualCount: number): Int32Array {
  if (keep === undefined || keep === null) return new Int32Array(0);
  const { rows, codes } = keep;
  if (typeof rows !== 'number' || !Number.isInteger(rows) || rows < 0 || rows > side - 1) {
    throw invalid('keep', `rows must be a whole number from 0 to ${side - 1} for a ${side}×${side} latent grid (got ${String(rows)})`);
  }
  if (!codes || typeof codes.length !== 'number') throw invalid('keep', 'codes must be an array of visual codes');
  if (codes.length !== side * side) {
    throw invalid('keep', `the tokens are for another size: ${codes.length} codes, and a ${side * 16} px image has ${side * side} (${side}×${side})`);
  }
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]!;
    if (!Number.isInteger(c) || c < 0 || c >= visualCount) {
      throw invalid('keep', `code ${i} is ${String(c)}: visual codes are whole numbers from 0 to ${visualCount - 1}`);
    }
  }
  return Int32Array.from({ length: rows * side }, (_, i) => codes[i]!);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Most images one request may ask for (GenerateRequest.count). */
export const MAX_IMAGES_PER_REQUEST = 8;

/** Checks a request's image count (undefined: 1); throws InvalidSettings naming `count`. */
export function resolveCount(count: number | undefined): number {
  if (count === undefined || count === null) return 1;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > MAX_IMAGES_PER_REQUEST) {
    throw invalid('count', `must be a whole number from 1 to ${MAX_IMAGES_PER_REQUEST} images (got ${String(count)})`);
  }
  return count;
}

/** The seed of image `index` of a request seeded `seed`: seed + index, wrapping at 2³². */
export const imageSeed = (seed: number, index: number): number => (seed + index) >>> 0;

/** Latent grid side: one visual token per 16×16 pixels. */
export const latentSide = (size: number): number => size / 16;
