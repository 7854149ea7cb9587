// The checkpoint's text tokenizer (Qwen2 byte-level BPE, docs/model.md#text-tokenizer), via @huggingface/tokenizers.
// Added/special tokens are split out verbatim before BPE; no BOS/EOS is added.
import { Tokenizer } from '@huggingface/tokenizers';
import { ModelFileError, SimpleARError } from '../base/errors.ts';
import { readJson, type FileFolder } from './byte-source.ts';

/** The special tokens the pipeline needs, looked up by name (docs/model.md#vocabulary-layout). */
export interface SpecialIds {
  /** `<|t2i|>`: opens every text-to-image prompt. */
  t2i: number;
  /** `<|soi|>`: start of image; the last prompt token. */
  soi: number;
  /** `<|endoftext|>`: Qwen's pad token (used by speculative Jacobi decoding). */
  endOfText: number;
}

export const SPECIAL_TOKENS: Readonly<Record<keyof SpecialIds, string>> = {
  t2i: '<|t2i|>',
  soi: '<|soi|>',
  endOfText: '<|endoftext|>',
};

export interface TokenizerFiles {
  /** Parsed tokenizer.json. */
  tokenizerJson: unknown;
  /** Parsed tokenizer_config.json ({} if the checkpoint has none). */
  tokenizerConfig: unknown;
}

interface AddedTokenJson {
  id: number;
  content: string;
}

export class TextTokenizer {
  /** len(tokenizer): max id + 1 over the BPE vocabulary and the added tokens. */
  readonly length: number;
  readonly specialIds: SpecialIds;
  private readonly impl: Tokenizer;

