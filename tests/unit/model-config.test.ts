import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLmSpec, parseModelConfig, readModelConfig } from '../../src/core/formats/model-config.ts';
import { loadTokenizer } from '../../src/core/formats/tokenizer.ts';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';

/** SimpleAR-0.5B as docs/model.md#language-model describes it (Qwen2.5-0.5B-Instruct shapes, vocab 215672). */
const CONFIG_05B = {
  architectures: ['Qwen2ForCausalLM'],
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: 'silu',
  hidden_size: 896,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 215672,
};
const QWEN_INSTRUCT_GENERATION = {
  bos_token_id: 151643,
  pad_token_id: 151643,
  do_sample: true,
  eos_token_id: [151645, 151643],
  repetition_penalty: 1.1,
  temperature: 0.7,
  top_p: 0.8,
  top_k: 20,
};

const errorOf = (f: () => unknown): SimpleARError => {
  try {
    f();
  } catch (e) {
    return e as SimpleARError;
  }
  throw new Error('expected an error');
};

describe('config.json → LmSpec', () => {
  it('SimpleAR-0.5B shapes (docs/model.md#language-model): head_dim 64, visual offset 151672', () => {
    expect(parseLmSpec(CONFIG_05B, 151672)).toEqual({
      hiddenSize: 896,
      numLayers: 24,
      numHeads: 14,
      numKvHeads: 2,
      headDim: 64,
      intermediateSize: 4864,
      rmsNormEps: 1e-6,
      ropeTheta: 1e6,
      vocabSize: 215672,
      visualOffset: 151672,
      visualCount: 64000,
      tieWordEmbeddings: true,
    });
  });

  it('an explicit head_dim wins over hidden/heads', () => {
    expect(parseLmSpec({ ...CONFIG_05B, head_dim: 128 }, 151672).headDim).toBe(128);
  });

  it('missing optional fields take HF Qwen2Config defaults', () => {
    const { num_key_value_heads, rms_norm_eps, rope_theta, tie_word_embeddings, ...rest } = CONFIG_05B;
    void [num_key_value_heads, rms_norm_eps, rope_theta, tie_word_embeddings];
    const lm = parseLmSpec(rest, 151672);
    expect(lm).toMatchObject({ numKvHeads: 14, rmsNormEps: 1e-6, ropeTheta: 10000, tieWordEmbeddings: false });
  });

  it('a tokenizer of another length is a ModelMismatch stating both numbers', () => {
    const err = errorOf(() => parseLmSpec(CONFIG_05B, 151665));
    expect(err).toBeInstanceOf(SimpleARError);
    expect(err.code).toBe('ModelMismatch');
    expect(err.message).toContain('151672');
    expect(err.message).toContain('151665');
    expect(err.details).toMatchObject({ visualOffset: 151672, tokenizerLength: 151665, vocabSize: 215672 });
  });

  it.each(['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'vocab_size'])(
    'a missing required field (%s) is ModelFileInvalid naming file and field',
    (field) => {
      const c: Record<string, unknown> = { ...CONFIG_05B };
      delete c[field];
      const err = errorOf(() => parseLmSpec(c, 151672, 'ckpt/config.json'));
      expect(err.code).toBe('ModelFileInvalid');
      expect(err.message).toContain('ckpt/config.json');
      expect(err.message).toContain(field);
      expect(err.details).toEqual({ file: 'ckpt/config.json', field });
    },
  );

  it.each([
    ['hidden_size', 896.5],
    ['hidden_size', '896'],
    ['num_hidden_layers', 0],
    ['num_key_value_heads', -2],
    ['rms_norm_eps', 'small'],
    ['rope_theta', 0],
    ['tie_word_embeddings', 'yes'],
  ])('an invalid %s (%j) is ModelFileInvalid naming the field', (field, value) => {
    const err = errorOf(() => parseLmSpec({ ...CONFIG_05B, [field]: value }, 151672));
    expect(err.code).toBe('ModelFileInvalid');
    expect(err.details).toMatchObject({ field });
  });

  it('rejects shapes and features the port does not implement', () => {
    expect(errorOf(() => parseLmSpec({ ...CONFIG_05B, num_attention_heads: 15 }, 151672)).message).toMatch(/divisible/);
    expect(errorOf(() => parseLmSpec({ ...CONFIG_05B, num_key_value_heads: 3 }, 151672)).message).toMatch(/multiple/);
    expect(errorOf(() => parseLmSpec({ ...CONFIG_05B, hidden_act: 'gelu' }, 151672)).details).toMatchObject({ field: 'hidden_act' });
    expect(errorOf(() => parseLmSpec({ ...CONFIG_05B, rope_scaling: { type: 'yarn', factor: 4 } }, 151672)).details).toMatchObject({ field: 'rope_scaling' });
    expect(errorOf(() => parseLmSpec({ ...CONFIG_05B, use_sliding_window: true }, 151672)).details).toMatchObject({ field: 'use_sliding_window' });
    expect(errorOf(() => parseLmSpec({ ...CONFIG_05B, vocab_size: 64000 }, 0)).details).toMatchObject({ field: 'vocab_size' });
  });
});

describe('generation settings (docs/model.md#generation_configjson)', () => {
  it('reads eos ids, pad id and repetition_penalty from generation_config.json', () => {
    const cfg = parseModelConfig(CONFIG_05B, QWEN_INSTRUCT_GENERATION, 151672);
    expect(cfg.generation).toEqual({
      eosTokenIds: [151645, 151643],
      padTokenId: 151643,
      repetitionPenalty: 1.1,
      source: 'generation_config.json',
    });
    expect(cfg.maxPositionEmbeddings).toBe(32768);
    expect(cfg.torchDtype).toBe('bfloat16');
  });

  it('a single eos id becomes a list; repetition_penalty defaults to 1.0', () => {
    const cfg = parseModelConfig(CONFIG_05B, { eos_token_id: 151645 }, 151672);
    expect(cfg.generation).toEqual({ eosTokenIds: [151645], repetitionPenalty: 1, source: 'generation_config.json' });
  });

  it('without generation_config.json, falls back to config.json (as HF does)', () => {
    const cfg = parseModelConfig(CONFIG_05B, null, 151672);
    expect(cfg.generation).toEqual({ eosTokenIds: [151645], repetitionPenalty: 1, source: 'config.json' });
  });

  it('invalid values are ModelFileInvalid naming generation_config.json', () => {
    const err = errorOf(() => parseModelConfig(CONFIG_05B, { eos_token_id: ['x'] }, 151672));
    expect(err.code).toBe('ModelFileInvalid');
    expect(err.message).toMatch(/generation_config\.json.*eos_token_id\[0\]/);
    expect(errorOf(() => parseModelConfig(CONFIG_05B, { repetition_penalty: -1 }, 151672)).details).toMatchObject({
      field: 'repetition_penalty',
    });
    expect(errorOf(() => parseModelConfig(CONFIG_05B, [1, 2], 151672)).message).toMatch(/JSON object/);
  });
});

describe('readModelConfig from a folder', () => {
  let dir: string;
  let server: TestServer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'model-config-'));
    const put = async (sub: string, file: string, body: string) => {
      await mkdir(join(dir, sub), { recursive: true });
      await writeFile(join(dir, sub, file), body);
    };
    await put('full', 'config.json', JSON.stringify(CONFIG_05B));
    await put('full', 'generation_config.json', JSON.stringify(QWEN_INSTRUCT_GENERATION));
    await put('no-gen', 'config.json', JSON.stringify(CONFIG_05B));
    await put('broken', 'config.json', '{"hidden_size": 8,');
    await put('empty', 'README.md', 'nothing');
    server = await startTestServer(dir);
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const bases = () => [(s: string) => join(dir, s), (s: string) => `${server.url}${s}`];

  it('reads both files, locally and over HTTP', async () => {
    for (const base of bases()) {
      const cfg = await readModelConfig(openFolder(base('full')), 151672);
      expect(cfg.lm.visualOffset).toBe(151672);
      expect(cfg.generation.repetitionPenalty).toBe(1.1);
      const noGen = await readModelConfig(openFolder(base('no-gen')), 151672);
      expect(noGen.generation.source).toBe('config.json');
    }
  });

  it('a missing config.json is ModelFileMissing; broken JSON is ModelFileInvalid; both name the file', async () => {
    for (const base of bases()) {
      await expect(readModelConfig(openFolder(base('empty')), 151672)).rejects.toMatchObject({
        code: 'ModelFileMissing',
        message: expect.stringMatching(/empty\/config\.json/),
      });
      await expect(readModelConfig(openFolder(base('broken')), 151672)).rejects.toMatchObject({
        code: 'ModelFileInvalid',
        message: expect.stringMatching(/broken\/config\.json/),
      });
    }
  });

  it('a wrong field names the full path of config.json', async () => {
    await writeFile(join(dir, 'no-gen', 'config.json'), JSON.stringify({ ...CONFIG_05B, hidden_size: 'x' }));
    await expect(readModelConfig(openFolder(join(dir, 'no-gen')), 151672)).rejects.toMatchObject({
      code: 'ModelFileInvalid',
      message: expect.stringContaining(`${join(dir, 'no-gen')}/config.json: field "hidden_size"`),
    });
  });
});

