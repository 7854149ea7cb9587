// The generation engine: prompt → two token streams → visual codes (token loop) → RGBA (VQ
// decoder). Backend-neutral: the token loop and the ORT module decide where the work runs.
import type { LmSpec } from '../base/model-spec.ts';
import type { TextTokenizer } from '../formats/tokenizer.ts';
import { encodePrompt } from '../model/prompt.ts';
import { imageSeed, latentSide, resolveCount, resolveKeep, resolveSettings, type GenerationSettings } from './settings.ts';
import { SimpleARError } from '../base/errors.ts';
import { randomSeed, stepUniforms } from '../sampling/prng.ts';
import { sjdUniforms } from '../sampling/jacobi.ts';
import type { OrtModule } from '../base/ort.ts';
import type { DecodedImage, DecoderRunner } from '../runtime/decoder-runner.ts';
import { throwIfAborted, type BatchLoopRequest, type BatchLoopResult, type TokenLoop } from './token-loop.ts';
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
  /**
   * What a batched pass of several images may hold in KV cache: a count whose 2N streams need
   * more is refused before any work. Absent: no limit is checked.
   */
  batchMemory?: BatchMemory;
}

/** The memory a batched pass may use for its streams' KV cache, and in what precision. */
export interface BatchMemory {
  /** Bytes the KV cache of all streams together may take. */
  budgetBytes: number;
  /** Bytes per cached value (4: f32, 2: f16). */
  bytesPerValue: number;
  /** What limits it, for the message ("this GPU's largest buffer", "free memory"). */
  limit: string;
}