  constructor(
    readonly files: TokenizerFiles,
    /** Where the files came from, for error messages. */
    readonly source = 'tokenizer.json',
  ) {
    const json = files.tokenizerJson as { model?: { vocab?: unknown }; added_tokens?: unknown };
    if (typeof json !== 'object' || json === null || typeof json.model !== 'object' || json.model === null) {
      throw new ModelFileError(source, 'not a tokenizer.json (no "model")');
    }
    const config = files.tokenizerConfig ?? {};
    if (typeof config !== 'object' || Array.isArray(config)) {
      throw new ModelFileError(source, 'tokenizer_config.json is not a JSON object');
    }
    try {
      // Rust `tokenizers` writes absent components as null; accept files that omit them.
      const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...json };
      this.impl = new Tokenizer(full, config as object);
    } catch (e) {
      throw new ModelFileError(source, `cannot build the tokenizer (${(e as Error).message})`);
    }
    this.length = tokenizerLength(json, source);
    this.specialIds = {
      t2i: this.requireId(SPECIAL_TOKENS.t2i),
      soi: this.requireId(SPECIAL_TOKENS.soi),
      endOfText: this.requireId(SPECIAL_TOKENS.endOfText),
    };
  }

  /** Token ids of `text`, exactly as the reference `tokenizer(text).input_ids` (no BOS/EOS). */
  encode(text: string): number[] {
    const { ids, tokens } = this.impl.encode(text, { add_special_tokens: false });
    for (let i = 0; i < ids.length; i++) {
      if (typeof ids[i] !== 'number') {
        throw new ModelFileError(this.source, `piece ${JSON.stringify(tokens[i])} has no id in the vocabulary`);
      }
    }
    return ids;
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.impl.decode([...ids], {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** Id of a token string (vocabulary or added token), or undefined. */
  tokenId(token: string): number | undefined {
    return this.impl.token_to_id(token);
  }

  /** Token string of an id, or undefined. */
  idToken(id: number): string | undefined {
    return this.impl.id_to_token(id);
  }

  private requireId(token: string): number {
    const id = this.impl.token_to_id(token);
    if (id === undefined) {
      throw new SimpleARError('ModelFileInvalid', `${this.source}: the special token ${token} is missing`, {
        file: this.source,
        token,
      });
    }
    return id;
  }
}

/** Builds the tokenizer from parsed files (e.g. the copies embedded in a converted bundle). */
export function createTokenizer(files: TokenizerFiles, source?: string): TextTokenizer {
  return new TextTokenizer(files, source);
}

/**
 * Loads tokenizer.json (+ tokenizer_config.json, optional) from a checkpoint folder. A folder
 * saved by the slow Qwen2Tokenizer has no tokenizer.json: then it is rebuilt from vocab.json +
 * merges.txt + the added tokens, exactly as HF's Qwen2Converter does (see qwen2TokenizerJson).
 */
export async function loadTokenizer(folder: FileFolder, signal?: AbortSignal): Promise<TextTokenizer> {
  const base = folder.base.replace(/\/+$/, '');
  const tokenizerConfig = (await readJson<unknown>(folder, 'tokenizer_config.json', signal)) ?? {};
  let tokenizerJson = await readJson<unknown>(folder, 'tokenizer.json', signal);
  let source = `${base}/tokenizer.json`;
  if (tokenizerJson === null) {
    const vocab = await readJson<Record<string, number>>(folder, 'vocab.json', signal);
    const merges = await folder.readOptional('merges.txt', signal);
    if (vocab === null || merges === null) {
      throw new ModelFileError(
        `${base}/tokenizer.json`,
        'file not found (nor vocab.json + merges.txt)',
        undefined,
        'ModelFileMissing',
      );
    }
    const addedTokensJson = await readJson<Record<string, number>>(folder, 'added_tokens.json', signal);
    tokenizerJson = qwen2TokenizerJson(vocab, new TextDecoder().decode(merges), addedTokensJson, tokenizerConfig);
    source = `${base}/vocab.json`;
  }
  return new TextTokenizer({ tokenizerJson, tokenizerConfig }, source);
}

// transformers: models/qwen2/tokenization_qwen2.py PRETOKENIZE_REGEX (docs/model.md#text-tokenizer).
const QWEN2_PRETOKENIZE_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface AddedTokenDecoderEntry {
  content: string;
  special?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  single_word?: boolean;
}

/**
 * The tokenizer.json that HF's `Qwen2Converter` (convert_slow_tokenizer.py) produces from the
 * slow tokenizer's files: NFC normalizer, Split(PRETOKENIZE_REGEX, Isolated) + ByteLevel
 * pre-tokenizer, byte-level BPE without unk, ByteLevel decoder. Added tokens come from
 * tokenizer_config.json's added_tokens_decoder (with their flags) and added_tokens.json.
 */
export function qwen2TokenizerJson(
  vocab: Record<string, number>,
  mergesTxt: string,
  addedTokensJson: Record<string, number> | null,
  tokenizerConfig: unknown,
): Record<string, unknown> {
  const merges = mergesTxt
    .split('\n')
    .filter((line, i) => line.length > 0 && !(i === 0 && line.startsWith('#version')))
    .map((line) => {
      const sp = line.indexOf(' ');
      return [line.slice(0, sp), line.slice(sp + 1)];
    });
  const added = new Map<number, Required<AddedTokenDecoderEntry>>();
  const decoder = (tokenizerConfig as { added_tokens_decoder?: Record<string, AddedTokenDecoderEntry> })?.added_tokens_decoder ?? {};
  for (const [id, t] of Object.entries(decoder)) {
    added.set(Number(id), {
      content: t.content,
      special: t.special ?? false,
      lstrip: t.lstrip ?? false,
      rstrip: t.rstrip ?? false,
      normalized: t.normalized ?? !(t.special ?? false),
      single_word: t.single_word ?? false,
    });
  }
  for (const [content, id] of Object.entries(addedTokensJson ?? {})) {
    if (!added.has(id)) {
      added.set(id, { content, special: true, lstrip: false, rstrip: false, normalized: false, single_word: false });
    }
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...added.entries()].sort((a, b) => a[0] - b[0]).map(([id, t]) => ({ id, ...t })),
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN2_PRETOKENIZE_REGEX }, behavior: 'Isolated', invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/** max id + 1 over `model.vocab` and `added_tokens` (HF's len(tokenizer) for a dense vocabulary). */
export function tokenizerLength(tokenizerJson: unknown, source = 'tokenizer.json'): number {
  const json = tokenizerJson as { model?: { vocab?: unknown }; added_tokens?: AddedTokenJson[] };
  let max = -1;
  const vocab = json.model?.vocab;
  if (Array.isArray(vocab)) {
    // Unigram models store [piece, score] pairs: the id is the index.
    max = vocab.length - 1;
  } else if (typeof vocab === 'object' && vocab !== null) {
    for (const id of Object.values(vocab)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw new ModelFileError(source, `model.vocab has a non-integer id ${JSON.stringify(id)}`);
      }
      if (id > max) max = id;
    }
  } else {
    throw new ModelFileError(source, 'model.vocab is missing');
  }
  for (const t of json.added_tokens ?? []) {
    if (typeof t.id !== 'number' || !Number.isInteger(t.id) || t.id < 0) {
      throw new ModelFileError(source, `added token ${JSON.stringify(t.content)} has id ${JSON.stringify(t.id)}`);
    }
    if (t.id > max) max = t.id;
  }
  return max + 1;
}
