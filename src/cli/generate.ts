// `simplear generate`: prompt → PNG with a converted bundle on onnxruntime-node (the Node engine
// host, node-host.ts: EngineHost on the CPU engine). Settings are checked (resolveSettings) and
// the prompt's length measured with the bundle's tokenizer BEFORE the weights are read, so bad
// input fails at once with exit 2.
// The PNG is RGB and carries the settings as text chunks (tEXt, or iTXt for non-Latin-1 text).
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { SimpleARError } from '../core/base/errors.ts';
import { openFolder } from '../core/formats/byte-source.ts';
import { encodePng, rgbaToRgb } from '../core/image/png.ts';
import { pngText, SOFTWARE } from '../core/image/png-metadata.ts';
import { openModelBundle } from '../core/runtime/model-bundle.ts';
import { encodePrompt } from '../core/model/prompt.ts';
import { randomSeed } from '../core/sampling/prng.ts';
import { latentSide, resolveSettings, SJD_WINDOW_LIMITS, type GenerationSettings } from '../core/engine/settings.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS } from '../core/engine/engine.ts';
import type { GenerationProgress } from '../core/engine/types.ts';
import { tempModelFiles } from './model-files.ts';
import { createNodeEngineHost } from './node-host.ts';
import { resolveLocation, type CommandModule, type OptionValues } from './command.ts';
import { formatSeconds, ProgressBar } from './progress.ts';

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

