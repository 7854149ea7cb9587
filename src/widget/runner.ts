// Runs the widget's requests one at a time on one EngineClient: prepares the model on first use
// (download → convert → store → load, reported as progress of that request), generates, and
// encodes the PNGs (one per image: a request may ask for several, image i with seed + i). Each
// request can be cancelled by its key, queued or running.
import type { EngineClient, GenerationResult, PrepareProgress } from '../client/engine-client.ts';
import { SimpleARError } from '../core/base/errors.ts';
import { encodePng } from '../core/image/png.ts';
import { pngText } from '../core/image/png-metadata.ts';
import { VISUAL_CODES } from '../core/base/model-spec.ts';
import { latentSide, resolveCount, resolveKeep, resolveSettings } from '../core/engine/settings.ts';
import type { GenerateParams, ProgressPhase } from '../embed/protocol.ts';
import type { WidgetConfig } from './config.ts';

export interface WidgetImage {
  png: Blob;
  seed: number;
  width: number;
  height: number;
  prompt: string;
  /** Place in the request (0 … count − 1) and the request's count. */
  index: number;
  count: number;
  /** Visual codes, raster order: what a later request's `keep` takes. */
  codes: Int32Array;
  keptRows?: number;
}

/** Which image of a request for several a generation phase is about (absent for one image). */
export interface ImageOf {
  image: number;
  count: number;
}

export type ProgressListener = (phase: ProgressPhase, done: number, total: number, of?: ImageOf) => void;

/** A failure as the protocol reports it. */
export interface WidgetFailure {
  code: string;
  message: string;
  /** The request field at fault (InvalidSettings: 'count', 'keep', 'size', …). */
  field?: string;
}

function fieldOf(details: unknown): { field?: string } {
  const field = (details as { field?: unknown } | null | undefined)?.field;
  return typeof field === 'string' ? { field } : {};
}

export function toFailure(error: unknown): WidgetFailure {
  if (error instanceof DOMException && error.name === 'AbortError') return { code: 'Aborted', message: 'The generation was cancelled.' };
  if (error instanceof SimpleARError) return { code: error.code, message: error.message, ...fieldOf(error.details) };
  const e = error as { code?: unknown; message?: unknown; details?: unknown } | null;
  // Errors that crossed the worker boundary keep their code (error-transfer.ts) but may not be instances.
  if (e && typeof e.code === 'string' && typeof e.message === 'string') return { code: e.code, message: e.message, ...fieldOf(e.details) };
  return { code: 'Internal', message: error instanceof Error ? error.message : String(error) };
}

function prepareStep(p: PrepareProgress): [ProgressPhase, number, number] {
  return p.phase === 'download' ? ['download', p.bytes, p.totalBytes] : [p.phase, p.done, p.total];
}

async function toPng(result: GenerationResult): Promise<Blob> {
  // RGB: the alpha channel of a generated image is always opaque.
  const { width, height, rgba } = result;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]!;
    rgb[j + 1] = rgba[i + 1]!;
    rgb[j + 2] = rgba[i + 2]!;
  }
  const bytes = encodePng({ width, height, channels: 3, data: rgb }, { text: pngText(result.settings, result.model, result.keptRows) });
  return new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' });
}

export class WidgetRunner {
  readonly #client: EngineClient;
  readonly #config: WidgetConfig;
  /** Requests not yet settled (queued or running), by key. */
  readonly #active = new Map<string, AbortController>();
  #queue: Promise<unknown> = Promise.resolve();
  #modelReady = false;
  /** false where the browser gives the frame no storage: the model loads into memory only. */
  readonly #storageAvailable: boolean;

  constructor(client: EngineClient, config: WidgetConfig, options: { storageAvailable: boolean }) {
    this.#client = client;
    this.#config = config;
    this.#storageAvailable = options.storageAvailable;
  }

  /** Something is queued or running. */
  get busy(): boolean {
    return this.#active.size > 0;
  }

  has(key: string): boolean {
    return this.#active.has(key);
  }

  /** Aborts request `key` (queued: it never starts; running: the engine stops within a step). */
  cancel(key: string): void {
    this.#active.get(key)?.abort();
  }

  /**
   * Checks the request now (bad settings, count or keep fail before queuing), then runs it after
   * the ones before it. Resolves with its images in image order (one when `count` is left out).
   */
  run(key: string, params: GenerateParams, onProgress: ProgressListener): Promise<WidgetImage[]> {
    if (this.#active.has(key)) return Promise.reject(new SimpleARError('InvalidSettings', `A request with id ${key} is already running.`));
    const request: GenerateParams = { ...this.#config.defaults, ...stripUndefined(params), prompt: params.prompt };
    try {
      // The engine's checks before any download (the seed stays random when left out).
      resolveSettings({ ...request, seed: request.seed ?? 0 });
      resolveCount(request.count);
      // The shape and range of the kept codes; the engine checks them again against the loaded
      // model's own vocabulary (a test model may have fewer codes).
      resolveKeep(request.keep, latentSide(request.size!), VISUAL_CODES);
    } catch (e) {
      return Promise.reject(e);
    }
    const size = request.size!;
    if (size > this.#config.maxSize) {
      return Promise.reject(
        new SimpleARError('InvalidSettings', `size: at most ${this.#config.maxSize} pixels in this widget (got ${size}); its maxSize sets the limit.`, { field: 'size' }),
      );
    }
    const controller = new AbortController();
    this.#active.set(key, controller);
    if (this.#active.size > 1) onProgress('queued', 0, 1);
    const job = this.#queue.then(() => this.#execute(request, controller.signal, onProgress));
    this.#queue = job.catch(() => {});
    return job.finally(() => this.#active.delete(key));
  }

  async #prepare(signal: AbortSignal, onProgress: ProgressListener): Promise<void> {
    const { source, load } = this.#config;
    if (this.#storageAvailable || source.kind !== 'original') {
      await this.#client.prepareModel(source, { ...load, signal, onProgress: (p) => onProgress(...prepareStep(p)) });
      return;
    }
    // No storage: read the original checkpoints straight into the engine (nothing is kept).
    onProgress('load', 0, 1);
    await this.#client.loadModel(source, { ...load, signal });
    onProgress('load', 1, 1);
  }

  async #execute(params: GenerateParams, signal: AbortSignal, onProgress: ProgressListener): Promise<WidgetImage[]> {
    if (signal.aborted) throw new DOMException('Cancelled', 'AbortError');
    if (!this.#modelReady) {
      await this.#prepare(signal, onProgress);
      this.#modelReady = true;
    }
    // One call for any count: the engine batches the images where its backend can.
    const results = await this.#client.generateImages(params, {
      signal,
      onProgress: (p) => onProgress(p.phase, p.done, p.total, p.image !== undefined && p.count !== undefined ? { image: p.image, count: p.count } : undefined),
    });
    const images: WidgetImage[] = [];
    for (const [i, result] of results.entries()) {
      images.push({
        png: await toPng(result),
        seed: result.settings.seed,
        width: result.width,
        height: result.height,
        prompt: result.settings.prompt,
        index: result.image?.index ?? i,
        count: result.image?.count ?? results.length,
        codes: result.codes,
        ...(result.keptRows !== undefined ? { keptRows: result.keptRows } : {}),
      });
    }
    return images;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
