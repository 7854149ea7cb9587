// The full-size fixture generator (`npm run fixtures:full`, tools/fixtures/full/): read back with
// the converter's own readers, its files have the released shapes and layout and are
// deterministic for a seed. Cheap on purpose: the LM is written at a small width (its released
// shapes are checked on the plan), and only one full-width decoder.jit (~265 MB) is written.
import { createHash } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeDecoderFile } from '../../src/core/model/decoder.ts';
import { LocalFileSource, openFolder } from '../../src/core/formats/byte-source.ts';
import { inspectCheckpoint } from '../../src/core/formats/inspect-checkpoint.ts';
import { readModelConfig } from '../../src/core/formats/model-config.ts';
import { openSafetensors } from '../../src/core/formats/safetensors.ts';
import { toFloat32 } from '../../src/core/formats/tensor.ts';
import { loadTokenizer } from '../../src/core/formats/tokenizer.ts';
import { openTorchScript } from '../../src/core/formats/torchscript/index.ts';
import { ZipArchive } from '../../src/core/formats/torchscript/zip.ts';
import { writeWideDecoder } from '../../tools/fixtures/full/decoder.ts';
import { buildTokenizer, defaultQwenTokenizerPath, lmTensorShapes, MODELS, writeLm, type TokenizerBuild } from '../../tools/fixtures/full/lm.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const TEMPLATE = readFileSync(join(FIXTURES, 'tiny-cosmos/decoder.jit'));

/** NVIDIA's DV8x16x16 decoder.jit: every state-dict key and shape, in file order. */
const RELEASED_DECODER = readFileSync(join(FIXTURES, 'released-decoder-shapes.tsv'), 'utf8')
  .trim()
  .split('\n')
  .map((line) => {
    const [name, shape] = line.split('\t');
    return { name: name!, shape: shape!.replace(/[()\s]/g, '').split(',').filter(Boolean).map(Number) };
  });

/** SimpleAR-0.5B (Qwen2.5-0.5B body, SimpleAR's vocabulary): one layer's tensors, as released. */
const RELEASED_LAYER_0_5B: [string, number[]][] = [
  ['self_attn.q_proj.weight', [896, 896]],
  ['self_attn.q_proj.bias', [896]],
  ['self_attn.k_proj.weight', [128, 896]],
  ['self_attn.k_proj.bias', [128]],
  ['self_attn.v_proj.weight', [128, 896]],
  ['self_attn.v_proj.bias', [128]],
  ['self_attn.o_proj.weight', [896, 896]],
  ['mlp.gate_proj.weight', [4864, 896]],
  ['mlp.up_proj.weight', [4864, 896]],
  ['mlp.down_proj.weight', [896, 4864]],
  ['input_layernorm.weight', [896]],
  ['post_attention_layernorm.weight', [896]],
];

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'full-checkpoint-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('full-size decoder.jit (widened from the traced test archive)', () => {
  it('has the released keys, shapes and dtypes, and the converter reads it as a DV8x16x16 decoder', async () => {
    const path = join(dir, 'decoder.jit');
    const result = await writeWideDecoder(TEMPLATE, path, 0);
    expect(result.parameters).toBe(RELEASED_DECODER.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0));

    const reader = await openTorchScript(new LocalFileSource(path));
    const params = reader.tensors().filter((t) => t.requiresGrad);
    expect(params.map((t) => ({ name: t.name, shape: t.shape }))).toEqual(RELEASED_DECODER);
    expect(new Set(params.map((t) => t.dtype))).toEqual(new Set(['f32']));
    // Contiguous, each in a storage of exactly its size.
    for (const t of params) expect(t.stride).toEqual(t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1)));
    const template = await openTorchScript(new LocalFileSource(join(FIXTURES, 'tiny-cosmos/decoder.jit')));
    expect(reader.tensors().filter((t) => !t.requiresGrad)).toEqual(template.tensors().filter((t) => !t.requiresGrad));
    expect(reader.formatVersion).toBe(template.formatVersion);

    const spec = await describeDecoderFile(reader);
    expect([spec.latentChannels, spec.finalChannels, spec.zChannels, spec.outChannels, spec.upscale]).toEqual([512, 256, 16, 192, 16]);

    // Torch's zip layout: the template's entries in its order, every entry's data 64-byte aligned.
    const zip = await ZipArchive.open(new LocalFileSource(path));
    const tzip = await ZipArchive.open(new LocalFileSource(join(FIXTURES, 'tiny-cosmos/decoder.jit')));
    expect([...zip.entries.keys()]).toEqual([...tzip.entries.keys()]);
    const fd = openSync(path, 'r');
    try {
      const h = Buffer.alloc(30);
      for (const e of zip.entries.values()) {
        readSync(fd, h, 0, 30, e.headerOffset);
        expect((e.headerOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28)) % 64, e.name).toBe(0);
      }
    } finally {
      closeSync(fd);
    }
    // Widened storages hold their full size and are read back through CRC-checked reads.
    const big = await reader.readAny('decoder.mid.block_1.conv1.0.conv3d.weight');
    const w = new Float32Array(big.bytes.buffer, big.bytes.byteOffset, big.bytes.byteLength / 4);
    const std = Math.sqrt(w.reduce((a, x) => a + x * x, 0) / w.length);
    expect(std).toBeCloseTo(1 / Math.sqrt(512 * 9), 3); // N(0, 1/fan_in)
  });

  it('is deterministic for a seed, and the seed changes the parameters only', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((n) => join(dir, `decoder-32-${n}.jit`));
    await writeWideDecoder(TEMPLATE, a!, 7, 32);
    await writeWideDecoder(TEMPLATE, b!, 7, 32);
    await writeWideDecoder(TEMPLATE, c!, 8, 32);
    expect(sha256(a!)).toBe(sha256(b!));
    const read = async (p: string) => {
      const r = await openTorchScript(new LocalFileSource(p));
      return Promise.all(r.tensors().map(async (t) => ({ name: t.name, param: t.requiresGrad, hash: createHash('sha256').update((await r.readAny(t.name)).bytes).digest('hex') })));
    };
    const [ta, tc] = [await read(a!), await read(c!)];
    expect(ta.map((t) => t.name)).toEqual(tc.map((t) => t.name));
    ta.forEach((t, i) => expect(t.hash === tc[i]!.hash, t.name).toBe(!t.param));
  });
});

