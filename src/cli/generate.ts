// `simplear generate`: prompt → PNG with a converted bundle on onnxruntime-node (the Node engine
// host, node-host.ts: EngineHost on the CPU engine). Settings are checked (resolveSettings) and
// the prompt's length measured with the bundle's tokenizer BEFORE the weights are read, so bad
// input fails at once with exit 2.
// The PNG is RGB and carries the settings as text chunks (tEXt, or iTXt for non-Latin-1 text).
import { basename, dirname, resolve } from 'node:path';
import { SimpleARError } from '../core/base/errors.ts';
import { openFolder } from '../core/formats/byte-source.ts';
import { encodePng, rgbaToRgb } from '../core/image/png.ts';
import { pngText, SOFTWARE } from '../core/image/png-metadata.ts';
import { openModelBundle } from '../core/runtime/model-bundle.ts';
import { encodePrompt } from '../core/model/prompt.ts';
import { randomSeed } from '../core/sampling/prng.ts';
import { latentSide, MAX_IMAGES_PER_REQUEST, resolveSettings, SJD_WINDOW_LIMITS, type GenerationSettings, type KeptRows } from '../core/engine/settings.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS } from '../core/engine/engine.ts';
import type { GenerationProgress, GenerationResult } from '../core/engine/types.ts';
import { removeStaleTemps, writeFileAtomic, writeTextIfChanged } from './atomic-file.ts';
import { missingTargets, promptFileJob, resumedSeed, singlePromptJob, type PromptJob } from './generate-plan.ts';
import { generateImageSet, imageRuns, oneImagePerCall } from './image-set.ts';
import { tempModelFiles } from './model-files.ts';
import { createNodeEngineHost } from './node-host.ts';
import { keptRowsFromOptions } from './kept-tokens.ts';
import { readPromptFile } from './prompt-file.ts';
import { resolveLocation, UsageError, type CommandModule, type OptionValues } from './command.ts';
import { formatSeconds, ProgressBar } from './progress.ts';
import { RunProgress } from './run-progress.ts';

export { SOFTWARE, pngText };

/**
 * After a generation the decoder runs in bands of ≤ 8 MiB activations (above 512², the whole
 * decode's largest tensor is larger): what the LM left behind (its KV cache, malloc's free lists)
 * and a whole 1024² decode together passed 1.5 GB. Measured on the full-size q4 bundle with the
 * whole KV cache allocated, then a 64×64 decode: 1.26 GB peak RSS in bands, 1.42 GB whole;
 * the bands took 1.4× the decoder's time.
 */
export const GENERATE_DECODER_BAND_BYTES = 8 * 2 ** 20;

/** A numeric option: undefined when absent; NaN when not a number (resolveSettings names it). */
function num(values: OptionValues, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const s = String(v).trim();
  return s === '' ? NaN : Number(s);
}

/** The option values → checked settings (defaults filled, seed drawn when missing). */
export function settingsFromOptions(values: OptionValues): GenerationSettings {
  const seed = num(values, 'seed');
  const settings = resolveSettings({
    prompt: values.prompt as string,
    negativePrompt: values.negative as string | undefined,
    size: num(values, 'size'),
    cfg: num(values, 'cfg'),
    repetitionPenalty: num(values, 'repetition-penalty'),
    temperature: num(values, 'temperature'),
    topK: num(values, 'top-k'),
    topP: num(values, 'top-p'),
    seed: seed ?? randomSeed(),
    // --sjd <window>: a bad number reaches resolveSettings as NaN, which names the field.
    ...(values.sjd !== undefined ? { sjd: { window: num(values, 'sjd') ?? NaN } } : {}),
  });
  if (latentSide(settings.size) > MAX_LATENT_SIDE) {
    throw new SimpleARError('InvalidSettings', `size: at most ${MAX_LATENT_SIDE * 16} px (got ${settings.size})`, { field: 'size' });
  }
  return settings;
}

