// `simplear generate --prompts FILE --out-dir DIR [--count N]` and `--count N` with one prompt, in
// process on the tiny fixture bundle at 32×32 (4 tokens an image): GenEval's layout from plain text
// and JSONL, resuming (a second run calls the engine for nothing), a run stopped mid-image leaves
// no partial or temp files and the rerun makes the rest, image i is the seed s+i generation, and
// bad input fails with exit 2 before the model loads. Engine calls are counted on EngineHost.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/cli.ts';
import { numberedPath } from '../../src/cli/generate-plan.ts';
import { imageSeed } from '../../src/cli/image-set.ts';
import { parsePromptFile } from '../../src/cli/prompt-file.ts';
import { ProgressBar } from '../../src/cli/progress.ts';
import { RunProgress } from '../../src/cli/run-progress.ts';
import { isTempName, writeFileAtomic } from '../../src/cli/atomic-file.ts';
import type { GenerationProgress } from '../../src/core/engine/types.ts';
import { EngineHost } from '../../src/core/host/engine-host.ts';
import { decodePng } from '../../src/core/image/png.ts';
import { Capture } from '../helpers/capture.ts';
import { pngTextChunks } from '../helpers/png-text.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');

async function cli(argv: string[], signal?: AbortSignal) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runCli(argv, { stdout, stderr, ...(signal ? { signal } : {}) });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** Every file under `root`, relative, sorted. */
async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)).split('\\').join('/'))
    .sort();
}

/** Counts EngineHost.generate calls from here on (a spy before is removed); `during(call,
 * progress)` sees each call's progress. */
function countEngineCalls(during?: (call: number, p: GenerationProgress) => void) {
  vi.restoreAllMocks();
  const original = EngineHost.prototype.generate;
  const seeds: number[] = [];
  vi.spyOn(EngineHost.prototype, 'generate').mockImplementation(function (this: EngineHost, request, options = {}) {
    const call = seeds.push(request.seed ?? -1);
    const onProgress = (p: GenerationProgress) => {
      options.onProgress?.(p);
      during?.(call, p);
    };
    return original.call(this, request, { ...options, onProgress });
  });
  return { seeds, get calls() { return seeds.length; } };
}

let dir: string;
let bundle: string;
const common = () => ['--bundle', bundle, '--size', '32', '-q'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cli-prompts-'));
  bundle = join(dir, 'tiny-f32');
  const r = await cli(['convert', '--model', join(FIXTURES, 'tiny-simplear'), '--vq', join(FIXTURES, 'tiny-cosmos'), '--out', bundle, '--weights', 'f32', '--quiet']);
  expect(r.code, r.stderr).toBe(0);
}, 120_000);

afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

