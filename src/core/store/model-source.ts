// A ModelSource's URLs in one canonical form: what the model store keys on. Kept free of
// engine imports so the page side (query-string parsing) can share it without the converter.
import { SimpleARError } from '../base/errors.ts';
import type { ModelSource } from './types.ts';

/** The same source with its URLs in one canonical form (what the model store keys on). */
export function normalizeSource(source: ModelSource): ModelSource {
  return source.kind === 'bundle'
    ? { kind: 'bundle', url: asFolderUrl('bundle', source.url) }
    : { kind: 'original', model: asFolderUrl('model', source.model), vq: asFolderUrl('vq', source.vq) };
}

/** An absolute http(s) URL ending in '/', so files resolve inside the folder. */
export function asFolderUrl(param: string, value: string, baseUrl?: string): string {
  let url: URL;
  try {
    url = new URL(value.trim(), baseUrl);
  } catch {
    throw new SimpleARError('InvalidSettings', `?${param}= must be a URL (got ${JSON.stringify(value)}).`, { param, value });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new SimpleARError('InvalidSettings', `?${param}= must be an http(s) URL (got ${JSON.stringify(value)}).`, { param, value });
  }
  url.hash = '';
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url.href;
}
