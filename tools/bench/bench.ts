// `npm run bench` (main.ts): the measurements of docs/testing.md#performance-model, one module per
// thing measured:
//  a. cpu-step.ts: the Node CPU decode step of SimpleAR-0.5B shapes (q4) against the memory-
//     bandwidth bound and PyTorch, with its KV cache's costs, SJD verifications, ORT's profile
//     and ORT's kernels alone (cpu-step/);
//  b. browser-webgpu.ts: generation in headless Chromium on WebGPU (bench/gpu.sh: a real GPU);
//  c. sjd-engine.ts: SJD end to end on the tiny fixture's CPU engine (with a);
//  d. images-per-minute.ts: images per minute for N = 1, 2, 4 images per request on the CPU
//     engine at full size (with a).
// Prints a readable table (report-table.ts) on stdout followed by one JSON object (last line);
// progress goes to stderr.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { helpText, parseCommandArgs, UsageError, type CliIo, type CommandSpec, type OptionValues } from '../../src/cli/command.ts';
import { benchBrowser, type BrowserBenchOptions } from './browser-webgpu.ts';
import { benchCpu } from './cpu-step.ts';
import { FIXTURES } from './inputs.ts';
import { table } from './report-table.ts';
import { benchSjdTiny } from './sjd-engine.ts';
import { benchImagesPerMinute } from './images-per-minute.ts';

/** How the bench is run, for its usage lines. */
const INVOCATION = 'npm run bench --';

const FLAGS: CommandSpec = {
  usage: '[--quick] [--cpu-only | --browser-only | --images-only] [--gpu] [--model <dir> --vq <dir>] [--size <px>] [--json <file>]',
  description: [
    'Measures a. the Node CPU decode step of SimpleAR-0.5B shapes (q4) against the memory-bandwidth',
    'bound and PyTorch, b. generation in headless Chromium on WebGPU (SwiftShader unless --gpu),',
    'c. SJD on the tiny fixture and d. images per minute for N = 1, 2, 4 images per request on the CPU',
    'engine at full size (1024², q4; the checkpoint of npm run fixtures:full, written when missing).',
    'Prints a table, then the JSON report as the last line.',
  ].join('\n'),
  options: {
    quick: { type: 'boolean', description: 'CI-sized: 2 layers, context prompt+256, 64 px in the browser' },
    'cpu-only': { type: 'boolean', description: 'only section a' },
    'browser-only': { type: 'boolean', description: 'only section b' },
    'images-only': { type: 'boolean', description: 'only section d (images per minute, N = 1, 2, 4)' },
    gpu: { type: 'boolean', description: 'Chromium with real-GPU flags (Vulkan) instead of SwiftShader' },
    model: { type: 'string', arg: '<dir>', description: 'original SimpleAR checkpoint folder for b (default: the tiny fixture)' },
    vq: { type: 'string', arg: '<dir>', description: 'folder with the Cosmos decoder.jit for b (default: --model if it has one, else tiny-cosmos)' },
    size: { type: 'string', arg: '<px>', description: 'image size for b (default 128; 64 with --quick)' },
    weights: { type: 'string', arg: 'q4|q8|f16|f32', description: 'LM weights in b (default f32 for the tiny fixture, else q4)', choices: ['q4', 'q8', 'f16', 'f32'] },
    json: { type: 'string', arg: '<file>', description: 'also write the JSON report to a file' },
  },
};

/** Runs the sections the flags ask for, prints the table and the JSON report; 1 if a section failed. */
async function measure(values: OptionValues, io: CliIo): Promise<number> {
  const quick = values.quick === true;
  const report: Record<string, unknown> = { date: new Date().toISOString(), node: process.version, cpus: availableParallelism(), quick };
  const only = values['images-only'] === true;
  if (!values['browser-only'] && !only) {
    try {
      report.cpu = await benchCpu(quick);
    } catch (e) {
      report.cpu = { error: (e as Error).stack ?? String(e) };
    }
    try {
      report.sjd = await benchSjdTiny(quick);
    } catch (e) {
      report.sjd = { error: (e as Error).stack ?? String(e) };
    }
  }
  if (!values['browser-only']) {
    try {
      report.images = await benchImagesPerMinute(quick);
    } catch (e) {
      report.images = { error: (e as Error).stack ?? String(e) };
    }
  }
  if (!values['cpu-only'] && !only) {
    const model = resolve((values.model as string | undefined) ?? join(FIXTURES, 'tiny-simplear'));
    const vq = resolve((values.vq as string | undefined) ?? (existsSync(join(model, 'decoder.jit')) ? model : join(FIXTURES, 'tiny-cosmos')));
    const tiny = model.startsWith(FIXTURES);
    const size = Number(values.size ?? (quick ? 64 : 128));
    if (!Number.isInteger(size) || size % 16 !== 0 || size < 16 || size > 1024) throw new UsageError(`--size must be a multiple of 16 up to 1024, got ${values.size}`);
    try {
      report.browser = await benchBrowser({
        model,
        vq,
        size,
        gpu: values.gpu === true,
        weights: (values.weights as BrowserBenchOptions['weights'] | undefined) ?? (tiny ? 'f32' : 'q4'),
        decoderDtype: tiny ? 'f32' : 'f16',
        chromium: process.env.CHROMIUM_PATH ?? process.env.CHROMIUM ?? '/usr/bin/chromium',
      });
    } catch (e) {
      report.browser = { error: (e as Error).stack ?? String(e) };
    }
  }
  io.stdout.write(table(report));
  io.stdout.write(`${JSON.stringify(report)}\n`);
  if (values.json) await writeFile(values.json as string, `${JSON.stringify(report, null, 2)}\n`);
  const failed = (section: unknown) => Boolean((section as { error?: string } | undefined)?.error);
  return failed(report.cpu) || failed(report.sjd) || failed(report.images) || failed(report.browser) ? 1 : 0;
}

/**
 * `npm run bench -- <argv>` in this process: returns the exit code (0; 1: a section failed (its
 * error is in the report) or an unexpected error; 2: bad flags, with the usage).
 */
export async function runBench(argv: string[], io: CliIo): Promise<number> {
  try {
    const values = parseCommandArgs(FLAGS, argv);
    if (values === null) {
      io.stdout.write(helpText(INVOCATION, FLAGS));
      return 0;
    }
    return await measure(values, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`npm run bench: error: ${e.message}\nusage: ${INVOCATION} ${FLAGS.usage}\n(see ${INVOCATION} --help)\n`);
      return 2;
    }
    const err = e instanceof Error ? e : new Error(String(e));
    io.stderr.write(`npm run bench: unexpected error: ${err.stack ?? err.message}\n`);
    return 1;
  }
}
