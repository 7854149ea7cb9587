// Issue #3 acceptance, with the CLI as a user runs it (a child process): convert the held-out
// tiny SimpleAR checkpoint (sharded safetensors) and the held-out tiny Cosmos decoder.jit — files
// the converters were never developed against — with `--weights f32`, then `decode` the golden
// 4×4 grid: the PNG's pixels equal the PyTorch reference within 1 level per channel. The 2×3
// grid is not square (the CLI takes square grids), so it goes through the core API on the same
// bundle. Also: the manifest's contents, greedy tokens of the bundle's LM against the reference,
// and a truncated checkpoint leaving no bundle behind with a typed error naming file and tensor.
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { decodePng } from '../../src/core/image/png.ts';
import { openModelBundle, type ModelBundle } from '../../src/core/runtime/model-bundle.ts';
import type { BundleManifest } from '../../src/core/bundle/index.ts';
import { DecoderRunner } from '../../src/core/runtime/decoder-runner.ts';
import { rgbaToRgb } from '../../src/core/image/png.ts';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { goldenRepetitionPenalty } from '../helpers/fixture-model.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const FIXTURES = join(ROOT, 'tests/fixtures');
const GOLDEN = join(FIXTURES, 'golden');
const MODEL = 'tests/fixtures/tiny-simplear-b';
const VQ = 'tests/fixtures/tiny-cosmos-b';

interface Golden {
  tokenizer: { len: number; special_tokens: Record<string, number> };
  lm: { checkpoint: string; prompt: string; dims: Record<string, number>; greedy: { steps: number; codes: number[] } }[];
  decoder: {
    checkpoint: string;
    config: { channels: number; channels_mult: number[]; num_res_blocks: number; z_channels: number; levels: number[] };
    grids: { name: string; grid: [number, number]; codes: number[]; rgb8: { file: string }; png: { file: string } }[];
  }[];
}
const golden = JSON.parse(await readFile(join(GOLDEN, 'golden.json'), 'utf8')) as Golden;
const lmCase = golden.lm.find((c) => c.checkpoint === 'tiny-simplear-b')!;
const decoderCase = golden.decoder.find((c) => c.checkpoint === 'tiny-cosmos-b')!;

/** Runs `npx tsx src/cli/main.ts …` from the repository root. */
function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn('npx', ['tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

/** Largest per-channel difference between two RGB byte arrays, and how many bytes differ. */
function compareRgb(ours: Uint8Array, ref: Uint8Array) {
  expect(ours.length).toBe(ref.length);
  let max = 0;
  let differing = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ours[i]! - ref[i]!);
    if (d > max) max = d;
    if (d) differing++;
  }
  return { max, differing };
}