const command: CommandModule = {
  usage: '--bundle <dir|url> --prompt <text> --out <image.png> [options]',
  description: [
    'Generates an image from a text prompt with a converted bundle, on the CPU (onnxruntime-node):',
    'both CFG streams are prefilled, one visual token is sampled per step (size/16 squared steps),',
    'and the Cosmos decoder turns the tokens into pixels. The PNG is RGB and records the prompt and',
    'settings as text chunks. The seed is drawn at random (and printed) when not given.',
  ].join('\n'),
  options: {
    bundle: { type: 'string', short: 'b', arg: '<dir|url>', description: 'the converted model bundle', required: true },
    prompt: { type: 'string', short: 'p', arg: '<text>', description: 'what the image shows', required: true },
    negative: { type: 'string', short: 'n', arg: '<text>', description: 'negative prompt (default: the reference negative prompt)' },
    size: { type: 'string', arg: '<px>', description: 'image side in pixels, a multiple of 16, at most 1024', default: '1024' },
    cfg: { type: 'string', arg: '<x>', description: 'classifier-free guidance scale, 0..50', default: '6' },
    temperature: { type: 'string', arg: '<t>', description: 'sampling temperature, 0 (greedy)..10', default: '1' },
    'top-k': { type: 'string', arg: '<k>', description: 'sample among the k most likely codes (64000 = off)', default: '64000' },
    'top-p': { type: 'string', arg: '<p>', description: 'nucleus sampling mass, (0, 1] (1 = off)', default: '1' },
    seed: { type: 'string', short: 's', arg: '<n>', description: 'random seed 0..4294967295 (default: random, printed)' },
    sjd: {
      type: 'string',
      arg: '<window>',
      description: `speculative Jacobi decoding: draft tokens verified per run, ${SJD_WINDOW_LIMITS.min}..${SJD_WINDOW_LIMITS.max} (same image distribution; default: off)`,
    },
    out: { type: 'string', short: 'o', arg: '<image.png>', description: 'the PNG to write', required: true },
    'tokens-out': { type: 'string', arg: '<tokens.json>', description: 'also write the visual codes (JSON array, raster order)' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress on stderr' },
  },
  epilog: 'example: npm run cli -- generate --bundle simplear-q4 --prompt "a red cat on a sofa" --size 512 --out cat.png',

  async run(values, io) {
    // 1. Settings and the prompt's length: no weights read yet.
    const settings = settingsFromOptions(values);
    if (values.seed === undefined) io.stderr.write(`seed: ${settings.seed}\n`);
    const started = performance.now();
    const location = resolveLocation(values.bundle as string);
    const bundle = await openModelBundle(openFolder(location), io.signal ? { signal: io.signal } : {});
    const tokenizer = await bundle.tokenizer(io.signal);
    encodePrompt(tokenizer, settings.prompt, { negative: settings.negativePrompt, maxTokens: MAX_PROMPT_TOKENS });

    // 2. The model, then the generation.
    const bar = values.quiet ? undefined : new ProgressBar(io.stderr);
    bar?.update('loading model', undefined, '', true);
    const name = basename((values.bundle as string).replace(/[/\\]+$/, '')) || 'model';
    // One image: the LM's session goes before the decoder's opens, the model's weights are not
    // held once the sessions have them, and the sessions map their weights from files (peak
    // memory: the larger of the two sessions, not their sum and copies).
    const host = createNodeEngineHost({ oneShot: true, files: tempModelFiles, decoderBandBytes: GENERATE_DECODER_BAND_BYTES });
    await host.loadModel({ kind: 'bundle', url: location }, { name, maxLatentSide: latentSide(settings.size), ...(io.signal ? { signal: io.signal } : {}) });
    const onProgress = (p: GenerationProgress) => {
      if (!bar) return;
      if (p.phase === 'prefill') bar.update('prefill', undefined, '', true);
      else if (p.phase === 'vq-decode') bar.update('decoding pixels', undefined, '', true);
      else {
        const row = Math.floor(p.done / p.gridSide);
        const rate = p.tokensPerSecond ? `${p.tokensPerSecond.toFixed(1)} tokens/s` : '';
        const eta = p.etaMs !== undefined && p.done < p.total ? `ETA ${formatSeconds(p.etaMs)}` : '';
        bar.update('tokens', p.done / p.total, `row ${row}/${p.gridSide}  ${rate}  ${eta}`.trimEnd(), p.done === p.total);
      }
    };
    let result;
    try {
      result = await host.generate(settings, { onProgress, ...(io.signal ? { signal: io.signal } : {}) });
    } catch (e) {
      bar?.end();
      if (e instanceof DOMException && e.name === 'AbortError') throw new SimpleARError('Aborted', 'generation cancelled');
      throw e;
    } finally {
      await host.dispose();
    }
    bar?.clear();

    const png = encodePng(
      { width: result.width, height: result.height, channels: 3, data: rgbaToRgb(result.rgba) },
      { text: pngText(settings, result.model) },
    );
    const out = values.out as string;
    await mkdir(dirname(resolve(out)), { recursive: true });
    await writeFile(out, png);
    const tokensOut = values['tokens-out'] as string | undefined;
    if (tokensOut) {
      await mkdir(dirname(resolve(tokensOut)), { recursive: true });
      await writeFile(tokensOut, `${JSON.stringify(Array.from(result.codes))}\n`);
    }
    const t = result.timings;
    io.stdout.write(
      `wrote ${out}: ${result.width}×${result.height}, seed ${settings.seed}, ${result.stats.steps} tokens ` +
        `(prefill ${formatSeconds(t.prefillMs)}, decode ${formatSeconds(t.decodeMs)}, ` +
        `${((result.stats.steps / t.decodeMs) * 1000).toFixed(1)} tokens/s, pixels ${formatSeconds(t.vqMs)}), ` +
        `${formatSeconds(performance.now() - started)} in all\n`,
    );
    const fallback = result.stats.decoderFallback;
    if (fallback) io.stdout.write(`decoder: f16 activations overflowed (${fallback.reason}); decoded again in f32\n`);
    const sjd = result.stats.sjd;
    if (sjd) {
      io.stdout.write(
        `sjd window ${sjd.window}: ${sjd.acceptedPerRun.toFixed(2)} accepted tokens per run ` +
          `(${sjd.iterations} window runs of 2 session runs each, ${sjd.draftsAccepted}/${sjd.draftsProposed} drafts accepted)\n`,
      );
    }
  },
};

export default command;
