// `simplear generate --prompts FILE --out-dir DIR [--count N]` and `--count N` with one prompt, in
// process on the tiny fixture bundle at 32×32 (4 tokens an image): GenEval's layout from plain text
// and JSONL, resuming (a second run calls the engine for nothing; a gap costs one call per run of
// missing images), a run stopped mid-batch leaves no partial or temp files and the rerun makes the
// rest, a prompt's images are one batched call (image i the seed s+i generation), and bad input
// fails with exit 2 before the model loads. Engine calls are counted on EngineHost.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/cli.ts';
import { numberedPath } from '../../src/cli/generate-plan.ts';
import { imageRuns } from '../../src/cli/image-set.ts';
import { imageSeed } from '../../src/core/engine/settings.ts';
import { SimpleAREngine } from '../../src/core/engine/engine.ts';
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

// The Node host gives a batched pass's KV cache half the free memory when it starts
// (node-host.ts): a test sets `freeMemory.bytes` to shrink that budget.
const freeMemory = vi.hoisted(() => ({ bytes: undefined as number | undefined }));
vi.mock('node:os', async (importOriginal) => {
  const os = await importOriginal<typeof import('node:os')>();
  return { ...os, freemem: () => freeMemory.bytes ?? os.freemem() };
});

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

/** GenEval's layout as filesUnder lists it: prompt k with `images[k]` samples. */
function genevalLayout(images: readonly number[]): string[] {
  return images.flatMap((n, k) => {
    const folder = String(k).padStart(5, '0');
    return [`${folder}/metadata.jsonl`, ...Array.from({ length: n }, (_, i) => `${folder}/samples/${String(i).padStart(4, '0')}.png`)];
  });
}

/**
 * Counts EngineHost.generateImages calls from here on (a spy before is removed): each call's first
 * seed and count, and whether its engine was one-shot; `during(call, progress)` sees each call's
 * progress. The single-image `generate` fails the run if the CLI calls it.
 */