describe('full-size LM checkpoint', () => {
  let tok: TokenizerBuild;
  beforeAll(() => {
    tok = buildTokenizer(defaultQwenTokenizerPath());
  });

  it('plans the released SimpleAR-0.5B tensors', () => {
    const plan = lmTensorShapes(MODELS['0.5B'], tok.length + 64000);
    const released: [string, number[]][] = [
      ['model.embed_tokens.weight', [215672, 896]],
      ...Array.from({ length: 24 }, (_, i) => RELEASED_LAYER_0_5B.map(([n, s]): [string, number[]] => [`model.layers.${i}.${n}`, s])).flat(),
      ['model.norm.weight', [896]],
    ];
    expect(plan).toEqual(released);
    expect(plan.reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0)).toBe(551_140_224);
  });

  it('writes the HF layout our readers take: config, the real Qwen2 BPE with SimpleAR tokens, BF16 weights; single = sharded, deterministic', async () => {
    const dims = { hidden: 32, layers: 2, heads: 2, kvHeads: 1, intermediate: 64, maxWindowLayers: 2 };
    const [one, again, sharded, other] = ['one', 'again', 'sharded', 'other'].map((n) => join(dir, `lm-${n}`));
    writeLm({ out: one!, dims, seed: 3, shards: 1, tokenizer: tok });
    writeLm({ out: again!, dims, seed: 3, shards: 1, tokenizer: tok });
    const written = writeLm({ out: sharded!, dims, seed: 3, shards: 3, tokenizer: tok });
    writeLm({ out: other!, dims, seed: 4, shards: 1, tokenizer: tok });
    expect(written.files).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json']) expect(sha256(join(one!, f)), f).toBe(sha256(join(again!, f)));

    // Tokenizer and config through the converter's readers.
    const folder = openFolder(one!);
    const tokenizer = await loadTokenizer(folder);
    expect(tokenizer.length).toBe(151672);
    expect(tokenizer.specialIds).toEqual({ t2i: 151665, soi: 151667, endOfText: 151643 });
    const config = await readModelConfig(folder, tokenizer.length);
    expect(config.lm.vocabSize).toBe(215672);
    expect([config.lm.hiddenSize, config.lm.numLayers, config.lm.numHeads, config.lm.numKvHeads]).toEqual([32, 2, 2, 1]);
    // The BPE is Qwen's own: plain text encodes as with the package's original file.
    const qwen = JSON.parse(readFileSync(defaultQwenTokenizerPath(), 'utf8'));
    const reference = new Tokenizer(qwen, {});
    for (const text of ['a red fox in the snow, 4k', 'Ünïcödé — 猫 🐱\r\nend']) {
      expect(tokenizer.encode(text)).toEqual(reference.encode(text, { add_special_tokens: false }).ids);
    }
    expect(tokenizer.encode('<|t2i|>a cat<|soi|>')).toEqual([151665, ...tokenizer.encode('a cat'), 151667]);

    // The same tensors whether single or sharded; another seed changes them.
    const digest = async (d: string) =>
      (await inspectCheckpoint(openFolder(d), { parts: ['lm'] })).tensors
        .map((t) => [t.name, t.dtype, t.shape, t.sha256] as const)
        .sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const single = await digest(one!);
    expect(single.length).toBe(1 + 2 * 12 + 1);
    expect(await digest(sharded!)).toEqual(single);
    const changed = (await digest(other!)).filter((t, i) => t[3] !== single[i]![3]);
    expect(changed.length).toBe(single.length);

    // Values in the intended ranges (bf16 read back as f32).
    const st = await openSafetensors(folder);
    const norm = toFloat32(await st.read('model.norm.weight'));
    expect(Math.min(...norm)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...norm)).toBeLessThanOrEqual(4);
    const emb = toFloat32(await st.readRows('model.embed_tokens.weight', 0, 4096));
    const std = Math.sqrt(emb.reduce((a, x) => a + x * x, 0) / emb.length);
    expect(std).toBeCloseTo(0.1, 2);
  });
});