const FIXTURES = join(import.meta.dirname, '../fixtures');
const GOLDEN = join(FIXTURES, 'golden/golden.json');

describe('tiny fixture checkpoints', () => {
  it('give the LmSpec of the golden dims, with the tokenizer length as visual offset', async () => {
    const g = JSON.parse(readFileSync(GOLDEN, 'utf8'));
    for (const lm of g.lm) {
      const folder = openFolder(join(FIXTURES, lm.checkpoint));
      const tok = await loadTokenizer(folder);
      const cfg = await readModelConfig(folder, tok.length);
      const d = lm.dims;
      expect(cfg.lm).toEqual({
        hiddenSize: d.hidden_size,
        numLayers: d.num_hidden_layers,
        numHeads: d.num_attention_heads,
        numKvHeads: d.num_key_value_heads,
        headDim: d.head_dim,
        intermediateSize: d.intermediate_size,
        rmsNormEps: d.rms_norm_eps,
        ropeTheta: d.rope_theta,
        vocabSize: d.vocab_size,
        visualOffset: lm.visual_token_offset,
        visualCount: lm.num_visual_tokens,
        tieWordEmbeddings: true,
      });
      expect(cfg.lm.visualOffset).toBe(lm.text_vocab_size);
      expect(cfg.generation.eosTokenIds.length).toBeGreaterThan(0);
    }
  });
});