describe('generate --prompts', () => {
  it('a plain-text file gives GenEval\'s layout; PNGs carry prompt and seed s+i; a second run makes nothing', async () => {
    const file = join(dir, 'prompts.txt');
    await writeFile(file, 'a red cat\n\n  ein Häuschen am See ☀  \n');
    const out = join(dir, 'plain');
    const engine = countEngineCalls();
    const r = await cli(['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '2', '--seed', '41']);
    expect(r.code, r.stderr).toBe(0);
    expect(engine.calls).toBe(4);
    expect(engine.seeds).toEqual([41, 42, 41, 42]);
    expect(await filesUnder(out)).toEqual([
      '00000/metadata.jsonl',
      '00000/samples/0000.png',
      '00000/samples/0001.png',
      '00001/metadata.jsonl',
      '00001/samples/0000.png',
      '00001/samples/0001.png',
    ]);
    expect(await readFile(join(out, '00000/metadata.jsonl'), 'utf8')).toBe('{"prompt":"a red cat"}\n');
    expect(JSON.parse(await readFile(join(out, '00001/metadata.jsonl'), 'utf8'))).toEqual({ prompt: 'ein Häuschen am See ☀' });
    for (const [folder, prompt] of [['00000', 'a red cat'], ['00001', 'ein Häuschen am See ☀']] as const) {
      for (const [i, seed] of [[0, '41'], [1, '42']] as const) {
        const bytes = new Uint8Array(await readFile(join(out, folder, 'samples', `000${i}.png`)));
        const image = decodePng(bytes);
        expect([image.width, image.height, image.channels]).toEqual([32, 32, 3]);
        expect(pngTextChunks(bytes)).toMatchObject({ prompt, seed, size: '32x32', model: 'tiny-f32' });
      }
    }
    expect(r.stdout).toMatch(/^wrote .*00001[/\\]samples[/\\]0001\.png: 32×32, seed 42, 4 tokens/m);
    expect(r.stdout).toMatch(/^done: 4 images in .* \(4 made now\)/m);

    const before = await Promise.all((await filesUnder(out)).map(async (f) => (await stat(join(out, f))).mtimeMs));
    const again = countEngineCalls();
    const second = await cli(['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '2', '--seed', '41']);
    expect(second.code, second.stderr).toBe(0);
    expect(again.calls).toBe(0);
    expect(second.stdout).toBe(`nothing to do: all 4 images are in ${out}\n`);
    const after = await Promise.all((await filesUnder(out)).map(async (f) => (await stat(join(out, f))).mtimeMs));
    expect(after).toEqual(before);
  });

  it('JSONL (GenEval\'s evaluation_metadata.jsonl): metadata.jsonl is the line\'s object; a drawn seed per prompt', async () => {
    const file = join(dir, 'evaluation_metadata.jsonl');
    const lines = [
      { tag: 'single_object', include: [{ class: 'bench', count: 1 }], prompt: 'a photo of a bench' },
      { tag: 'two_object', include: [{ class: 'cat', count: 1 }, { class: 'dog', count: 1 }], prompt: 'a photo of a cat and a dog' },
    ];
    await writeFile(file, `${lines.map((l) => JSON.stringify(l)).join('\r\n')}\r\n`);
    const out = join(dir, 'jsonl');
    const r = await cli(['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '3']);
    expect(r.code, r.stderr).toBe(0);
    expect(await filesUnder(out)).toEqual(
      ['00000', '00001'].flatMap((f) => [`${f}/metadata.jsonl`, ...[0, 1, 2].map((i) => `${f}/samples/000${i}.png`)]),
    );
    for (const [k, line] of lines.entries()) {
      const folder = join(out, String(k).padStart(5, '0'));
      expect(JSON.parse(await readFile(join(folder, 'metadata.jsonl'), 'utf8'))).toEqual(line);
      const seeds = await Promise.all([0, 1, 2].map(async (i) => pngTextChunks(new Uint8Array(await readFile(join(folder, 'samples', `000${i}.png`))))));
      expect(seeds.map((t) => t.prompt)).toEqual([line.prompt, line.prompt, line.prompt]);
      const s = Number(seeds[0]!.seed);
      expect(seeds.map((t) => Number(t.seed))).toEqual([0, 1, 2].map((i) => imageSeed(s, i)));
    }
  });

  it('a run stopped during its second image leaves only whole files; the rerun makes the rest', async () => {
    const file = join(dir, 'stop.txt');
    await writeFile(file, 'a red cat\na blue dog\n');
    const out = join(dir, 'stopped');
    const controller = new AbortController();
    // Stop once the second image's tokens are under way (mid-image, not between images).
    const engine = countEngineCalls((call, p) => {
      if (call === 2 && p.phase === 'decode') controller.abort(new Error('interrupted'));
    });
    const r = await cli(['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '2', '--seed', '7'], controller.signal);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('[Aborted]: generation cancelled: 1/4 images done; run the same command again to go on');
    expect(engine.calls).toBe(2);
    expect(await filesUnder(out)).toEqual(['00000/metadata.jsonl', '00000/samples/0000.png']);

    // What a run killed while writing would leave: a temp file; the rerun clears it.
    const stale = join(out, '00000/samples/.0001.png.99999-0.tmp');
    await writeFile(stale, 'half a png');
    const rerun = countEngineCalls();
    const second = await cli(['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '2', '--seed', '7']);
    expect(second.code, second.stderr).toBe(0);
    expect(rerun.seeds).toEqual([8, 7, 8]);
    expect(second.stdout).toMatch(/^done: 4 images in .* \(3 made now\)/m);
    expect(await filesUnder(out)).toEqual([
      '00000/metadata.jsonl',
      '00000/samples/0000.png',
      '00000/samples/0001.png',
      '00001/metadata.jsonl',
      '00001/samples/0000.png',
      '00001/samples/0001.png',
    ]);
  });

  it('a prompt resumed without --seed keeps the seed it drew: the images made again are the same', async () => {
    const file = join(dir, 'drawn.txt');
    await writeFile(file, 'a red cat\n');
    const out = join(dir, 'drawn');
    const args = ['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '3'];
    expect((await cli(args)).code).toBe(0);
    const sample = (i: number) => join(out, '00000/samples', `000${i}.png`);
    const s = Number(pngTextChunks(new Uint8Array(await readFile(sample(0)))).seed);
    const first = await Promise.all([1, 2].map((i) => readFile(sample(i))));
    await Promise.all([1, 2].map((i) => rm(sample(i))));
    const engine = countEngineCalls();
    const r = await cli(args);
    expect(r.code, r.stderr).toBe(0);
    expect(engine.seeds).toEqual([imageSeed(s, 1), imageSeed(s, 2)]);
    expect(await Promise.all([1, 2].map((i) => readFile(sample(i))))).toEqual(first);
  });

  it('progress on stderr: one line over the run with images done, images/min and time left', async () => {
    const file = join(dir, 'progress.txt');
    await writeFile(file, 'a red cat\n');
    const r = await cli(['generate', '--bundle', bundle, '--size', '32', '--prompts', file, '--out-dir', join(dir, 'progress'), '--count', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^loading model/m);
    expect(r.stderr).toMatch(/^images 100%  2\/2 images  [\d.]+ images\/min$/m);
  });

  it('bad prompt files and options exit 2 with the typed error before the model loads', async () => {
    const write = async (name: string, text: string) => {
      const path = join(dir, name);
      await writeFile(path, text);
      return path;
    };
    const cases: [string[], string][] = [
      [['--prompts', join(dir, 'no-such.txt'), '--out-dir', dir], 'no-such.txt: cannot read'],
      [['--prompts', await write('empty.txt', '\n  \n'), '--out-dir', dir], 'empty.txt: no prompts (the file is empty)'],
      [['--prompts', await write('bad.jsonl', '{"prompt": "a"}\n\n{"prompt": "b",}\n'), '--out-dir', dir], 'bad.jsonl: line 3: not valid JSON'],
      [['--prompts', await write('noprompt.jsonl', '{"prompt": "a"}\n{"tag": "x"}\n'), '--out-dir', dir], 'noprompt.jsonl: line 2: the object has no "prompt" string'],
      [['--prompts', await write('array.jsonl', '["a photo"]\n'), '--out-dir', dir], 'array.jsonl: line 1: expected a JSON object'],
      [['--prompts', await write('ok.txt', 'a cat\n')], '--prompts needs --out-dir <dir>'],
      [['--prompts', join(dir, 'ok.txt'), '--out-dir', dir, '--out', 'x.png'], '--out is for one --prompt'],
      [['--prompt', 'a cat', '--prompts', join(dir, 'ok.txt'), '--out-dir', dir], 'give --prompt <text> or --prompts <file>, not both'],
      [['--prompt', 'a cat', '--out-dir', dir], '--out-dir goes with --prompts'],
      [['--out', 'x.png'], '--prompt <text> or --prompts <file> is required'],
      [['--prompts', join(dir, 'ok.txt'), '--out-dir', dir, '--count', '0'], 'count: must be a whole number from 1 to 8 (got 0)'],
      [['--prompt', 'a cat', '--out', join(dir, 'x.png'), '--count', '9'], 'count: must be a whole number from 1 to 8 (got 9)'],
      [['--prompt', 'a cat', '--out', join(dir, 'x.png'), '--count', '1.5'], 'count: must be a whole number from 1 to 8 (got 1.5)'],
      [['--prompts', join(dir, 'ok.txt'), '--out-dir', dir, '--size', '100'], 'size: must be a multiple of 16'],
    ];
    const engine = countEngineCalls();
    const load = vi.spyOn(EngineHost.prototype, 'loadModel');
    for (const [args, message] of cases) {
      const r = await cli(['generate', '--bundle', bundle, ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(message);
    }
    const long = await cli(['generate', '--bundle', bundle, '--prompts', await write('long.txt', `a cat\n${'cat '.repeat(600)}\n`), '--out-dir', join(dir, 'long')]);
    expect(long.code).toBe(2);
    expect(long.stderr).toMatch(/\[PromptTooLong\]: .*long\.txt:2: the prompt is \d+ tokens/);
    expect(engine.calls).toBe(0);
    expect(load).not.toHaveBeenCalled();
  });
});

describe('generate --count with one prompt', () => {
  it('image i goes to <stem>-i and is the single generation with seed s+i (seeds wrap at 2^32)', async () => {
    const out = join(dir, 'count');
    const engine = countEngineCalls();
    const r = await cli(['generate', ...common(), '--size', '64', '--prompt', 'a red cat', '--count', '3', '--seed', '4294967294', '--out', join(out, 'cat.png'), '--tokens-out', join(out, 'cat.json')]);
    expect(r.code, r.stderr).toBe(0);
    expect(engine.calls).toBe(3);
    expect(await filesUnder(out)).toEqual(['cat-0.json', 'cat-0.png', 'cat-1.json', 'cat-1.png', 'cat-2.json', 'cat-2.png']);
    const seeds = ['4294967294', '4294967295', '0'];
    const tokens: number[][] = [];
    for (const [i, seed] of seeds.entries()) {
      expect(pngTextChunks(new Uint8Array(await readFile(join(out, `cat-${i}.png`))))).toMatchObject({ prompt: 'a red cat', seed });
      tokens.push(JSON.parse(await readFile(join(out, `cat-${i}.json`), 'utf8')) as number[]);
    }
    expect(new Set(tokens.map((t) => t.join())).size).toBeGreaterThan(1);
    for (const i of [1, 2]) {
      const one = join(dir, `single-${i}.json`);
      const s = await cli(['generate', ...common(), '--size', '64', '--prompt', 'a red cat', '--seed', seeds[i]!, '--out', join(dir, `single-${i}.png`), '--tokens-out', one]);
      expect(s.code, s.stderr).toBe(0);
      expect(JSON.parse(await readFile(one, 'utf8'))).toEqual(tokens[i]);
    }
  });
});

describe('the parts', () => {
  it('prompt files: plain text trimmed and blank lines skipped; JSONL by name or by its first line', () => {
    expect(parsePromptFile('\uFEFFa cat\r\n\r\n b dog \r\n', 'p.txt').map((e) => [e.index, e.line, e.prompt])).toEqual([[0, 1, 'a cat'], [1, 3, 'b dog']]);
    expect(parsePromptFile('{"prompt":"x","tag":"t"}\n', 'p.txt')[0]!.metadata).toEqual({ prompt: 'x', tag: 't' });
    expect(() => parsePromptFile('a cat\n', 'p.jsonl')).toThrow('p.jsonl: line 1: not valid JSON');
    expect(() => parsePromptFile('{"prompt":""}\n', 'p.jsonl')).toThrow('line 1: the object has no "prompt" string');
  });

  it('numbered paths, seeds s+i wrapping at 2^32', () => {
    expect(numberedPath(join('out', 'cat.png'), 3)).toBe(join('out', 'cat-3.png'));
    expect(numberedPath('tokens', 0)).toBe('tokens-0');
    expect([imageSeed(5, 2), imageSeed(0xffffffff, 1)]).toEqual([7, 0]);
  });

  it('the run line: done counts earlier runs, the rate and time left only this run\'s images', () => {
    let now = 0;
    const out = new Capture();
    const run = new RunProgress(new ProgressBar(out, { now: () => now }), 10, 4, () => now);
    run.start();
    expect(run.detail()).toBe('4/10 images');
    now = 30_000;
    run.image({ phase: 'decode', done: 8, total: 16, gridSide: 4, elapsedMs: 0 });
    expect(run.detail()).toBe('4/10 images  1.00 images/min  ETA 5 min 30 s');
    now = 60_000;
    run.imageDone();
    expect(run.detail()).toBe('5/10 images  1.00 images/min  ETA 5 min 0 s');
    expect(out.text).toContain('images  50%  5/10 images  1.00 images/min  ETA 5 min 0 s\n');
  });

  it('atomic writes leave only the final file; temp names are recognised', async () => {
    const folder = join(dir, 'atomic');
    await mkdir(folder, { recursive: true });
    await writeFileAtomic(join(folder, 'a.png'), 'one');
    await writeFileAtomic(join(folder, 'a.png'), 'two');
    expect(await readdir(folder)).toEqual(['a.png']);
    expect(await readFile(join(folder, 'a.png'), 'utf8')).toBe('two');
    expect(isTempName('.0001.png.123-4.tmp')).toBe(true);
    expect(isTempName('0001.png')).toBe(false);
  });
});
