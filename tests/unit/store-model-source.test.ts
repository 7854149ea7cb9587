// sourceFromQuery: the page's ?model= / ?vq= / ?bundle= parameters → a ModelSource.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_SOURCE, normalizeSource, sourceFromQuery } from '../../src/client/model-source.ts';
import { DEFAULT_DECODER_SOURCE, DEFAULT_MODEL_SOURCE as CONVERT_DEFAULT_MODEL } from '../../src/core/convert/convert-model.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';

const PAGE = 'https://example.test/app/index.html';

describe('sourceFromQuery', () => {
  it('no parameters: the released SimpleAR-0.5B-RL + Cosmos decoder (the converter defaults)', () => {
    expect(sourceFromQuery('', PAGE)).toEqual(DEFAULT_MODEL_SOURCE);
    expect(DEFAULT_MODEL_SOURCE).toEqual({ kind: 'original', model: CONVERT_DEFAULT_MODEL, vq: DEFAULT_DECODER_SOURCE });
  });

  it('?model= and ?vq= give an original source; a missing one is the released checkpoint', () => {
    expect(sourceFromQuery('?model=https://h.test/m&vq=https://h.test/v/', PAGE)).toEqual({
      kind: 'original',
      model: 'https://h.test/m/',
      vq: 'https://h.test/v/',
    });
    expect(sourceFromQuery('model=https%3A%2F%2Fh.test%2Fm', PAGE)).toEqual({
      kind: 'original',
      model: 'https://h.test/m/',
      vq: DEFAULT_MODEL_SOURCE.kind === 'original' ? DEFAULT_MODEL_SOURCE.vq : '',
    });
  });

  it('?bundle= gives a bundle source; relative URLs resolve against the page', () => {
    expect(sourceFromQuery('?bundle=models/q4', PAGE)).toEqual({ kind: 'bundle', url: 'https://example.test/app/models/q4/' });
    expect(sourceFromQuery('?bundle=/b#x', PAGE)).toEqual({ kind: 'bundle', url: 'https://example.test/b/' });
  });

  it('rejects non-http URLs and bundle mixed with model/vq, with InvalidSettings', () => {
    for (const q of ['?bundle=javascript:alert(1)', '?model=file:///etc', '?bundle=https://a.test/&model=https://b.test/']) {
      let err: unknown;
      try {
        sourceFromQuery(q, PAGE);
      } catch (e) {
        err = e;
      }
      expect(err, q).toBeInstanceOf(SimpleARError);
      expect((err as SimpleARError).code, q).toBe('InvalidSettings');
    }
  });

  it('normalizeSource gives one form per folder (trailing slash, no fragment)', () => {
    expect(normalizeSource({ kind: 'bundle', url: 'http://a.test/x#y' })).toEqual({ kind: 'bundle', url: 'http://a.test/x/' });
    expect(normalizeSource({ kind: 'original', model: 'http://a.test/m/', vq: 'http://a.test/v' })).toEqual({
      kind: 'original',
      model: 'http://a.test/m/',
      vq: 'http://a.test/v/',
    });
  });
});
