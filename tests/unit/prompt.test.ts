import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTokenizer, loadTokenizer, type TextTokenizer } from '../../src/core/formats/tokenizer.ts';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import {
  DEFAULT_NEGATIVE_TEXT,
  conditionalText,
  encodePrompt,
  negativeText,
} from '../../src/core/model/prompt.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';
import { simplearQwenTokenizerFiles } from '../helpers/qwen-tokenizer.ts';

// docs/model.md#prompt-format (SimpleAR's generate.py, https://github.com/wdrink/SimpleAR), verbatim.
const REF_COND = '<|t2i|>A highly realistic image of a red cat<|soi|>';
const REF_UNCOND =
  '<|t2i|>An image of aerial view, overexposed, low quality, deformation, a poor composition, bad hands, bad teeth, bad eyes, bad limbs, distortion<|soi|>';

let qwen: TextTokenizer;
beforeAll(() => {
  qwen = createTokenizer(simplearQwenTokenizerFiles());
});

describe('prompt templates (docs/model.md#prompt-format)', () => {
  it('are the reference strings', () => {
    expect(conditionalText('a red cat')).toBe(REF_COND);
    expect(negativeText()).toBe(REF_UNCOND);
    expect(negativeText(undefined)).toBe(REF_UNCOND);
    expect(negativeText(DEFAULT_NEGATIVE_TEXT)).toBe(REF_UNCOND);
  });

  it('wrap a user negative prompt as <|t2i|>{negative}<|soi|>, and "" as the null condition', () => {
    expect(negativeText('blurry, watermark')).toBe('<|t2i|>blurry, watermark<|soi|>');
    expect(negativeText('')).toBe('<|t2i|><|soi|>');
  });

  it('encode both streams starting with <|t2i|> (151665) and ending with <|soi|> (151667)', () => {
    for (const prompt of ['a red cat', '', 'emoji 🐱 and 东京', 'line\nbreak', '   spaces  ']) {
      for (const negative of [undefined, '', 'blurry']) {
        const { cond, uncond } = encodePrompt(qwen, prompt, negative === undefined ? {} : { negative });
        for (const ids of [cond, uncond]) {
          expect(ids[0]).toBe(151665);
          expect(ids.at(-1)).toBe(151667);
        }
      }
    }
  });

  it('give the same ids as tokenizing the reference strings', () => {
    const { cond, uncond } = encodePrompt(qwen, 'a red cat');
    expect(cond).toEqual(qwen.encode(REF_COND));
    expect(uncond).toEqual(qwen.encode(REF_UNCOND));
    expect(cond).toEqual([151665, 32, 7548, 25489, 2168, 315, 264, 2518, 8251, 151667]);
    expect(qwen.decode(uncond)).toBe(REF_UNCOND);
    expect(encodePrompt(qwen, 'x', { negative: '' }).uncond).toEqual([151665, 151667]);
  });

  it('tokenize the prompt in context (the space before it joins the first word)', () => {
    const { cond } = encodePrompt(qwen, 'cat');
    // The template ends in a space, so the prompt's first word carries it ("Ġcat"), exactly as
    // Python does on the concatenated string.
    expect(cond.slice(-2, -1)).toEqual(qwen.encode(' cat'));
  });

  it('a special token typed in the prompt is split out, as in the reference', () => {
    const { cond } = encodePrompt(qwen, 'a<|soi|>b');
    expect(cond.filter((id) => id === 151667)).toHaveLength(2);
  });

  it('PromptTooLong names the stream and the sizes', () => {
    const long = 'word '.repeat(100);
    let err: unknown;
    try {
      encodePrompt(qwen, long, { maxTokens: 50 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SimpleARError);
    expect(err).toMatchObject({ code: 'PromptTooLong', details: { stream: 'prompt', maxTokens: 50 } });
    expect(() => encodePrompt(qwen, 'a', { negative: long, maxTokens: 50 })).toThrow(/negative prompt/);
    expect(() => encodePrompt(qwen, 'a red cat', { maxTokens: 50 })).not.toThrow();
  });
});

const FIXTURES = join(import.meta.dirname, '../fixtures');
const GOLDEN = join(FIXTURES, 'golden/golden.json');

describe('prompt ids of the golden fixtures', () => {
  it('match the Python reference cond/uncond ids for every golden LM', async () => {
    const g = JSON.parse(readFileSync(GOLDEN, 'utf8'));
    expect(g.lm.length).toBeGreaterThan(0);
    for (const lm of g.lm as { checkpoint: string; prompt: string; cond_text: string; uncond_text: string; cond_ids: number[]; uncond_ids: number[] }[]) {
      const tok = await loadTokenizer(openFolder(join(FIXTURES, lm.checkpoint)));
      expect(conditionalText(lm.prompt)).toBe(lm.cond_text);
      expect(negativeText()).toBe(lm.uncond_text);
      const { cond, uncond } = encodePrompt(tok, lm.prompt);
      expect(cond).toEqual(lm.cond_ids);
      expect(uncond).toEqual(lm.uncond_ids);
    }
  });
});
