// `simplear generate --keep-rows K --from <tokens.json>` in-process on the tiny fixture (f32
// bundle): the rows kept from a --tokens-out file head the new codes, the rest are the API's for
// the same keep (plain, --count with --sjd, --count in one batched pass), and bad keeps exit 2
// before the bundle is opened.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { runCli } from '../../src/cli/cli.ts';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { Capture } from '../helpers/capture.ts';
import { FIXTURES, loadFixtureModel } from '../helpers/fixture-model.ts';
import { pngTextChunks } from '../helpers/png-text.ts';

async function cli(...argv: string[]) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runCli(argv, { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const readCodes = async (path: string) => JSON.parse(await readFile(path, 'utf8')) as number[];

let dir: string;
let bundle: string;
let donor: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-keep-'));
  bundle = join(dir, 'tiny-f32');
  const r = await cli('convert', '--model', join(FIXTURES, 'tiny-simplear'), '--vq', join(FIXTURES, 'tiny-cosmos'), '--out', bundle, '--weights', 'f32', '--quiet');
  expect(r.code, r.stderr).toBe(0);
  donor = join(dir, 'donor.json');
  const d = await cli('generate', '--bundle', bundle, '--prompt', 'a red cat', '--size', '64', '--seed', '7', '--top-k', '2000', '--out', join(dir, 'donor.png'), '--tokens-out', donor, '--quiet');
  expect(d.code, d.stderr).toBe(0);
}, 120_000);

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('generate --keep-rows --from', () => {
  const sampled = { prompt: 'a small house by a lake', size: 64, topK: 2000, temperature: 0.9 };
  const args = ['--prompt', sampled.prompt, '--size', '64', '--top-k', '2000', '--temperature', '0.9'];

  it("keeps the file's top rows and samples the API's codes below them; --count and --sjd redraw below the same rows", async () => {
    const codes = await readCodes(donor);
    const engine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 4 });
    const keep = { codes, rows: 2 };

    const one = await cli('generate', '--bundle', bundle, ...args, '--seed', '11', '--keep-rows', '2', '--from', donor, '--out', join(dir, 'below.png'), '--tokens-out', join(dir, 'below.json'), '--quiet');
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/seed 11, 8 tokens below 2 kept rows/);
    const below = await readCodes(join(dir, 'below.json'));
    expect(below.slice(0, 8)).toEqual(codes.slice(0, 8));
    expect(below).toEqual(Array.from((await engine.generate({ ...sampled, seed: 11, keep })).codes));
    expect(pngTextChunks(new Uint8Array(await readFile(join(dir, 'below.png'))))).toMatchObject({ seed: '11', 'kept rows': '2' });
    expect(pngTextChunks(new Uint8Array(await readFile(join(dir, 'donor.png'))))['kept rows']).toBeUndefined();
    // The kept rows changed what follows: not the plain image of the same seed.
    expect(below).not.toEqual(Array.from((await engine.generate({ ...sampled, seed: 11 })).codes));

    const set = await cli('generate', '--bundle', bundle, ...args, '--seed', '20', '--count', '2', '--sjd', '3', '--keep-rows', '1', '--from', donor, '--out', join(dir, 'set.png'), '--tokens-out', join(dir, 'set.json'), '--quiet');
    expect(set.code, set.stderr).toBe(0);
    for (const i of [0, 1]) {
      const got = await readCodes(join(dir, `set-${i}.json`));
      const api = await engine.generate({ ...sampled, seed: 20 + i, sjd: { window: 3 }, keep: { codes, rows: 1 } });
      expect(got, `image ${i}`).toEqual(Array.from(api.codes));
      expect(got.slice(0, 4)).toEqual(codes.slice(0, 4));
    }

    // Without --sjd the two images are one batched pass below the same row.
    const batch = await cli('generate', '--bundle', bundle, ...args, '--seed', '30', '--count', '2', '--keep-rows', '1', '--from', donor, '--out', join(dir, 'batch.png'), '--tokens-out', join(dir, 'batch.json'), '--quiet');
    expect(batch.code, batch.stderr).toBe(0);
    expect(batch.stdout).toMatch(/^2 images in one pass \(4 streams\): 24 tokens /m);
    expect(batch.stdout).toMatch(/^wrote .*batch-1\.png: 64×64, seed 31, 12 tokens below 1 kept rows \(image 2\/2 of the pass, /m);
    for (const i of [0, 1]) {
      const got = await readCodes(join(dir, `batch-${i}.json`));
      expect(got, `image ${i}`).toEqual(Array.from((await engine.generate({ ...sampled, seed: 30 + i, keep: { codes, rows: 1 } })).codes));
    }
    await engine.dispose();
  });

  it('bad keeps exit 2 with a clear message before the bundle is opened', async () => {
    const missing = join(dir, 'no-such-bundle');
    const bigger = join(dir, 'bigger.json');
    await writeFile(bigger, JSON.stringify(Array.from({ length: 64 }, (_, i) => i)));
    const notJson = join(dir, 'not.json');
    await writeFile(notJson, '[1, 2,');
    const strings = join(dir, 'strings.json');
    await writeFile(strings, JSON.stringify(Array(16).fill('a')));
    const outside = join(dir, 'outside.json');
    await writeFile(outside, JSON.stringify([...Array(15).fill(0), 64000]));
    for (const [extra, message] of [
      [['--keep-rows', '2'], '--keep-rows needs --from'],
      [['--from', donor], '--from needs --keep-rows'],
      [['--keep-rows', '4', '--from', donor], 'keep: --keep-rows must be a whole number from 0 to 3'],
      [['--keep-rows=-1', '--from', donor], 'from 0 to 3'],
      [['--keep-rows', 'two', '--from', donor], 'from 0 to 3'],
      [['--keep-rows', '1', '--from', join(dir, 'none.json')], 'cannot read it (ENOENT)'],
      [['--keep-rows', '1', '--from', notJson], 'not JSON'],
      [['--keep-rows', '1', '--from', strings], 'expected a JSON array of visual codes'],
      [['--keep-rows', '1', '--from', bigger], 'holds 64 codes (a 128 px image: give --size 128); a 64 px image has 16'],
      [['--keep-rows', '1', '--from', outside], 'code 15 is 64000'],
    ] as const) {
      const r = await cli('generate', '--bundle', missing, ...args, '--out', join(dir, 'x.png'), ...extra);
      expect(r.code, extra.join(' ')).toBe(2);
      expect(r.stderr, extra.join(' ')).toContain(message);
    }
    const withPrompts = await cli('generate', '--bundle', missing, '--prompts', donor, '--out-dir', join(dir, 'set'), '--keep-rows', '1', '--from', donor);
    expect(withPrompts.code).toBe(2);
    expect(withPrompts.stderr).toContain('--keep-rows is for one --prompt');
    await expect(readFile(join(dir, 'x.png'))).rejects.toThrow();
  });
});