/** `--count`: 1..MAX_IMAGES_PER_REQUEST (one engine request's most), else InvalidSettings naming it. */
export function parseCount(value: string | boolean | undefined): number {
  const s = value === undefined ? '1' : String(value).trim();
  const n = s === '' ? NaN : Number(s);
  if (!Number.isInteger(n) || n < 1 || n > MAX_IMAGES_PER_REQUEST) {
    throw new SimpleARError('InvalidSettings', `count: must be a whole number from 1 to ${MAX_IMAGES_PER_REQUEST} (got ${s})`, { field: 'count' });
  }
  return n;
}

/** The output options that go together: --prompt with --out, or --prompts with --out-dir. */
function checkOutputOptions(values: OptionValues): void {
  const given = (name: string) => values[name] !== undefined;
  if (given('prompt') && given('prompts')) throw new UsageError('give --prompt <text> or --prompts <file>, not both');
  if (given('prompts')) {
    if (!given('out-dir')) throw new UsageError('--prompts needs --out-dir <dir> (the images go to <dir>/<index>/samples/)');
    for (const name of ['out', 'tokens-out', 'keep-rows', 'from']) if (given(name)) throw new UsageError(`--${name} is for one --prompt; with --prompts the files go to --out-dir`);
    return;
  }
  if (!given('prompt')) throw new UsageError('--prompt <text> or --prompts <file> is required');
  if (given('out-dir')) throw new UsageError('--out-dir goes with --prompts <file>; one --prompt writes --out <image.png>');
  if (!given('out')) throw new UsageError('--out <image.png> is required');
}

/** The prompt file's prompts → one job each (a drawn seed per prompt unless --seed is given). */
async function promptFileJobs(values: OptionValues, count: number): Promise<PromptJob[]> {
  const file = values.prompts as string;
  const outDir = values['out-dir'] as string;
  const entries = await readPromptFile(file);
  return entries.map((entry) => promptFileJob(entry, settingsFromOptions({ ...values, prompt: entry.prompt }), count, outDir, file));
}

/**
 * "wrote cat.png: 64×64, seed 3, 16 tokens (prefill …), 2.1 s in all" and the notes that follow it.
 * An image of a batched pass: the pass's line first (with its first image), as
 * "4 images in one pass (8 streams): 64 tokens (prefill 0.1 s, decode 2 s, 32.0 tokens/s)" (the
 * decode time covers all the pass's tokens, so the rate counts them all), then per image
 * "wrote cat-1.png: 64×64, seed 4, 16 tokens (image 2/4 of the pass, pixels 0.1 s), 2.4 s"
 * (the time from the pass's start to this image's pixels).
 */
function reportImage(out: string, result: GenerationResult, took: string): string {
  const t = result.timings;
  const kept = result.keptRows ? ` below ${result.keptRows} kept rows` : '';
  const rate = (tokens: number) => `${((tokens / t.decodeMs) * 1000).toFixed(1)} tokens/s`;
  const wrote = `wrote ${out}: ${result.width}×${result.height}, seed ${result.settings.seed}, ${result.stats.steps} tokens${kept}`;
  const perPass = result.stats.imagesPerPass ?? 1;
  const index = result.image?.index ?? 0;
  const lines: string[] = [];
  if (perPass > 1) {
    const tokens = perPass * result.stats.steps;
    if (index === 0) {
      lines.push(`${perPass} images in one pass (${2 * perPass} streams): ${tokens} tokens (prefill ${formatSeconds(t.prefillMs)}, decode ${formatSeconds(t.decodeMs)}, ${rate(tokens)})`);
    }
    lines.push(`${wrote} (image ${index + 1}/${perPass} of the pass, pixels ${formatSeconds(t.vqMs)}), ${took}`);
  } else {
    lines.push(`${wrote} (prefill ${formatSeconds(t.prefillMs)}, decode ${formatSeconds(t.decodeMs)}, ${rate(result.stats.steps)}, pixels ${formatSeconds(t.vqMs)}), ${took}`);
  }
  const fallback = result.stats.decoderFallback;
  if (fallback) lines.push(`decoder: f16 activations overflowed (${fallback.reason}); decoded again in f32`);
  const sjd = result.stats.sjd;
  if (sjd) {
    lines.push(
      `sjd window ${sjd.window}: ${sjd.acceptedPerRun.toFixed(2)} accepted tokens per run ` +
        `(${sjd.iterations} window runs of 2 session runs each, ${sjd.draftsAccepted}/${sjd.draftsProposed} drafts accepted)`,
    );
  }
  return lines.map((l) => `${l}\n`).join('');
}