function countEngineCalls(during?: (call: number, p: GenerationProgress) => void) {
  vi.restoreAllMocks();
  const original = EngineHost.prototype.generateImages;
  const requests: { seed: number; count: number }[] = [];
  vi.spyOn(EngineHost.prototype, 'generateImages').mockImplementation(function (this: EngineHost, request, options = {}) {
    const call = requests.push({ seed: request.seed ?? -1, count: request.count ?? 1 });
    const onProgress = (p: GenerationProgress) => {
      options.onProgress?.(p);
      during?.(call, p);
    };
    return original.call(this, request, { ...options, onProgress });
  });
  vi.spyOn(EngineHost.prototype, 'generate').mockRejectedValue(new Error('the CLI makes its images with generateImages'));
  const oneShot: boolean[] = [];
  const engineCall = SimpleAREngine.prototype.generateImages;
  vi.spyOn(SimpleAREngine.prototype, 'generateImages').mockImplementation(function (this: SimpleAREngine, ...args) {
    oneShot.push((this as unknown as { parts: { oneShot?: boolean } }).parts.oneShot === true);
    return engineCall.apply(this, args);
  });
  return { requests, oneShot, get seeds() { return requests.map((r) => r.seed); }, get calls() { return requests.length; } };
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
afterEach(() => {
  vi.restoreAllMocks();
  freeMemory.bytes = undefined;
});

describe('generate --prompts', () => {
  it('a plain-text file gives GenEval\'s layout; PNGs carry prompt and seed s+i; a second run makes nothing', async () => {
    const file = join(dir, 'prompts.txt');
    await writeFile(file, 'a red cat\n\n  ein Häuschen am See ☀  \n');
    const out = join(dir, 'plain');
    const engine = countEngineCalls();
    const r = await cli(['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '2', '--seed', '41']);
    expect(r.code, r.stderr).toBe(0);
    // One batched call per prompt: images 0 and 1 (seeds 41, 42) in one pass.
    expect(engine.requests).toEqual([{ seed: 41, count: 2 }, { seed: 41, count: 2 }]);
    expect(engine.oneShot).toEqual([false, false]);
    expect(await filesUnder(out)).toEqual(genevalLayout([2, 2]));
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
    expect(r.stdout).toMatch(/^wrote .*00001[/\\]samples[/\\]0001\.png: 32×32, seed 42, 4 tokens \(image 2\/2 of the pass, pixels /m);
    expect(r.stdout.match(/^2 images in one pass \(4 streams\): 8 tokens \(prefill [\d.]+ s, decode [\d.]+ s, [\d.]+ tokens\/s\)$/gm)).toHaveLength(2);
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
    expect(await filesUnder(out)).toEqual(genevalLayout([3, 3]));
    for (const [k, line] of lines.entries()) {
      const folder = join(out, String(k).padStart(5, '0'));
      expect(JSON.parse(await readFile(join(folder, 'metadata.jsonl'), 'utf8'))).toEqual(line);
      const seeds = await Promise.all([0, 1, 2].map(async (i) => pngTextChunks(new Uint8Array(await readFile(join(folder, 'samples', `000${i}.png`))))));
      expect(seeds.map((t) => t.prompt)).toEqual([line.prompt, line.prompt, line.prompt]);
      const s = Number(seeds[0]!.seed);
      expect(seeds.map((t) => Number(t.seed))).toEqual([0, 1, 2].map((i) => imageSeed(s, i)));
    }
  });

  it('a run stopped during a batch drops that batch whole, keeps the images written; the rerun makes the rest', async () => {
    const file = join(dir, 'stop.txt');
    await writeFile(file, 'a red cat\na blue dog\n');
    const out = join(dir, 'stopped');
    const controller = new AbortController();
    // Stop in the second prompt's batch once its first image has its pixels (mid-batch, not
    // between calls): that image is made but goes with its batch.
    const engine = countEngineCalls((call, p) => {
      if (call === 2 && p.phase === 'vq-decode' && p.image === 1) controller.abort(new Error('interrupted'));
    });
    const r = await cli(['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '2', '--seed', '7'], controller.signal);
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toContain('[Aborted]: generation cancelled: 2/4 images done; run the same command again to go on');
    expect(engine.calls).toBe(2);
    expect(await filesUnder(out)).toEqual(genevalLayout([2, 0]));

    // What a run killed while writing would leave: a temp file; the rerun clears it.
    await mkdir(join(out, '00001/samples'), { recursive: true });
    const stale = join(out, '00001/samples/.0001.png.99999-0.tmp');
    await writeFile(stale, 'half a png');
    const rerun = countEngineCalls();
    const second = await cli(['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '2', '--seed', '7']);
    expect(second.code, second.stderr).toBe(0);
    expect(rerun.requests).toEqual([{ seed: 7, count: 2 }]);
    // Only the rest to make, in one call: the engine is one-shot.
    expect(rerun.oneShot).toEqual([true]);
    expect(second.stdout).toMatch(/^done: 4 images in .* \(2 made now\)/m);
    expect(await filesUnder(out)).toEqual(genevalLayout([2, 2]));
  });

  it('a resumed prompt with gaps makes one call per run of missing images, with their seeds; the images are the same', async () => {
    const file = join(dir, 'gaps.txt');
    await writeFile(file, 'a red cat\n');
    const out = join(dir, 'gaps');
    const args = ['generate', ...common(), '--prompts', file, '--out-dir', out, '--count', '4', '--seed', '5'];
    const engine = countEngineCalls();
    expect((await cli(args)).code).toBe(0);
    expect(engine.requests).toEqual([{ seed: 5, count: 4 }]);
    const sample = (i: number) => join(out, '00000/samples', `000${i}.png`);
    const first = await Promise.all([0, 1, 2, 3].map((i) => readFile(sample(i))));
    await Promise.all([0, 1, 3].map((i) => rm(sample(i))));
    const rerun = countEngineCalls();
    const r = await cli(args);
    expect(r.code, r.stderr).toBe(0);
    // Images 0-1 (seeds 5, 6) in one pass, image 3 (seed 8) alone.
    expect(rerun.requests).toEqual([{ seed: 5, count: 2 }, { seed: 8, count: 1 }]);
    expect(r.stdout).toMatch(/^wrote .*0003\.png: 32×32, seed 8, 4 tokens \(prefill /m);
    expect(await Promise.all([0, 1, 2, 3].map((i) => readFile(sample(i))))).toEqual(first);
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
    expect(engine.requests).toEqual([{ seed: imageSeed(s, 1), count: 2 }]);
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
  it('one batched pass; image i goes to <stem>-i and is the single generation with seed s+i (seeds wrap at 2^32)', async () => {
    const out = join(dir, 'count');
    const engine = countEngineCalls();
    const r = await cli(['generate', ...common(), '--size', '64', '--prompt', 'a red cat', '--count', '3', '--seed', '4294967294', '--out', join(out, 'cat.png'), '--tokens-out', join(out, 'cat.json')]);
    expect(r.code, r.stderr).toBe(0);
    // One call of 3, on a one-shot engine (the LM's session goes before the decoder's opens).
    expect(engine.requests).toEqual([{ seed: 4294967294, count: 3 }]);
    expect(engine.oneShot).toEqual([true]);
    expect(r.stdout).toMatch(/^3 images in one pass \(6 streams\): 48 tokens \(prefill [\d.]+ s, decode [\d.]+ s, [\d.]+ tokens\/s\)\nwrote .*cat-0\.png: 64×64, seed 4294967294, 16 tokens \(image 1\/3 of the pass, pixels [\d.]+ s\), [\d.]+ s\n/);
    expect(r.stdout).toMatch(/^wrote .*cat-2\.png: 64×64, seed 0, 16 tokens \(image 3\/3 of the pass, /m);
    expect(r.stdout).toMatch(/^done: 3 images \(3 made now\)/m);
    expect(await filesUnder(out)).toEqual(['cat-0.json', 'cat-0.png', 'cat-1.json', 'cat-1.png', 'cat-2.json', 'cat-2.png']);
    const seeds = ['4294967294', '4294967295', '0'];
    const tokens: number[][] = [];
    for (const [i, seed] of seeds.entries()) {
      expect(pngTextChunks(new Uint8Array(await readFile(join(out, `cat-${i}.png`))))).toMatchObject({ prompt: 'a red cat', seed });
      tokens.push(JSON.parse(await readFile(join(out, `cat-${i}.json`), 'utf8')) as number[]);
    }
    expect(new Set(tokens.map((t) => t.join())).size).toBeGreaterThan(1);
    for (const i of [0, 1, 2]) {
      const one = join(dir, `single-${i}.json`);
      const s = await cli(['generate', ...common(), '--size', '64', '--prompt', 'a red cat', '--seed', seeds[i]!, '--out', join(dir, `single-${i}.png`), '--tokens-out', one]);
      expect(s.code, s.stderr).toBe(0);
      expect(JSON.parse(await readFile(one, 'utf8'))).toEqual(tokens[i]);
    }
  });

  it('--sjd has no batched pass: one call per image, each written when made, on an engine kept open', async () => {
    const out = join(dir, 'count-sjd');
    const engine = countEngineCalls();
    const r = await cli(['generate', ...common(), '--prompt', 'a red cat', '--count', '2', '--sjd', '2', '--seed', '9', '--out', join(out, 'cat.png')]);
    expect(r.code, r.stderr).toBe(0);
    expect(engine.requests).toEqual([{ seed: 9, count: 1 }, { seed: 10, count: 1 }]);
    expect(engine.oneShot).toEqual([false, false]);
    expect(r.stdout).not.toContain('in one pass');
    expect(await filesUnder(out)).toEqual(['cat-0.png', 'cat-1.png']);
  });

  it('a count whose KV cache exceeds the budget (half the free memory) exits 2 naming count, before any image', async () => {
    const out = join(dir, 'count-budget');
    freeMemory.bytes = 2;
    const engine = countEngineCalls();
    const r = await cli(['generate', ...common(), '--prompt', 'a red cat', '--count', '3', '--seed', '1', '--out', join(out, 'cat.png')]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/\[InvalidSettings\]: count: 3 images at once need \d+ MiB of KV cache \(\d+ MiB each\), more than the free memory allows \(\d+ MiB\): choose a smaller size/);
    expect(engine.requests).toEqual([{ seed: 1, count: 3 }]);
    await expect(readdir(out)).rejects.toThrow();
    // One image needs no batch budget.
    const one = await cli(['generate', ...common(), '--prompt', 'a red cat', '--seed', '1', '--out', join(out, 'cat.png')]);
    expect(one.code, one.stderr).toBe(0);
  });
});

describe('the parts', () => {
  it('prompt files: plain text trimmed and blank lines skipped; JSONL by name or by its first line', () => {
    expect(parsePromptFile('\uFEFFa cat\r\n\r\n b dog \r\n', 'p.txt').map((e) => [e.index, e.line, e.prompt])).toEqual([[0, 1, 'a cat'], [1, 3, 'b dog']]);
    expect(parsePromptFile('{"prompt":"x","tag":"t"}\n', 'p.txt')[0]!.metadata).toEqual({ prompt: 'x', tag: 't' });
    expect(() => parsePromptFile('a cat\n', 'p.jsonl')).toThrow('p.jsonl: line 1: not valid JSON');
    expect(() => parsePromptFile('{"prompt":""}\n', 'p.jsonl')).toThrow('line 1: the object has no "prompt" string');
  });

  it('numbered paths, seeds s+i wrapping at 2^32, one engine call per run of missing images', () => {
    expect(numberedPath(join('out', 'cat.png'), 3)).toBe(join('out', 'cat-3.png'));
    expect(numberedPath('tokens', 0)).toBe('tokens-0');
    expect([imageSeed(5, 2), imageSeed(0xffffffff, 1)]).toEqual([7, 0]);
    expect(imageRuns([0, 1, 2, 3])).toEqual([{ first: 0, count: 4 }]);
    expect(imageRuns([1, 3])).toEqual([{ first: 1, count: 1 }, { first: 3, count: 1 }]);
    expect(imageRuns([0, 1, 3, 4, 5])).toEqual([{ first: 0, count: 2 }, { first: 3, count: 3 }]);
    expect(imageRuns([0, 1, 2], true)).toEqual([0, 1, 2].map((first) => ({ first, count: 1 })));
    expect(imageRuns(Array.from({ length: 10 }, (_, i) => i))).toEqual([{ first: 0, count: 8 }, { first: 8, count: 2 }]);
    expect(imageRuns([])).toEqual([]);
  });

  it('the run line: done counts earlier runs, the rate and time left only this run\'s images', () => {
    let now = 0;
    const out = new Capture();
    const run = new RunProgress(new ProgressBar(out, { now: () => now }), 10, 4, () => now);
    run.start();
    expect(run.detail()).toBe('4/10 images');
    now = 30_000;
    // Half its tokens: half of the image's 15/16 that are tokens (PIXELS_SHARE) in half a minute.
    run.image({ phase: 'decode', done: 8, total: 16, gridSide: 4, elapsedMs: 0 });
    expect(run.detail()).toBe('4/10 images  0.94 images/min  ETA 5 min 54 s');
    now = 60_000;
    run.imageDone();
    expect(run.detail()).toBe('5/10 images  1.00 images/min  ETA 5 min 0 s');
    expect(out.text).toContain('images  50%  5/10 images  1.00 images/min  ETA 5 min 0 s\n');
  });

  it('the run line over a batch: its images advance together and count as done as each is written', () => {
    let now = 0;
    const run = new RunProgress(new ProgressBar(new Capture(), { now: () => now }), 8, 0, () => now);
    run.start();
    now = 60_000;
    // A batch of 4 halfway through its tokens: 4 × 1/2 × 15/16 images' worth made.
    run.image({ phase: 'decode', done: 8, total: 16, gridSide: 4, elapsedMs: 0, image: 0, count: 4 });
    expect(run.detail()).toBe('0/8 images  1.88 images/min  ETA 3 min 16 s');
    now = 120_000;
    // Its tokens done and 3 images' pixels: 4 × 15/16 + 3/16.
    run.image({ phase: 'vq-decode', done: 3, total: 4, gridSide: 4, elapsedMs: 0, image: 3, count: 4 });
    expect(run.detail()).toBe('0/8 images  1.97 images/min  ETA 2 min 4 s');
    // Back from the engine: all 4 made; written one by one.
    run.imageDone();
    expect(run.detail()).toBe('1/8 images  2.00 images/min  ETA 2 min 0 s');
    for (let i = 0; i < 3; i++) run.imageDone();
    expect(run.detail()).toBe('4/8 images  2.00 images/min  ETA 2 min 0 s');
    // The next batch starts from its prefill: nothing of it made yet.
    run.image({ phase: 'prefill', done: 0, total: 1, gridSide: 4, elapsedMs: 0, image: 0, count: 4 });
    expect(run.detail()).toBe('4/8 images  2.00 images/min  ETA 2 min 0 s');
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