/** KV cache bytes of one stream holding `slots` tokens. */
export function kvBytesPerStream(lm: Pick<LmSpec, 'numLayers' | 'numKvHeads' | 'headDim'>, slots: number, bytesPerValue: number): number {
  return lm.numLayers * 2 * lm.numKvHeads * lm.headDim * slots * bytesPerValue;
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

  /** One image; generations run one at a time, in call order. */
  generate(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerationResult> {
    if (resolveCount(request.count) !== 1) {
      throw new SimpleARError('InvalidSettings', 'count: generate() makes one image; generateImages() makes several', { field: 'count' });
    }
    return this.generateImages(request, options).then((results) => results[0]!);
  }

  /** `request.count` images (seed + i each), in one batched pass where the loop has one. */
  generateImages(request: GenerateRequest, options: GenerateOptions = {}): Promise<GenerationResult[]> {
    // Validate before queueing: bad input fails at once, before any work.
    // `count` is the request's, not a setting of each image: an image's settings re-run it alone.
    const { count: requested, ...one } = request;
    const resolved = resolveSettings({ ...one, seed: request.seed ?? randomSeed() });
    const count = resolveCount(requested);
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
    // SJD's images accept different numbers of drafts per run: they cannot step together.
    const batched = count > 1 && !settings.sjd;
    if (batched) this.checkBatchMemory(count, Math.max(prompts.cond.length, prompts.uncond.length) + side * side);
    if (this.spent) throw new SimpleARError('InvalidSettings', 'this engine makes one image only (oneShot; one request of several images counts as one); create another', {});
    if (this.parts.oneShot) this.spent = true;
    const run = this.queue.then(async () => {
      if (batched) return this.run(settings, count, prompts, kept, options);
      // SJD: the images one after another, each its own pass.
      const results: GenerationResult[] = [];
      for (let i = 0; i < count; i++) {
        const [one] = await this.run({ ...settings, seed: imageSeed(settings.seed, i) }, 1, prompts, kept, options, count > 1 ? { index: i, count } : undefined);
        results.push(one!);
      }
      return results;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Refuses a count whose 2N streams' KV cache (`slots` tokens each) would not fit. */
  private checkBatchMemory(count: number, slots: number): void {
    const memory = this.parts.batchMemory;
    if (!memory) return;
    const perImage = 2 * kvBytesPerStream(this.parts.lm, slots, memory.bytesPerValue);
    if (count * perImage <= memory.budgetBytes) return;
    const fits = Math.floor(memory.budgetBytes / perImage);
    const mib = (b: number) => `${Math.ceil(b / 2 ** 20)} MiB`;
    throw new SimpleARError(
      'InvalidSettings',
      `count: ${count} images at once need ${mib(count * perImage)} of KV cache (${mib(perImage)} each), more than ${memory.limit} allows (${mib(memory.budgetBytes)}): ` +
        (fits >= 1 ? `choose a count of at most ${fits}, or a smaller size` : 'choose a smaller size'),
      { field: 'count', neededBytes: count * perImage, budgetBytes: memory.budgetBytes, maxCount: fits },
    );
  }

  /**
   * One pass: `count` images (seed + i each; 2 × count streams) through the token loop, then each
   * through the decoder. `label` places a single-image pass within a larger request.
   */
  private async run(
    settings: GenerationSettings,
    count: number,
    prompts: { cond: number[]; uncond: number[] },
    /** Kept codes (rows × side), fed after both prompts; empty for a plain generation. */
    kept: Int32Array,
    { onProgress, signal, progressIntervalMs = PROGRESS_INTERVAL_MS }: GenerateOptions,
    label?: { index: number; count: number },
  ): Promise<GenerationResult[]> {
    throwIfAborted(signal);
    const side = latentSide(settings.size);
    const steps = side * side;
    const start = performance.now();
    const requestCount = label?.count ?? count;
    const where = (image: number): { image?: number; count?: number } => (requestCount > 1 ? { image: (label?.index ?? 0) + image, count: requestCount } : {});
    const report = (p: Omit<GenerationProgress, 'elapsedMs' | 'gridSide'>, image = 0) =>
      onProgress?.({ ...p, gridSide: side, elapsedMs: performance.now() - start, ...where(image) });
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
    const decodeRate = (done: number) => {
      const elapsed = (performance.now() - decodeStart) / 1000;
      const rate = elapsed > 0 ? (count * (done - kept.length)) / elapsed : undefined; // kept codes cost no step
      return { tokensPerSecond: rate, etaMs: rate ? ((count * (steps - done)) / rate) * 1000 : undefined };
    };
    // Redraw below a row: both streams get the kept codes' ids after their own prompt, as the
    // reference's sequences would hold them, in the one prefill; sampling starts below them.
    const keptIds = Array.from(kept, (code) => code + this.parts.lm.visualOffset);
    const seeds = Array.from({ length: count }, (_, i) => imageSeed(settings.seed, i));
    const onRow = (image: number, codes: Int32Array, done: number) => {
      lastReport = performance.now();
      report({ phase: 'decode', done, total: steps, codes: codes.slice(0, done), ...decodeRate(done) }, image);
    };
    const request: Omit<BatchLoopRequest, 'uniforms' | 'onRow'> = {
      cond: [...prompts.cond, ...keptIds],
      uncond: [...prompts.uncond, ...keptIds],
      steps,
      ...(kept.length > 0 ? { kept } : {}),
      rowLength: side,
      sampling: settings,
      signal,
      onPrefillRun: (done, total) => {
        if (done < total && due()) report({ phase: 'prefill', done, total });
      },
      onPrefilled: () => {
        decodeStart = performance.now();
        // Progress starts at the kept rows, shown with their codes.
        for (let i = 0; i < count; i++) report({ phase: 'decode', done: kept.length, total: steps, ...(kept.length > 0 ? { codes: kept.slice() } : {}) }, i);
      },
      onStep: (done) => {
        if (due()) report({ phase: 'decode', done, total: steps, ...decodeRate(done) });
      },
    };
    const { loop: tokenLoop } = this.parts;
    let loop: BatchLoopResult;
    if (settings.sjd) {
      // One image per pass (generateImages runs SJD's images one after another).
      const one = { ...request, uniforms: stepUniforms(settings.seed, steps), onRow: (codes: Int32Array, done: number) => onRow(0, codes, done) };
      const single = await tokenLoop.runSjd(one, { window: settings.sjd.window, uniforms: sjdUniforms(settings.seed) });
      loop = { ...single, codes: [single.codes] };
    } else {
      loop = await tokenLoop.runPlain({ ...request, uniforms: seeds.map((seed) => stepUniforms(seed, steps)), onRow });
    }

    throwIfAborted(signal);
    // One-shot: the LM goes once the request's last pass has its tokens.
    const lastPass = !label || label.index === label.count - 1;
    if (this.parts.oneShot && lastPass) await this.releaseLoop();
    const results: GenerationResult[] = [];
    for (let i = 0; i < count; i++) {
      report({ phase: 'vq-decode', done: i, total: count }, i);
      const vqStart = performance.now();
      const codes = loop.codes[i]!;
      const { rgba, fallback } = await this.decode(codes, side, side);
      throwIfAborted(signal);
      const end = performance.now();
      results.push({
        settings: { ...settings, seed: seeds[i]! },
        codes,
        width: side * 16,
        height: side * 16,
        rgba,
        model: this.parts.modelName,
        ...(kept.length > 0 ? { keptRows: kept.length / side } : {}),
        ...(requestCount > 1 ? { image: { index: (label?.index ?? 0) + i, count: requestCount } } : {}),
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
          ...(count > 1 ? { imagesPerPass: count } : {}),
          ...(fallback ? { decoderFallback: { activations: 'f32', reason: fallback.reason } } : {}),
        },
      });
    }
    return results;
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