/** The single image's progress: tokens of its rows. */
function tokenProgress(bar: ProgressBar): (p: GenerationProgress) => void {
  return (p) => {
    if (p.phase === 'prefill') bar.update('prefill', undefined, '', true);
    else if (p.phase === 'vq-decode') bar.update('decoding pixels', undefined, '', true);
    else {
      const row = Math.floor(p.done / p.gridSide);
      const rate = p.tokensPerSecond ? `${p.tokensPerSecond.toFixed(1)} tokens/s` : '';
      const eta = p.etaMs !== undefined && p.done < p.total ? `ETA ${formatSeconds(p.etaMs)}` : '';
      bar.update('tokens', p.done / p.total, `row ${row}/${p.gridSide}  ${rate}  ${eta}`.trimEnd(), p.done === p.total);
    }
  };
}

const command: CommandModule = {
  usage: '--bundle <dir|url> (--prompt <text> --out <image.png> | --prompts <file> --out-dir <dir>) [options]',
  description: [
    'Generates an image from a text prompt with a converted bundle, on the CPU (onnxruntime-node):',
    'both CFG streams are prefilled, one visual token is sampled per step (size/16 squared steps),',
    'and the Cosmos decoder turns the tokens into pixels. The PNG is RGB and records the prompt and',
    'settings as text chunks. The seed is drawn at random (and printed) when not given.',
    '',
    `--count N (1..${MAX_IMAGES_PER_REQUEST}) makes N images per prompt, image i with seed s+i, in one batched pass`,
    '(2N CFG streams, the weights read once per step for all; with --sjd one after another); a count',
    'whose KV cache would not fit in half the free memory is refused. With one --prompt the images',
    'go to <out stem>-<i>.png (and <tokens-out stem>-<i>.json), i from 0.',
    '--keep-rows K --from <tokens.json> redraws below a row of an earlier image: its first K latent',
    'rows (of size/16) are kept as --tokens-out wrote them and the rest is sampled (with --count, each',
    'image redraws the same rows; give another --seed for another image below them).',
    '--prompts <file> runs every prompt of a file: plain text (one prompt per line) or JSONL (objects',
    'with a "prompt" field, as GenEval\'s evaluation_metadata.jsonl), in GenEval\'s layout:',
    '<dir>/<5-digit index>/metadata.jsonl and <dir>/<index>/samples/<4-digit i>.png. Each file is',
    'written whole (temp file, then rename); a second run makes only the images still missing, so a',
    'run stopped with Ctrl-C goes on where it stopped. Without --seed each prompt draws its own seed',
    '(a resumed prompt reads it back from the images it has).',
  ].join('\n'),
  options: {
    bundle: { type: 'string', short: 'b', arg: '<dir|url>', description: 'the converted model bundle', required: true },
    prompt: { type: 'string', short: 'p', arg: '<text>', description: 'what the image shows (or --prompts)' },
    prompts: { type: 'string', arg: '<file>', description: 'a file of prompts, one per line: text or JSONL with "prompt" (needs --out-dir)' },
    negative: { type: 'string', short: 'n', arg: '<text>', description: 'negative prompt (default: the reference negative prompt; "" = the null condition, plain CFG)' },
    size: { type: 'string', arg: '<px>', description: 'image side in pixels, a multiple of 16, at most 1024', default: '1024' },
    cfg: { type: 'string', arg: '<x>', description: 'classifier-free guidance scale, 0..50', default: '6' },
    'repetition-penalty': {
      type: 'string',
      arg: '<x>',
      description: "Transformers' repetition penalty: codes already drawn score lower; above 0 to 10 (1 = off; default: the model's generation_config.json, else 1)",
    },
    temperature: { type: 'string', arg: '<t>', description: 'sampling temperature, 0 (greedy)..10', default: '1' },
    'top-k': { type: 'string', arg: '<k>', description: 'sample among the k most likely codes (64000 = off)', default: '64000' },
    'top-p': { type: 'string', arg: '<p>', description: 'nucleus sampling mass, (0, 1] (1 = off)', default: '1' },
    seed: { type: 'string', short: 's', arg: '<n>', description: 'random seed 0..4294967295 (default: random, printed)' },
    count: { type: 'string', arg: '<n>', description: `images per prompt, 1..${MAX_IMAGES_PER_REQUEST}, made in one pass; image i uses seed s+i`, default: '1' },
    sjd: {
      type: 'string',
      arg: '<window>',
      description: `speculative Jacobi decoding: draft tokens verified per run, ${SJD_WINDOW_LIMITS.min}..${SJD_WINDOW_LIMITS.max} (same image distribution; default: off)`,
    },
    out: { type: 'string', short: 'o', arg: '<image.png>', description: 'the PNG to write (with --prompt)' },
    'out-dir': { type: 'string', arg: '<dir>', description: 'the folder of a --prompts run (GenEval layout)' },
    'tokens-out': { type: 'string', arg: '<tokens.json>', description: 'also write the visual codes (JSON array, raster order)' },
    'keep-rows': { type: 'string', arg: '<K>', description: 'keep the top K latent rows of --from and sample the rest, 0..size/16-1 (with one --prompt)' },
    from: { type: 'string', arg: '<tokens.json>', description: 'the codes whose rows --keep-rows keeps (a --tokens-out file of the same size)' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress on stderr' },
  },
  epilog: [
    'examples:',
    '  npm run cli -- generate --bundle simplear-q4 --prompt "a red cat on a sofa" --size 512 --out cat.png',
    '  npm run cli -- generate --bundle simplear-q4 --prompts evaluation_metadata.jsonl --out-dir geneval --count 4 --seed 0',
    '  npm run cli -- generate --bundle simplear-q4 --prompt "a red cat on a sofa" --size 512 --keep-rows 12 --from cat.json --seed 7 --out cat-below.png',
  ].join('\n'),

  async run(values, io) {
    // 1. Options, settings, the prompt file and what is left to make: no weights read yet.
    checkOutputOptions(values);
    const count = parseCount(values.count);
    const fromFile = values.prompts !== undefined;
    let jobs: PromptJob[];
    let keep: KeptRows | undefined;
    if (fromFile) {
      jobs = await promptFileJobs(values, count);
    } else {
      const settings = settingsFromOptions(values);
      keep = await keptRowsFromOptions(values['keep-rows'], values.from, settings.size);
      if (values.seed === undefined) io.stderr.write(`seed: ${settings.seed}\n`);
      jobs = [singlePromptJob(settings, count, values.out as string, values['tokens-out'] as string | undefined)];
    }
    // One --prompt overwrites its files; a prompt file's run resumes.
    const pending = await Promise.all(jobs.map((job) => (fromFile ? missingTargets(job) : job.targets)));
    if (fromFile && values.seed === undefined) {
      jobs = await Promise.all(
        jobs.map(async (job, k) => {
          const seed = await resumedSeed(job, pending[k]!);
          return seed === undefined ? job : { ...job, settings: { ...job.settings, seed } };
        }),
      );
    }
    const total = jobs.length * count;
    const toMake = pending.reduce((n, targets) => n + targets.length, 0);
    const started = performance.now();
    if (toMake === 0) {
      for (const job of jobs) if (job.metadata) await writeTextIfChanged(job.metadata.path, job.metadata.text);
      io.stdout.write(`nothing to do: all ${total} images are in ${values['out-dir'] as string}\n`);
      return;
    }

    // 2. Every prompt that still has images to make must fit (the bundle's tokenizer).
    const location = resolveLocation(values.bundle as string);
    const bundle = await openModelBundle(openFolder(location), io.signal ? { signal: io.signal } : {});
    const tokenizer = await bundle.tokenizer(io.signal);
    jobs.forEach((job, k) => {
      if (pending[k]!.length === 0) return;
      try {
        encodePrompt(tokenizer, job.settings.prompt, { negative: job.settings.negativePrompt, maxTokens: MAX_PROMPT_TOKENS });
      } catch (e) {
        if (e instanceof SimpleARError && job.source) throw new SimpleARError(e.code, `${job.source}: ${e.message}`, { ...e.details, source: job.source });
        throw e;
      }
    });

    // 3. The model, then the images.
    const bar = values.quiet ? undefined : new ProgressBar(io.stderr);
    bar?.update('loading model', undefined, '', true);
    const name = basename((values.bundle as string).replace(/[/\\]+$/, '')) || 'model';
    const size = jobs[0]!.settings.size;
    // One engine call (one image, or one --prompt's --count images in one batched pass): the LM's
    // session goes before the decoder's opens, the model's weights are not held once the sessions
    // have them, and the sessions map their weights from files (peak memory: the larger of the
    // two sessions, not their sum and copies). More calls share one engine, so both sessions stay
    // open (the decoder still in bands).
    const calls = jobs.reduce((n, job, k) => n + imageRuns(pending[k]!.map((t) => t.i), oneImagePerCall(job.settings)).length, 0);
    const host = createNodeEngineHost({ oneShot: calls === 1, files: tempModelFiles, decoderBandBytes: GENERATE_DECODER_BAND_BYTES });
    // A single image shows its tokens; a run of several, its images.
    const single = !fromFile && count === 1;
    const run = single ? undefined : new RunProgress(bar, total, total - toMake);
    const show = bar && (run ? (p: GenerationProgress) => run.image(p) : tokenProgress(bar));
    const onProgress = show ? (_i: number, p: GenerationProgress) => show(p) : undefined;
    try {
      await host.loadModel({ kind: 'bundle', url: location }, { name, maxLatentSide: latentSide(size), ...(io.signal ? { signal: io.signal } : {}) });
      run?.start();
      for (const [k, job] of jobs.entries()) {
        if (job.metadata) await writeTextIfChanged(job.metadata.path, job.metadata.text);
        const targets = pending[k]!;
        if (targets.length === 0) continue;
        const byNumber = new Map(targets.map((t) => [t.i, t]));
        for (const dir of new Set(targets.map((t) => dirname(resolve(t.png))))) await removeStaleTemps(dir);
        await generateImageSet(
          host,
          job.settings,
          targets.map((t) => t.i),
          async (i, result) => {
            const target = byNumber.get(i)!;
            const png = encodePng(
              { width: result.width, height: result.height, channels: 3, data: rgbaToRgb(result.rgba) },
              { text: pngText(result.settings, result.model, result.keptRows) },
            );
            // The image's files are complete before the PNG appears: the PNG marks it done.
            if (target.tokens) await writeFileAtomic(target.tokens, `${JSON.stringify(Array.from(result.codes))}\n`);
            await writeFileAtomic(target.png, png);
            bar?.clear();
            io.stdout.write(reportImage(target.png, result, `${formatSeconds(single ? performance.now() - started : result.timings.totalMs)}${single ? ' in all' : ''}`));
            run?.imageDone();
          },
          { ...(io.signal ? { signal: io.signal } : {}), ...(onProgress ? { onProgress } : {}), ...(keep ? { keep } : {}) },
        );
      }
    } catch (e) {
      bar?.end();
      if (e instanceof SimpleARError && e.code === 'Aborted' && run) {
        const again = fromFile ? '; run the same command again to go on' : '';
        throw new SimpleARError('Aborted', `generation cancelled: ${run.done}/${total} images done${again}`);
      }
      throw e;
    } finally {
      await host.dispose();
    }
    bar?.clear();
    if (!single) {
      const where = fromFile ? ` in ${values['out-dir'] as string}` : '';
      io.stdout.write(`done: ${total} images${where} (${toMake} made now), ${formatSeconds(performance.now() - started)} in all\n`);
    }
  },
};

export default command;
