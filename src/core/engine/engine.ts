// The generation engine: prompt → two token streams → visual codes (token loop) → RGBA (VQ
// decoder). Backend-neutral: the token loop and the ORT module decide where the work runs.
import type { LmSpec } from '../base/model-spec.ts';
import type { TextTokenizer } from '../formats/tokenizer.ts';
import { encodePrompt } from '../model/prompt.ts';
import { latentSide, resolveKeep, resolveSettings, type GenerationSettings } from './settings.ts';
import { SimpleARError } from '../base/errors.ts';
import { randomSeed, stepUniforms } from '../sampling/prng.ts';
import { sjdUniforms } from '../sampling/jacobi.ts';
import type { OrtModule } from '../base/ort.ts';
import type { DecodedImage, DecoderRunner } from '../runtime/decoder-runner.ts';
import { throwIfAborted, type TokenLoop, type TokenLoopRequest } from './token-loop.ts';
import type {
  Engine,
  EngineBackendKind,
  GenerateOptions,
  GenerateRequest,
  GenerationProgress,
  GenerationResult,
} from './types.ts';

/** Longest prompt (either stream) the KV cache is sized for: the training context was 4096 + 512. */
export const MAX_PROMPT_TOKENS = 512;
/** Largest latent side served (64 = 1024 px). */
export const MAX_LATENT_SIDE = 64;
/** Progress between latent rows (per prefill run, per step) is reported at most this often. */
export const PROGRESS_INTERVAL_MS = 250;

export interface EngineParts {
  backend: EngineBackendKind;
  modelName: string;
  lm: LmSpec;
  tokenizer: TextTokenizer;
  loop: TokenLoop;
  ort: OrtModule;
  /**
   * The VQ decoder (with f16 activations it reruns in f32 when they overflow), or a function that
   * opens it when the first image needs it.
   */
  decoder: DecoderRunner | (() => Promise<DecoderRunner>);
  /**
   * One image only (the CLI): the LM's session is released once its tokens are in, before the
   * decoder's session is opened, so the two never hold memory at the same time. Later calls fail.
   */
  oneShot?: boolean;
  maxPromptTokens?: number;
  maxLatentSide?: number;
  /** The checkpoint's repetition penalty (generation_config.json; 1 where it has none): the
   * default of a request that sets none. */
  repetitionPenalty?: number;
}

export class SimpleAREngine implements Engine {
  readonly backend: EngineBackendKind;
  private queue: Promise<unknown> = Promise.resolve();
  private decoder: DecoderRunner | undefined;
  /** A one-shot engine that has started its image. */
  private spent = false;

  constructor(private readonly parts: EngineParts) {
    this.backend = parts.backend;
    if (typeof parts.decoder !== 'function') this.decoder = parts.decoder;
  }

