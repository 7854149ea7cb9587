// config.json + generation_config.json of a SimpleAR checkpoint (HF Qwen2 layout) → LmSpec and
// the generation settings that HF `generate` would silently apply (docs/model.md#language-model,
// docs/model.md#vocabulary-layout, docs/model.md#generation_configjson).
import { ModelFileError, SimpleARError } from '../base/errors.ts';
import { VISUAL_CODES, type LmSpec } from '../base/model-spec.ts';
import { readJson, type FileFolder } from './byte-source.ts';

/**
 * Settings from generation_config.json that the reference does NOT override with explicit
 * kwargs (docs/model.md#generation_configjson): a faithful port defaults to them. Sampling knobs (temperature, top-k/p,
 * do_sample) are overridden by the reference's explicit kwargs and are not reported here.
 */
export interface GenerationSettings {
  /** Token ids that end HF `generate` early when sampled ([] if none are configured). */
  eosTokenIds: number[];
  padTokenId?: number;
  /** HF RepetitionPenaltyLogitsProcessor factor; 1.0 = off (the default when absent). */
  repetitionPenalty: number;
  /** Which file the values came from: generation_config.json, or config.json as HF's fallback. */
  source: 'generation_config.json' | 'config.json';
}

export interface ModelConfig {
  lm: LmSpec;
  generation: GenerationSettings;
  /** `max_position_embeddings` (RoPE table length in the reference: prompt + image must fit). */
  maxPositionEmbeddings: number;
  /** `torch_dtype` as written in config.json (e.g. "bfloat16"), if present. */
  torchDtype?: string;
}

type Json = Record<string, unknown>;

const CONFIG = 'config.json';
const GENERATION_CONFIG = 'generation_config.json';

/**
 * Reads config.json (required) and generation_config.json (optional) from a checkpoint folder.
 * `tokenizerLength` is len(tokenizer) (max id + 1 over vocab and added tokens): the visual
 * offset `vocab_size − 64000` must equal it, otherwise the files do not belong together.
 */
export async function readModelConfig(
  folder: FileFolder,
  tokenizerLength: number,
  signal?: AbortSignal,
): Promise<ModelConfig> {
  const config = await readJson<unknown>(folder, CONFIG, signal);
  if (config === null) {
    throw new ModelFileError(fileName(folder, CONFIG), 'file not found', undefined, 'ModelFileMissing');
  }
  const generation = await readJson<unknown>(folder, GENERATION_CONFIG, signal);
  return parseModelConfig(config, generation, tokenizerLength, {
    config: fileName(folder, CONFIG),
    generation: fileName(folder, GENERATION_CONFIG),
  });
}

/** The pure part of readModelConfig (parsed JSON in, validated spec out). */
export function parseModelConfig(
  config: unknown,
  generationConfig: unknown | null,
  tokenizerLength: number,
  files: { config: string; generation: string } = { config: CONFIG, generation: GENERATION_CONFIG },
): ModelConfig {
  const c = asObject(config, files.config);
  const lm = parseLmSpec(c, tokenizerLength, files.config);
  const generation =
    generationConfig === null
      ? parseGeneration(c, files.config, 'config.json')
      : parseGeneration(asObject(generationConfig, files.generation), files.generation, 'generation_config.json');
  const maxPositionEmbeddings = optionalInt(c, 'max_position_embeddings', files.config) ?? 32768;
  const torchDtype = typeof c.torch_dtype === 'string' ? c.torch_dtype : undefined;
  return { lm, generation, maxPositionEmbeddings, ...(torchDtype ? { torchDtype } : {}) };
}

