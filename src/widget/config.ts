// The widget's settings, all from its query string (the host chooses them in the iframe URL):
//   origins=  host origins allowed to drive it (comma-separated; none: only its own UI)
//   model= vq= bundle=   model sources, as on the app's page
//   weights= decoder=    what to prepare (q4|q8|f16|f32; f16|f32)
//   size= cfg= repetitionPenalty= temperature= topK= topP=   defaults for requests that leave them
//            out (repetitionPenalty left out: the model's own)
//   count=    images per generation from the widget's own prompt box (1-8, default 1; a host's
//             request says its own count, 1 when it leaves it out, so a request alone decides how
//             many results it gets)
//   maxSize=  largest side the engine is sized for; theme=auto|light|dark; hidePrompt=1
import { sourceFromQuery } from '../client/model-source.ts';
import type { LoadModelOptions, ModelSource } from '../client/protocol.ts';
import { SimpleARError } from '../core/base/errors.ts';
import { DEFAULT_SETTINGS, resolveCount, resolveSettings, SIZE_LIMITS, type GenerationSettings } from '../core/engine/settings.ts';

export type WidgetDefaults = Pick<GenerationSettings, 'size' | 'cfg' | 'repetitionPenalty' | 'temperature' | 'topK' | 'topP'>;

export interface WidgetConfig {
  /** Normalized origins (scheme://host:port) whose messages the widget answers. */
  origins: string[];
  source: ModelSource;
  load: LoadModelOptions;
  defaults: WidgetDefaults;
  /** Images per generation from the widget's own prompt box (not a default for host requests). */
  count: number;
  /** Largest image side a request may ask for. */
  maxSize: number;
  theme: 'auto' | 'light' | 'dark';
  hidePrompt: boolean;
}

const DEFAULT_MAX_SIZE = 1024;
const WEIGHTS = ['q4', 'q8', 'f16', 'f32'] as const;
const DECODERS = ['f16', 'f32'] as const;
const THEMES = ['auto', 'light', 'dark'] as const;

function invalid(param: string, message: string): SimpleARError {
  return new SimpleARError('InvalidSettings', `?${param}= ${message}`, { param });
}

/** `origins=a,b`: each an http(s) origin; '*' and opaque origins are refused (name the hosts). */
export function parseOrigins(value: string | null): string[] {
  if (value === null || value.trim() === '') return [];
  return value
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((entry) => {
      let url: URL;
      try {
        url = new URL(entry);
      } catch {
        throw invalid('origins', `must list origins such as https://example.com (got ${JSON.stringify(entry)})`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        throw invalid('origins', `must list http(s) origins (got ${JSON.stringify(entry)})`);
      }
      return url.origin;
    });
}

function oneOf<T extends string>(param: string, value: string | null, allowed: readonly T[]): T | undefined {
  if (value === null) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw invalid(param, `must be one of ${allowed.join(', ')} (got ${JSON.stringify(value)})`);
  return value as T;
}

function numberParam(params: URLSearchParams, name: string): number | undefined {
  const value = params.get(name);
  if (value === null) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw invalid(name, `must be a number (got ${JSON.stringify(value)})`);
  return n;
}

/** Reads and checks every parameter; throws InvalidSettings naming the bad one. */
export function parseWidgetConfig(search: string, baseUrl: string): WidgetConfig {
  const params = new URLSearchParams(search);
  const given = {
    size: numberParam(params, 'size'),
    cfg: numberParam(params, 'cfg'),
    repetitionPenalty: numberParam(params, 'repetitionPenalty'),
    temperature: numberParam(params, 'temperature'),
    topK: numberParam(params, 'topK'),
    topP: numberParam(params, 'topP'),
  };
  // The engine's own checks, on a placeholder prompt and seed.
  const checked = resolveSettings({ ...DEFAULT_SETTINGS, ...stripUndefined(given), prompt: 'x', seed: 0 });
  const defaults: WidgetDefaults = {
    size: checked.size,
    cfg: checked.cfg,
    ...(checked.repetitionPenalty !== undefined ? { repetitionPenalty: checked.repetitionPenalty } : {}),
    temperature: checked.temperature,
    topK: checked.topK,
    topP: checked.topP,
  };
  const maxSize = numberParam(params, 'maxSize') ?? Math.max(DEFAULT_MAX_SIZE, defaults.size);
  if (!Number.isInteger(maxSize) || maxSize % 16 !== 0 || maxSize < SIZE_LIMITS.min || maxSize > SIZE_LIMITS.max) {
    throw invalid('maxSize', `must be a multiple of 16 between ${SIZE_LIMITS.min} and ${SIZE_LIMITS.max}`);
  }
  if (defaults.size > maxSize) throw invalid('size', `(${defaults.size}) is larger than maxSize (${maxSize})`);
  const weights = oneOf('weights', params.get('weights'), WEIGHTS);
  const decoderDtype = oneOf('decoder', params.get('decoder'), DECODERS);
  const load: LoadModelOptions = { maxLatentSide: maxSize / 16, ...(weights ? { weights } : {}), ...(decoderDtype ? { decoderDtype } : {}) };
  return {
    origins: parseOrigins(params.get('origins')),
    source: sourceFromQuery(search, baseUrl),
    load,
    defaults,
    count: resolveCount(numberParam(params, 'count')),
    maxSize,
    theme: oneOf('theme', params.get('theme'), THEMES) ?? 'auto',
    hidePrompt: params.get('hidePrompt') === '1',
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
