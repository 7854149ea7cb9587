// The CLI in-process (runCli with captured output): dispatch, --help, argument errors and exit
// codes, tokens.json validation, convert + decode on the tiny fixtures, and the progress bar.
// (tests/golden/acceptance.test.ts runs it as a child process against the reference images.)
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, exitCodeFor, runCli } from '../../src/cli/cli.ts';
import { parseTokenGrid } from '../../src/cli/decode.ts';
import { ProgressBar, formatBytes, formatSeconds } from '../../src/cli/progress.ts';
import { SimpleARError, ModelFileError, HttpError } from '../../src/core/base/errors.ts';
import { decodePng } from '../../src/core/image/png.ts';
import { Capture } from '../helpers/capture.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');


async function cli(...argv: string[]) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await runCli(argv, { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

describe('dispatch and help', () => {
  it('lists every command; no command is a usage error', async () => {
    const help = await cli('--help');
    expect(help.code).toBe(0);
    for (const name of Object.keys(COMMANDS)) expect(help.stdout).toContain(name);
    const none = await cli();
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('usage: simplear <command>');
  });

  it('an unknown command exits 2', async () => {
    const r = await cli('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
  });

  it('bench is no CLI command: it says where the benchmarks went', async () => {
    expect(Object.keys(COMMANDS)).not.toContain('bench');
    const r = await cli('bench', '--quick');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "bench"');
    expect(r.stderr).toContain('npm run bench');
    expect(r.stderr).toContain('tools/bench/main.ts');
  });

  it('--help per command lists its options with defaults', async () => {
    const convert = await cli('convert', '--help');
    expect(convert.code).toBe(0);
    expect(convert.stdout).toMatch(/^usage: simplear convert --model <dir\|url> --vq <dir\|url> --out <dir>/);
    expect(convert.stdout).toContain('--weights q4|q8|f16|f32');
    expect(convert.stdout).toContain('default: q4');
    expect(convert.stdout).toContain('https://huggingface.co/Daniel0724/SimpleAR-0.5B-RL/resolve/main/');
    const decode = await cli('decode', '-h');
    expect(decode.code).toBe(0);
    expect(decode.stdout).toContain('--tokens <tokens.json>');
  });

  it('argument errors exit 2 with the usage', async () => {
    for (const [argv, message] of [
      [['convert'], '--out <dir> is required'],
      [['convert', '--out', 'x', '--weights', 'q3'], '--weights must be one of q4, q8, f16, f32'],
      [['decode', '--bundle', 'b', '--tokens', 't', '--out', 'o', '--bogus'], "Unknown option '--bogus'"],
      [['decode', 'stray'], 'Unexpected argument'],
    ] as const) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toContain(`usage: simplear ${argv[0]}`);
    }
  });

  it('exit codes: 2 for bad input, 1 for other failures, 130 when cancelled', () => {
    expect(exitCodeFor(new ModelFileError('model.safetensors', 'truncated', 'x'))).toBe(2);
    expect(exitCodeFor(new SimpleARError('BundleInvalid', 'bad chunk'))).toBe(2);
    expect(exitCodeFor(new HttpError('https://x/config.json', 503))).toBe(1);
    expect(exitCodeFor(new SimpleARError('Aborted', 'stop'))).toBe(130);
    expect(exitCodeFor(new TypeError('bug'))).toBe(1);
  });
});

describe('tokens.json', () => {
  it('accepts a square grid of codes 0..63999', () => {
    expect(parseTokenGrid('[0, 63999, 5, 7]', 't.json')).toEqual({ codes: [0, 63999, 5, 7], side: 2 });
  });

  for (const [text, message] of [
    ['{"a": 1', 'not valid JSON'],
    ['{"codes": [1]}', 'expected a JSON array'],
    ['[]', 'the array is empty'],
    ['[0, 1, 64000, 2]', 'element 2 is 64000'],
    ['[0, 1.5, 2, 3]', 'element 1 is 1.5'],
    ['[0, "1", 2, 3]', 'element 1 is "1"'],
    ['[0, -1, 2, 3]', 'element 1 is -1'],
    ['[1, 2, 3]', '3 codes do not form a square grid'],
  ] as const) {
    it(`rejects ${text}`, () => {
      let err: unknown;
      try {
        parseTokenGrid(text, 'tokens.json');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SimpleARError);
      expect((err as SimpleARError).code).toBe('InvalidSettings');
      expect((err as Error).message).toContain('tokens.json: ');
      expect((err as Error).message).toContain(message);
    });
  }
});

describe('convert + decode in-process', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cli-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('converts the tiny fixtures, refuses to overwrite without --force, and decodes a grid', async () => {
    const out = join(dir, 'bundle');
    const args = ['convert', '--model', join(FIXTURES, 'tiny-simplear'), '--vq', join(FIXTURES, 'tiny-cosmos'), '--out', out, '--weights', 'q8'];
    const r = await cli(...args);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*bundle: [\d.]+ MB in \d+ chunks, \d+ tensors \(LM q8, decoder f16\), in /);
    // progress on stderr (not a terminal: whole lines)
    expect(r.stderr).toMatch(/decoder 100%  tensor 172\/172/);
    expect(r.stderr).toMatch(/language model 100%  tensor \d+\/\d+  [\d.]+ MB\/[\d.]+ MB  [\d.]+ [kM]B\/s/);

    const again = await cli(...args);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already exists');
    expect((await cli(...args, '--force', '--quiet')).code).toBe(0);

    const tokens = join(dir, 'tokens.json');
    await writeFile(tokens, JSON.stringify(Array.from({ length: 9 }, (_, i) => i * 7000)));
    const png = join(dir, 'img', 'out.png');
    const d = await cli('decode', '--bundle', out, '--tokens', tokens, '--out', png);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toContain('48×48 from 3×3 tokens');
    const image = decodePng(new Uint8Array(await readFile(png)));
    expect([image.width, image.height, image.channels]).toEqual([48, 48, 3]);
  });

  it('typed errors name the file: exit 2', async () => {
    const missing = await cli('decode', '--bundle', join(dir, 'nope'), '--tokens', join(dir, 'nope.json'), '--out', join(dir, 'x.png'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope.json: cannot read');
    const tokens = join(dir, 't.json');
    await writeFile(tokens, '[1, 2, 3, 4]');
    const noBundle = await cli('decode', '--bundle', join(dir, 'nope'), '--tokens', tokens, '--out', join(dir, 'x.png'));
    expect(noBundle.code).toBe(2);
    expect(noBundle.stderr).toMatch(/error \[ModelFileMissing\]: .*nope\/manifest\.json: not a bundle/);
    const badModel = await cli('convert', '--model', join(FIXTURES, 'tiny-cosmos'), '--vq', join(FIXTURES, 'tiny-cosmos'), '--out', join(dir, 'b2'), '-q');
    expect(badModel.code).toBe(2);
    expect(badModel.stderr).toMatch(/\[ModelFileMissing\].*tiny-cosmos\/tokenizer\.json/);
    expect((await readdir(dir)).filter((f) => f.startsWith('b2'))).toEqual([]);
  });
});

describe('progress bar', () => {
  it('redraws one line on a terminal, throttled, and ends the line', () => {
    const out = new Capture();
    out.isTTY = true;
    let t = 0;
    const bar = new ProgressBar(out, { now: () => t, barWidth: 10 });
    bar.update('lm', 0.5, '5/10');
    t = 50;
    bar.update('lm', 0.6, '6/10'); // throttled
    t = 200;
    bar.update('lm', 0.7, '7/10');
    expect(out.text).toBe('\r\x1b[2Klm [#####.....]  50%  5/10\r\x1b[2Klm [#######...]  70%  7/10');
    bar.end();
    expect(out.text.endsWith('\n')).toBe(true);
  });

  it('prints whole lines elsewhere: on a new label, then every few seconds, or when forced', () => {
    const out = new Capture();
    let t = 0;
    const bar = new ProgressBar(out, { now: () => t, logEveryMs: 1000 });
    bar.update('decoder', 0.1, 'a');
    t = 500;
    bar.update('decoder', 0.2, 'b');
    bar.update('decoder', 1, 'done', true);
    t = 600;
    bar.update('lm', undefined, '…');
    expect(out.text.split('\n')).toEqual(['decoder  10%  a', 'decoder 100%  done', 'lm   …', '']);
  });

  it('formats sizes and durations', () => {
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(430_312_345)).toBe('430.3 MB');
    expect(formatBytes(1_216_900_000)).toBe('1.22 GB');
    expect(formatSeconds(77_200)).toBe('1 min 17 s');
    expect(formatSeconds(5_230)).toBe('5.2 s');
  });
});