/** config.json → LmSpec. Shape fields are required; the rest take HF Qwen2Config's defaults. */
export function parseLmSpec(config: Json, tokenizerLength: number, file = CONFIG): LmSpec {
  const hiddenSize = requiredInt(config, 'hidden_size', file);
  const numLayers = requiredInt(config, 'num_hidden_layers', file);
  const numHeads = requiredInt(config, 'num_attention_heads', file);
  const intermediateSize = requiredInt(config, 'intermediate_size', file);
  const vocabSize = requiredInt(config, 'vocab_size', file);
  // HF Qwen2Config: num_key_value_heads=None means plain multi-head attention.
  const numKvHeads = optionalInt(config, 'num_key_value_heads', file) ?? numHeads;
  const rmsNormEps = optionalNumber(config, 'rms_norm_eps', file) ?? 1e-6;
  const ropeTheta = optionalNumber(config, 'rope_theta', file) ?? 10000;
  const tie = config.tie_word_embeddings;
  if (tie !== undefined && typeof tie !== 'boolean') invalid(file, 'tie_word_embeddings', 'must be true or false');
  // HF Qwen2Config defaults tie_word_embeddings to false.
  const tieWordEmbeddings = tie ?? false;

  let headDim: number;
  const explicitHeadDim = optionalInt(config, 'head_dim', file);
  if (explicitHeadDim !== undefined) {
    headDim = explicitHeadDim;
  } else {
    if (hiddenSize % numHeads !== 0) {
      invalid(file, 'num_attention_heads', `hidden_size ${hiddenSize} is not divisible by ${numHeads} heads`);
    }
    headDim = hiddenSize / numHeads;
  }
  if (numHeads % numKvHeads !== 0) {
    invalid(file, 'num_key_value_heads', `${numHeads} attention heads are not a multiple of ${numKvHeads} KV heads`);
  }

  const act = config.hidden_act;
  if (act !== undefined && act !== 'silu') invalid(file, 'hidden_act', `"${String(act)}" is not supported (only silu)`);
  if (config.rope_scaling !== undefined && config.rope_scaling !== null) {
    invalid(file, 'rope_scaling', `${JSON.stringify(config.rope_scaling)} is not supported (the reference has none)`);
  }
  if (config.use_sliding_window === true) {
    invalid(file, 'use_sliding_window', 'sliding-window attention is not supported (the reference has it off)');
  }

  if (vocabSize <= VISUAL_CODES) {
    invalid(file, 'vocab_size', `${vocabSize} leaves no room for ${VISUAL_CODES} visual codes`);
  }
  const visualOffset = vocabSize - VISUAL_CODES;
  if (visualOffset !== tokenizerLength) {
    throw new SimpleARError(
      'ModelMismatch',
      `${file}: vocab_size ${vocabSize} − ${VISUAL_CODES} visual codes = ${visualOffset}, ` +
        `but the tokenizer has ${tokenizerLength} tokens: the model and tokenizer files do not belong together`,
      { file, vocabSize, visualOffset, tokenizerLength, visualCount: VISUAL_CODES },
    );
  }

  return {
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize,
    rmsNormEps,
    ropeTheta,
    vocabSize,
    visualOffset,
    visualCount: VISUAL_CODES,
    tieWordEmbeddings,
  };
}

function parseGeneration(c: Json, file: string, source: GenerationSettings['source']): GenerationSettings {
  const eos = c.eos_token_id;
  let eosTokenIds: number[];
  if (eos === undefined || eos === null) eosTokenIds = [];
  else if (Array.isArray(eos)) eosTokenIds = eos.map((v, i) => tokenId(v, file, `eos_token_id[${i}]`));
  else eosTokenIds = [tokenId(eos, file, 'eos_token_id')];
  const pad = c.pad_token_id;
  const padTokenId = pad === undefined || pad === null ? undefined : tokenId(pad, file, 'pad_token_id');
  // config.json never carries a meaningful repetition_penalty for generation in HF's fallback
  // (GenerationConfig.from_model_config copies it, default 1.0), so read it from either file.
  const repetitionPenalty = optionalNumber(c, 'repetition_penalty', file) ?? 1.0;
  if (repetitionPenalty <= 0) invalid(file, 'repetition_penalty', `must be > 0, got ${repetitionPenalty}`);
  return { eosTokenIds, ...(padTokenId !== undefined ? { padTokenId } : {}), repetitionPenalty, source };
}

function fileName(folder: FileFolder, file: string): string {
  return `${folder.base.replace(/\/+$/, '')}/${file}`;
}

function asObject(v: unknown, file: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ModelFileError(file, 'expected a JSON object');
  }
  return v as Json;
}

function invalid(file: string, field: string, problem: string): never {
  throw new SimpleARError('ModelFileInvalid', `${file}: field "${field}": ${problem}`, { file, field });
}

function requiredInt(c: Json, field: string, file: string): number {
  if (c[field] === undefined || c[field] === null) {
    throw new SimpleARError('ModelFileInvalid', `${file}: required field "${field}" is missing`, { file, field });
  }
  return optionalInt(c, field, file)!;
}

function optionalInt(c: Json, field: string, file: string): number | undefined {
  const v = c[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    invalid(file, field, `must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optionalNumber(c: Json, field: string, file: string): number | undefined {
  const v = c[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    invalid(file, field, `must be a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function tokenId(v: unknown, file: string, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    invalid(file, field, `must be a token id, got ${JSON.stringify(v)}`);
  }
  return v;
}