  /** Generations run one at a time, in call order. */
  generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerationResult> {
    // Validate before queueing: bad input fails at once, before any work.
    const resolved = resolveSettings({ ...request, seed: request.seed ?? randomSeed() });
    // The result reports the penalty used, the checkpoint's where the request set none.
    const settings = { ...resolved, repetitionPenalty: resolved.repetitionPenalty ?? this.parts.repetitionPenalty ?? 1 };
    const side = latentSide(settings.size);
    const maxSide = this.parts.maxLatentSide ?? MAX_LATENT_SIDE;
    if (side > maxSide) {
      throw new SimpleARError('InvalidSettings', `size: at most ${maxSide * 16} px on this engine (got ${settings.size})`, { field: 'size' });
    }
    const kept = resolveKeep(request.keep, side, this.parts.lm.visualCount);
    const prompts = encodePrompt(this.parts.tokenizer, settings.prompt, {
      negative: settings.negativePrompt,
      maxTokens: this.parts.maxPromptTokens ?? MAX_PROMPT_TOKENS,
    });
    if (this.spent) throw new SimpleARError('InvalidSettings', 'this engine makes one image only (oneShot); create another', {});
    if (this.parts.oneShot) this.spent = true;
    const run = this.queue.then(() => this.run(settings, prompts, kept, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(
    settings: GenerationSettings,
    prompts: { cond: number[]; uncond: number[] },
    /** Kept codes (rows × side), fed after both prompts; empty for a plain generation. */
    kept: Int32Array,
    { onProgress, signal, progressIntervalMs = PROGRESS_INTERVAL_MS }: GenerateOptions,
  ): Promise<GenerationResult> {
    throwIfAborted(signal);
    const side = latentSide(settings.size);
    const steps = side * side;
    const start = performance.now();
    const report = (p: Omit<GenerationProgress, 'elapsedMs' | 'gridSide'>) =>
      onProgress?.({ ...p, gridSide: side, elapsedMs: performance.now() - start });
    report({ phase: 'prefill', done: 0, total: 1 });
    // Between rows, progress at most this often (a step can take milliseconds or seconds).
    let lastReport = performance.now();
    const due = () => {
      const now = performance.now();
      if (now - lastReport < progressIntervalMs) return false;
      lastReport = now;
      return true;
    };

    let decodeStart = start;
    const decodeRate = (count: number) => {
      const elapsed = (performance.now() - decodeStart) / 1000;
      const rate = elapsed > 0 ? (count - kept.length) / elapsed : undefined; // kept codes cost no step
      return { tokensPerSecond: rate, etaMs: rate ? ((steps - count) / rate) * 1000 : undefined };
    };
    // Redraw below a row: both streams get the kept codes' ids after their own prompt, as the
    // reference's sequences would hold them, in the one prefill; sampling starts below them.
    const keptIds = Array.from(kept, (code) => code + this.parts.lm.visualOffset);
    const request: TokenLoopRequest = {
      cond: [...prompts.cond, ...keptIds],
      uncond: [...prompts.uncond, ...keptIds],
      steps,
      ...(kept.length > 0 ? { kept } : {}),
      rowLength: side,
      sampling: settings,
      uniforms: stepUniforms(settings.seed, steps),
      signal,
      onPrefillRun: (done, total) => {
        if (done < total && due()) report({ phase: 'prefill', done, total });
      },
      onPrefilled: () => {
        decodeStart = performance.now();
        // Progress starts at the kept rows, shown with their codes.
        report({ phase: 'decode', done: kept.length, total: steps, ...(kept.length > 0 ? { codes: kept.slice() } : {}) });
      },
      onStep: (count) => {
        if (due()) report({ phase: 'decode', done: count, total: steps, ...decodeRate(count) });
      },
      onRow: (codes, count) => {
        lastReport = performance.now();
        report({ phase: 'decode', done: count, total: steps, codes: codes.slice(0, count), ...decodeRate(count) });
      },
    };
    const { loop: tokenLoop } = this.parts;
    const loop = settings.sjd
      ? await tokenLoop.runSjd(request, { window: settings.sjd.window, uniforms: sjdUniforms(settings.seed) })
      : await tokenLoop.runPlain(request);

    throwIfAborted(signal);
    if (this.parts.oneShot) await this.releaseLoop();
    report({ phase: 'vq-decode', done: 0, total: 1 });
    const vqStart = performance.now();
    const { rgba, fallback } = await this.decode(loop.codes, side, side);
    const end = performance.now();
    return {
      settings,
      codes: loop.codes,
      width: side * 16,
      height: side * 16,
      rgba,
      model: this.parts.modelName,
      ...(kept.length > 0 ? { keptRows: kept.length / side } : {}),
      timings: { prefillMs: loop.prefillMs, decodeMs: loop.decodeMs, vqMs: end - vqStart, totalMs: end - start },
      stats: {
        backend: this.backend,
        steps: steps - kept.length,
        runs: loop.runs,
        prefillRuns: loop.prefillRuns,
        readbacks: loop.readbacks,
        steadyStateAllocations: loop.steadyStateAllocations,
        acceptedPerRun: loop.acceptedPerRun,
        graphCapture: loop.graphCapture,
        ...(loop.dispatchesPerStep !== undefined ? { dispatchesPerStep: loop.dispatchesPerStep } : {}),
        ...(loop.sjd ? { sjd: loop.sjd } : {}),
        ...(fallback ? { decoderFallback: { activations: 'f32', reason: fallback.reason } } : {}),
      },
    };
  }

  /** Codes (raster order, h × w) → RGBA bytes through the VQ decoder (and its f32 fallback). */
  async decode(codes: Int32Array, h: number, w: number): Promise<DecodedImage> {
    return (await this.decoderRunner()).decode(codes, h, w);
  }

  /** The DecoderRunner, opened here on first use where the parts gave an opener (oneShot). */
  private async decoderRunner(): Promise<DecoderRunner> {
    if (!this.decoder) {
      const { decoder } = this.parts;
      this.decoder = typeof decoder === 'function' ? await decoder() : decoder;
    }
    return this.decoder;
  }

  async dispose(): Promise<void> {
    await this.queue;
    await this.releaseLoop();
    await this.decoder?.release();
  }

  private loopReleased = false;

  private async releaseLoop(): Promise<void> {
    if (this.loopReleased) return;
    this.loopReleased = true;
    await this.parts.loop.dispose();
  }
}