describe('acceptance: held-out checkpoint → CLI convert --weights f32 → CLI decode = reference PNG', () => {
  let dir: string;
  let out: string;
  let manifest: BundleManifest;
  let bundle: ModelBundle;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'acceptance-'));
    out = join(dir, 'bundle');
    const r = await runCli(['convert', '--model', MODEL, '--vq', VQ, '--out', out, '--weights', 'f32']);
    expect(r.code, r.stderr).toBe(0);
    console.log(`[acceptance] ${r.stdout.trim()}`);
    manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as BundleManifest;
    bundle = await openModelBundle(openFolder(out));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('decode of the 4×4 grid with the CLI gives the reference PNG within 1 level per channel', async () => {
    const grid = decoderCase.grids.find((g) => g.name === '4x4')!;
    const tokens = join(dir, 'tokens-4x4.json');
    await writeFile(tokens, JSON.stringify(grid.codes));
    const png = join(dir, 'image-4x4.png');
    const r = await runCli(['decode', '--bundle', out, '--tokens', tokens, '--out', png]);
    expect(r.code, r.stderr).toBe(0);

    const ours = decodePng(new Uint8Array(await readFile(png)));
    const ref = decodePng(new Uint8Array(await readFile(join(GOLDEN, grid.png.file))));
    expect([ours.width, ours.height, ours.channels]).toEqual([64, 64, 3]);
    expect([ref.width, ref.height, ref.channels]).toEqual([64, 64, 3]);
    expect(ref.data).toEqual(new Uint8Array(await readFile(join(GOLDEN, grid.rgb8.file))));
    const { max, differing } = compareRgb(ours.data, ref.data);
    console.log(`[acceptance] CLI decode 4x4 vs reference PNG: max ${max} level(s), ${differing}/${ref.data.length} bytes differ`);
    expect(max).toBeLessThanOrEqual(1);
  });

  it('the 2×3 grid (not square) through the core API on the same bundle: within 1 level', async () => {
    const grid = decoderCase.grids.find((g) => g.name === '2x3')!;
    const runner = await DecoderRunner.create(ort, bundle.decoder, await bundle.loadDecoderWeights());
    const image = await runner.decode(grid.codes, ...grid.grid);
    await runner.release();
    expect([image.height, image.width]).toEqual([32, 48]);
    const { max, differing } = compareRgb(rgbaToRgb(image.rgba), new Uint8Array(await readFile(join(GOLDEN, grid.rgb8.file))));
    console.log(`[acceptance] core decode 2x3 vs reference: max ${max} level(s), ${differing} bytes differ`);
    expect(max).toBeLessThanOrEqual(1);
  });

  it('the manifest describes the checkpoint as read from its files', () => {
    const d = lmCase.dims;
    expect(manifest.model.lm).toEqual({
      hiddenSize: d.hidden_size,
      numLayers: d.num_hidden_layers,
      numHeads: d.num_attention_heads,
      numKvHeads: d.num_key_value_heads,
      headDim: d.head_dim,
      intermediateSize: d.intermediate_size,
      rmsNormEps: d.rms_norm_eps,
      ropeTheta: d.rope_theta,
      vocabSize: d.vocab_size,
      visualOffset: golden.tokenizer.len,
      visualCount: 64000,
      tieWordEmbeddings: true,
    });
    const special = golden.tokenizer.special_tokens;
    expect(manifest.tokenizer).toEqual({
      files: ['tokenizer.json', 'tokenizer_config.json'],
      specialIds: { t2i: special['<|t2i|>'], soi: special['<|soi|>'], endOfText: special['<|endoftext|>'] },
      length: golden.tokenizer.len,
    });
    expect(manifest.weights).toEqual({ mode: 'f32', lm: 'f32', blockSize: 32, decoder: 'f32', decoderFused: false });
    const cfg = decoderCase.config;
    const dec = manifest.model.decoder as unknown as ModelBundle['decoder'];
    expect(dec.fsq.levels).toEqual(cfg.levels);
    expect(dec.zChannels).toBe(cfg.z_channels);
    expect(dec.latentChannels).toBe(cfg.channels * cfg.channels_mult.at(-1)!);
    expect(dec.finalChannels).toBe(cfg.channels * cfg.channels_mult[0]!);
    expect(dec.up.map((l) => l.blocks.length)).toEqual(cfg.channels_mult.map(() => cfg.num_res_blocks + 1));
    expect(dec.upscale).toBe(16);
    expect(manifest.model.generation?.source).toBe('generation_config.json');
    expect(manifest.model.preview?.map).toHaveLength(21);
    expect(manifest.sources).toEqual([
      { role: 'lm', url: join(ROOT, MODEL) },
      { role: 'decoder', url: join(ROOT, VQ) },
    ]);
  });

  it("the bundle's LM generates the reference's greedy tokens", async () => {
    const engine = await createCpuEngine(ort, await bundle.loadModel(), { maxLatentSide: 4 });
    const side = Math.sqrt(lmCase.greedy.steps);
    const result = await engine.generate({ prompt: lmCase.prompt, size: side * 16, temperature: 0, seed: 1 });
    expect(Array.from(result.codes)).toEqual(lmCase.greedy.codes);
    await engine.dispose();
  });

  it("the bundle's LM with a repetition penalty: the reference's greedy tokens (make_penalty_golden.py)", async () => {
    const penalty = goldenRepetitionPenalty();
    expect(penalty.checkpoint).toBe('tiny-simplear-b');
    const side = penalty.grid[0];
    const model = await bundle.loadModel();
    // The bundle carries the checkpoint's generation_config.json, whose penalty (none: 1) is the default.
    expect(model.generation).toMatchObject({ repetitionPenalty: 1, source: 'generation_config.json' });
    const engine = await createCpuEngine(ort, model, { maxLatentSide: side });
    const result = await engine.generate({ prompt: penalty.prompt, size: side * 16, temperature: 0, seed: 1, repetitionPenalty: penalty.repetition_penalty });
    expect(Array.from(result.codes)).toEqual(penalty.codes);
    await engine.dispose();
  });

  it('a truncated shard: typed error naming the file and tensor, exit 2, no bundle left at --out', async () => {
    const broken = join(dir, 'broken-model');
    await mkdir(broken);
    for (const f of await readdir(join(ROOT, MODEL))) await copyFile(join(ROOT, MODEL, f), join(broken, f));
    const shard = join(broken, 'model-00002-of-00002.safetensors');
    await truncate(shard, (await stat(shard)).size - 100);
    const target = join(dir, 'broken-bundle');
    const r = await runCli(['convert', '--model', broken, '--vq', VQ, '--out', target, '--weights', 'f32']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/error \[ModelFileInvalid\]: .*model-00002-of-00002\.safetensors \(tensor [\w.]+\): truncated/);
    expect((await readdir(dir)).filter((f) => f.startsWith('broken-bundle'))).toEqual([]);
  });
});
