// Which model a page loads, from its query string: `?bundle=URL` (a converted bundle) or
// `?model=URL&vq=URL` (original checkpoints; either may be left out for the released one).
// Kept free of engine imports so the page and the widget can use it without the converter.
import { SimpleARError } from '../core/base/errors.ts';
import { asFolderUrl } from '../core/store/model-source.ts';
import type { ModelSource } from './protocol.ts';

export { normalizeSource } from '../core/store/model-source.ts';

/** The released checkpoints (the same URLs as convert-model.ts; a unit test keeps them equal). */
export const DEFAULT_MODEL_URL = 'https://huggingface.co/Daniel0724/SimpleAR-0.5B-RL/resolve/main/';
export const DEFAULT_VQ_URL = 'https://huggingface.co/nvidia/Cosmos-1.0-Tokenizer-DV8x16x16/resolve/main/';

/** SimpleAR-0.5B-RL with the Cosmos DV8×16×16 decoder, from their Hugging Face repositories. */
export const DEFAULT_MODEL_SOURCE: ModelSource = { kind: 'original', model: DEFAULT_MODEL_URL, vq: DEFAULT_VQ_URL };

/**
 * The ModelSource a page's query string asks for. Relative URLs are resolved against
 * `baseUrl` (default: the page's location). Throws InvalidSettings for anything that is not an
 * http(s) URL, or for `bundle` mixed with `model`/`vq`.
 */
export function sourceFromQuery(search: string, baseUrl: string | undefined = globalThis.location?.href): ModelSource {
  const params = new URLSearchParams(search);
  const bundle = params.get('bundle');
  const model = params.get('model');
  const vq = params.get('vq');
  if (bundle !== null) {
    if (model !== null || vq !== null) {
      throw new SimpleARError('InvalidSettings', 'Use either ?bundle= or ?model=/?vq=, not both.', { bundle, model, vq });
    }
    return { kind: 'bundle', url: asFolderUrl('bundle', bundle, baseUrl) };
  }
  return {
    kind: 'original',
    model: model !== null ? asFolderUrl('model', model, baseUrl) : DEFAULT_MODEL_URL,
    vq: vq !== null ? asFolderUrl('vq', vq, baseUrl) : DEFAULT_VQ_URL,
  };
}
