// The negative-prompt field and what it means, as in the CLI, the widget and the API
// (docs/model.md#prompt-format): the field starts with SimpleAR's own negative prompt, which is the
// default; any other text is the negative prompt; an empty field is "" — the null condition
// `<|t2i|><|soi|>`, plain CFG — never "the default".
import { DEFAULT_NEGATIVE_TEXT } from '../core/model/prompt.ts';

/** The settings' negativePrompt for the field's text (trimmed): undefined = the default. */
export function negativePromptFromField(text: string): string | undefined {
  const negative = text.trim();
  return negative === DEFAULT_NEGATIVE_TEXT ? undefined : negative;
}

/** The field's text for an image's negativePrompt. */
export function negativeFieldText(negativePrompt: string | undefined): string {
  return negativePrompt ?? DEFAULT_NEGATIVE_TEXT;
}
