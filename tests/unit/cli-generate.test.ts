// `simplear generate` in-process: the tiny fixture converted with --weights f32, greedy tokens
// equal the PyTorch reference (golden.json), the PNG carries its settings, a seed reproduces,
// and bad settings fail with exit 2 before the model is read.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/cli.ts';
import { decodePng } from '../../src/core/image/png.ts';
import { Capture } from '../helpers/capture.ts';
import { pngTextChunks } from '../helpers/png-text.ts';
import * as ort from 'onnxruntime-node';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { loadFixtureModel } from '../helpers/fixture-model.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const golden = JSON.parse(readFileSync(join(FIXTURES, 'golden/golden.json'), 'utf8')) as {
  lm: { checkpoint: string; prompt: string; greedy: { codes: number[] } }[];
};


async function cli(...argv: string[]) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runCli(argv, { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

let dir: string;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-generate-'));
  bundle = join(dir, 'tiny-f32');
  const r = await cli('convert', '--model', join(FIXTURES, 'tiny-simplear'), '--vq', join(FIXTURES, 'tiny-cosmos'), '--out', bundle, '--weights', 'f32', '--quiet');
  expect(r.code, r.stderr).toBe(0);
}, 120_000);

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('simplear generate', () => {
  it('greedy tokens equal the reference; the PNG is 64×64 RGB with the settings as text', async () => {
    const ref = golden.lm.find((c) => c.checkpoint === 'tiny-simplear')!;
    const png = join(dir, 'out', 'cat.png');
    const tokens = join(dir, 'out', 'tokens.json');
    const r = await cli('generate', '--bundle', bundle, '--temperature', '0', '--size', '64', '--prompt', ref.prompt, '--out', png, '--tokens-out', tokens);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(await readFile(tokens, 'utf8'))).toEqual(ref.greedy.codes);
    expect(r.stdout).toMatch(/^wrote .*cat\.png: 64×64, seed \d+, 16 tokens/);
    // no --seed: a random one, printed
    expect(r.stderr).toMatch(/^seed: \d+$/m);
    expect(r.stderr).toMatch(/tokens 100%  row 4\/4  [\d.]+ tokens\/s/);
    const bytes = new Uint8Array(await readFile(png));
    const image = decodePng(bytes);
    expect([image.width, image.height, image.channels]).toEqual([64, 64, 3]);
    const text = pngTextChunks(bytes);
    expect(text).toMatchObject({
      prompt: 'a red cat',
      size: '64x64',
      cfg: '6',
      temperature: '0',
      'top-k': '64000',
      'top-p': '1',
      model: 'tiny-f32',
      Software: 'simplear-web',
    });
    expect(text.seed).toMatch(/^\d+$/);
    expect(text['negative prompt']).toBeDefined();
    // The checkpoint's generation_config.json has no penalty: 1, recorded.
    expect(text['repetition penalty']).toBe('1');
  });

  it('--repetition-penalty and --negative "" reach the engine: the API\'s tokens for the same settings (the null condition for "")', async () => {
    const ref = golden.lm.find((c) => c.checkpoint === 'tiny-simplear')!;
    const engine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 4 });
    const greedy = { prompt: ref.prompt, size: 64, temperature: 0, seed: 1 };
    const run = async (name: string, ...args: string[]) => {
      const png = join(dir, `${name}.png`);
      const tokens = join(dir, `${name}.json`);
      const r = await cli('generate', '-b', bundle, '-p', ref.prompt, '--size', '64', '--temperature', '0', '-s', '1', '-o', png, '--tokens-out', tokens, '-q', ...args);
      expect(r.code, r.stderr).toBe(0);
      return { codes: JSON.parse(await readFile(tokens, 'utf8')) as number[], text: pngTextChunks(new Uint8Array(await readFile(png))) };
    };
    const penalised = await run('penalty', '--repetition-penalty', '1.3');
    expect(penalised.codes).toEqual(Array.from((await engine.generate({ ...greedy, repetitionPenalty: 1.3 })).codes));
    expect(penalised.codes).not.toEqual(ref.greedy.codes);
    expect(penalised.text['repetition penalty']).toBe('1.3');
    const nullCondition = await run('null-negative', '--negative', '');
    expect(nullCondition.codes).toEqual(Array.from((await engine.generate({ ...greedy, negativePrompt: '' })).codes));
    expect(nullCondition.codes).not.toEqual(ref.greedy.codes);
    expect(nullCondition.text['negative prompt']).toBe('');
    await engine.dispose();
  });

  it('--sjd: greedy speculative Jacobi decoding gives the reference tokens and reports accepted tokens per run', async () => {
    const ref = golden.lm.find((c) => c.checkpoint === 'tiny-simplear')!;
    const png = join(dir, 'out', 'sjd.png');
    const tokens = join(dir, 'out', 'sjd.json');
    const r = await cli('generate', '-b', bundle, '--temperature', '0', '--size', '64', '-p', ref.prompt, '--sjd', '4', '-s', '3', '-o', png, '--tokens-out', tokens, '-q');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(await readFile(tokens, 'utf8'))).toEqual(ref.greedy.codes);
    expect(r.stdout).toMatch(/^sjd window 4: [\d.]+ accepted tokens per run \(\d+ window runs of 2 session runs each, \d+\/\d+ drafts accepted\)$/m);
    expect(pngTextChunks(new Uint8Array(await readFile(png)))).toMatchObject({ sjd: 'window 4', seed: '3' });
  });

  it('the same seed twice gives the same tokens; non-Latin-1 text goes to iTXt', async () => {
    const run = async (name: string, seed: string) => {
      const tokens = join(dir, `${name}.json`);
      const r = await cli('generate', '-b', bundle, '-p', 'ein Häuschen am See ☀', '--negative', 'unscharf', '--size', '64', '--seed', seed,
        '--top-k', '20000', '--top-p', '0.99', '--temperature', '1.5', '-o', join(dir, `${name}.png`), '--tokens-out', tokens, '-q');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      return JSON.parse(await readFile(tokens, 'utf8')) as number[];
    };
    const a = await run('a', '1234');
    const b = await run('b', '1234');
    const c = await run('c', '1235');
    expect(a).toHaveLength(16);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    const text = pngTextChunks(new Uint8Array(await readFile(join(dir, 'a.png'))));
    expect(text).toMatchObject({ prompt: 'ein Häuschen am See ☀', 'negative prompt': 'unscharf', seed: '1234', 'top-k': '20000', 'top-p': '0.99' });
  });

  it('bad settings exit 2 with the typed message before the model is read', async () => {
    const missing = join(dir, 'no-such-bundle');
    for (const [args, message] of [
      [['--size', '100'], 'size: must be a multiple of 16'],
      [['--size', '2048'], 'size: at most 1024 px'],
      [['--cfg', '60'], 'cfg: must be between 0 and 50'],
      [['--temperature=-1'], 'temperature: must be between 0'],
      [['--top-k', '0'], 'topK: must be a whole number >= 1'],
      [['--top-p', '1.5'], 'topP: must be in (0, 1]'],
      [['--repetition-penalty', '0'], 'repetitionPenalty: must be above 0 and at most 10'],
      [['--repetition-penalty', 'x'], 'repetitionPenalty: must be above 0'],
      [['--seed', 'x'], 'seed: must be a whole number'],
      [['--sjd', '0'], 'sjd: window must be a whole number from 1 to 30'],
      [['--sjd', 'wide'], 'sjd: window must be a whole number'],
    ] as const) {
      // The bundle does not exist: these fail before it is opened.
      const r = await cli('generate', '--bundle', missing, '--prompt', 'a cat', '--out', join(dir, 'x.png'), ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('[InvalidSettings]');
      expect(r.stderr).toContain(message);
    }
    const long = await cli('generate', '--bundle', bundle, '--prompt', 'cat '.repeat(600), '--out', join(dir, 'x.png'));
    expect(long.code).toBe(2);
    expect(long.stderr).toMatch(/\[PromptTooLong\]: the prompt is \d+ tokens; at most 512 fit/);
    expect(long.stderr).not.toContain('loading model');
    await expect(readFile(join(dir, 'x.png'))).rejects.toThrow();
  });
});
