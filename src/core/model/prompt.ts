// Prompt templates of the reference demo (docs/model.md#prompt-format: SimpleAR's generate.py,
// https://github.com/wdrink/SimpleAR).
//
// conditional:  <|t2i|>A highly realistic image of {prompt}<|soi|>
// negative:     <|t2i|>An image of aerial view, overexposed, …, distortion<|soi|>   (default)
//
// A user-supplied negative prompt is wrapped as `<|t2i|>{negative}<|soi|>`: the text is used as
// written, with no "An image of" prefix, so that the default is exactly the case
// negative = DEFAULT_NEGATIVE_TEXT. The empty string gives `<|t2i|><|soi|>`, which is the true
// null condition the model was trained with (p_drop_cond = 0.1, docs/model.md#prompt-format), i.e. classic
// unconditional CFG instead of negative-prompt guidance.
//
// The user's text is tokenized as the reference does: if it contains a special token written
// out (e.g. "<|soi|>"), that token is split out as a special token, as in Python.
import { SimpleARError } from '../base/errors.ts';
import type { TextTokenizer } from '../formats/tokenizer.ts';

export const T2I_TOKEN = '<|t2i|>';
export const SOI_TOKEN = '<|soi|>';
export const CONDITIONAL_PREFIX = 'A highly realistic image of ';
export const DEFAULT_NEGATIVE_TEXT =
  'An image of aerial view, overexposed, low quality, deformation, a poor composition, bad hands, ' +
  'bad teeth, bad eyes, bad limbs, distortion';

/** `<|t2i|>A highly realistic image of {prompt}<|soi|>` */
export function conditionalText(prompt: string): string {
  return `${T2I_TOKEN}${CONDITIONAL_PREFIX}${prompt}${SOI_TOKEN}`;
}

/** `<|t2i|>{negative}<|soi|>`; the reference's negative text when `negative` is undefined. */
export function negativeText(negative?: string): string {
  return `${T2I_TOKEN}${negative ?? DEFAULT_NEGATIVE_TEXT}${SOI_TOKEN}`;
}

export interface PromptIds {
  /** Conditional stream ids: start with <|t2i|>, end with <|soi|>. */
  cond: number[];
  /** Negative (unconditional) stream ids: start with <|t2i|>, end with <|soi|>. */
  uncond: number[];
}

export interface PromptOptions {
  /** Negative prompt text; undefined = the reference's default negative. */
  negative?: string;
  /** Longest allowed stream (tokens); longer prompts throw PromptTooLong. */
  maxTokens?: number;
}

/** Token ids of both CFG streams for a prompt. */
export function encodePrompt(tokenizer: TextTokenizer, prompt: string, options: PromptOptions = {}): PromptIds {
  const cond = tokenizer.encode(conditionalText(prompt));
  const uncond = tokenizer.encode(negativeText(options.negative));
  const { maxTokens } = options;
  if (maxTokens !== undefined) {
    for (const [stream, ids] of [
      ['prompt', cond],
      ['negative prompt', uncond],
    ] as const) {
      if (ids.length > maxTokens) {
        throw new SimpleARError('PromptTooLong', `the ${stream} is ${ids.length} tokens; at most ${maxTokens} fit`, {
          stream,
          tokens: ids.length,
          maxTokens,
        });
      }
    }
  }
  return { cond, uncond };
}
