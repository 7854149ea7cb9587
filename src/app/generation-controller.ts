// The generation screen: the form, the progress, the image forming row by row, the result.
// With an "Images" count above 1 the request's images form side by side in a grid (ImageGrid),
// each kept in the gallery on its own; a click on one makes it the current result (the stage,
// the result view and its actions). Runs one request at a time through the client; cancel is cooperative (the worker stops
// within a step and stays ready). A lost GPU or an out-of-memory error is explained, the model
// is loaded again from storage, and the next Generate works.
import type { EngineClient, GenerationResult, PreparedModelInfo } from '../client/engine-client.ts';
import { SimpleARError } from '../core/base/errors.ts';
import type { GenerationSettings, KeptRows } from '../core/engine/settings.ts';
import { randomSeed } from '../core/sampling/prng.ts';
import { estimateText, measureSpeed } from './cpu-estimate.ts';
import { h, messageOf } from './dom.ts';
import { formatDuration } from './format.ts';
import type { GalleryEntry, GalleryStore } from './gallery-store.ts';
import { GenerateForm } from './generate-form.ts';
import { pngBlob } from './image-export.ts';
import { PngEncoder } from './png-encoder.ts';
import { PreviewCanvas } from './preview-canvas.ts';
import { describeGeneration, ImagesProgress } from './progress-text.ts';
import { ImageGrid } from './image-grid.ts';
import { ProgressView } from './progress-view.ts';
import { ResultView, type ShownImage } from './result-view.ts';
import { RowPicker } from './row-picker.ts';
import type { StatusLine } from './status-line.ts';

export interface GenerationHandlers {
  /** The GPU was lost or ran out of memory: load the model again (from storage). */
  onDeviceLost(): Promise<void>;
  onSaved(entry: GalleryEntry): void;
}

/** One image of the last request: its result, and what the result view shows once its PNG is encoded. */
interface BatchImage {
  result: GenerationResult;
  shown?: ShownImage;
}

const isAbort = (e: unknown) => (e instanceof DOMException || e instanceof Error) && (e.name === 'AbortError' || (e instanceof SimpleARError && e.code === 'Aborted'));

export class GenerationController {
  readonly element: HTMLElement;
  readonly #form: GenerateForm;
  readonly #progress = new ProgressView('Generation progress');
  readonly #preview = new PreviewCanvas();
  /** The images of a request for several: live tiles, then the choice of the current result. */
  readonly #grid = new ImageGrid((index) => this.#select(index));
  /** The last request's images (one for a plain Generate); empty after opening a gallery image. */
  #batch: BatchImage[] = [];
  #selected = 0;
  /** The row line over the image, for "Redraw below". */
  readonly #rowPicker = new RowPicker(this.#preview.frame);
  readonly #result: ResultView;
  readonly #notice: HTMLElement;
  readonly #pngEncoder = new PngEncoder();
  #model: PreparedModelInfo | undefined;
  #running: AbortController | undefined;

  constructor(
    private readonly client: EngineClient,
    private readonly gallery: GalleryStore,
    private readonly status: StatusLine,
    private readonly handlers: GenerationHandlers,
  ) {
    this.#form = new GenerateForm({ onGenerate: (s, count) => void this.generate(s, undefined, count), onCancel: () => this.cancel() });
    this.#result = new ResultView({ onRerun: (s) => this.rerun(s), onRedrawBelow: (image) => this.redrawBelow(image) });
    this.#notice = h('p', { class: 'engine-notice', hidden: true });
    this.element = h('section', { id: 'create', class: 'panel', 'aria-labelledby': 'create-title' },
      h('h2', { id: 'create-title' }, 'Create'),
      this.#notice,
      this.#form.element,
      this.#progress.element,
      this.#grid.element,
      this.#preview.element,
      this.#result.element);
    this.#form.setReady(false);
  }

  get busy(): boolean {
    return this.#running !== undefined;
  }

  async modelReady(info: PreparedModelInfo): Promise<void> {
    this.#model = info;
    this.#preview.setColourMap(info.preview);
    this.#grid.setColourMap(info.preview);
    this.#form.setReady(true);
    this.status.show(`Ready: type a prompt and press Generate.`, 'ok');
    if (info.backend !== 'webgpu') await this.#measureCpu();
  }

  modelGone(): void {
    this.#model = undefined;
    this.#form.setReady(false);
  }

  cancel(): void {
    this.#running?.abort();
  }

  rerun(settings: GenerationSettings): void {
    this.#form.fill(settings);
    if (this.#model && !this.#running) void this.generate(settings);
  }

  async open(entry: GalleryEntry): Promise<void> {
    this.#form.fill(entry.settings);
    this.#batch = [];
    this.#grid.hide();
    await this.#preview.showBlob(entry.png, entry.settings.prompt);
    this.#result.show({
      png: entry.png,
      settings: entry.settings,
      timings: entry.timings,
      model: entry.model,
      backend: entry.backend,
      acceptedPerRun: entry.acceptedPerRun,
      ...(entry.codes ? { codes: entry.codes } : {}),
      ...(entry.keptRows ? { keptRows: entry.keptRows } : {}),
      ...(entry.image ? { image: entry.image } : {}),
      ...(entry.imagesPerPass ? { imagesPerPass: entry.imagesPerPass } : {}),
    });
    this.#showRowLine(entry.settings.size, entry.codes);
    this.#preview.element.scrollIntoView({ block: 'nearest' });
  }

  /**
   * Redraw below a row: the image's rows above the row line are kept (fed as given) and the rest
   * is drawn again with a new seed; the kept part stays on screen while the rest forms. With an
   * Images count above 1, that many images are drawn below the same rows (seeds s, s + 1, …).
   */
  redrawBelow(image: ShownImage & { codes: Int32Array }): void {
    const rows = this.#rowPicker.rows;
    if (!this.#rowPicker.visible || rows < 1) return;
    const count = this.#form.readCount();
    if (count === null) return;
    const settings = { ...image.settings, seed: randomSeed() };
    this.#form.fill(settings);
    void this.generate(settings, { codes: image.codes, rows }, count);
  }

  /** `count` images of `settings` (image i with seed + i), below `keep`'s rows when given. */
  async generate(settings: GenerationSettings, keep?: KeptRows, count = 1): Promise<void> {
    if (!this.#model || this.#running) return;
    const running = new AbortController();
    this.#running = running;
    this.#form.setBusy(true);
    this.#result.hide();
    this.#rowPicker.hide();
    const side = settings.size / 16;
    if (count > 1) {
      // The images form side by side; the stage waits for the one chosen as the result.
      this.#grid.start(count, side);
      this.#preview.clear();
    } else {
      this.#grid.hide();
      if (keep) this.#preview.startBelow(side, keep.rows);
      else this.#preview.start(side);
    }
    const what = count > 1 ? `${count} images` : '';
    this.status.show(keep ? `Redrawing below row ${keep.rows}${what ? ` (${what})` : ''}…` : `Generating${what ? ` ${what}` : ''}…`, 'busy');
    const request = { ...settings, ...(keep ? { keep } : {}) };
    const images = new ImagesProgress(count);
    const started = performance.now();
    try {
      const onProgress = (p: Parameters<typeof describeGeneration>[0]) => {
        if (running.signal.aborted) return;
        if (count === 1) {
          this.#progress.show(describeGeneration(p));
          if (p.codes) this.#preview.paint(p.codes, p.codes.length);
          return;
        }
        this.#progress.show(images.update(p));
        if (p.codes) this.#grid.paint(p.image ?? 0, p.codes, p.codes.length);
      };
      const options = { signal: running.signal, onProgress };
      const results = count > 1 ? await this.client.generateImages({ ...request, count }, options) : [await this.client.generate(request, options)];
      await this.#finish(results, performance.now() - started);
    } catch (e) {
      await this.#failed(e, running.signal.aborted);
    } finally {
      this.#running = undefined;
      this.#progress.hide();
      this.#form.setBusy(false);
    }
  }

  /**
   * Shows the request's images (the first as the current result) and keeps each in the gallery as
   * its own entry, with its own seed. Every image is complete here: a cancel before this point
   * keeps none of them.
   */
  async #finish(results: GenerationResult[], elapsedMs: number): Promise<void> {
    this.#batch = results.map((result) => ({ result }));
    const several = results.length > 1;
    if (several) {
      results.forEach((r, i) => this.#grid.showImage(i, r.rgba, r.width, r.height, `Image ${i + 1} of ${results.length}, seed ${r.settings.seed}`));
    }
    this.#select(0);
    const first = results[0]!.settings.seed;
    const last = results.at(-1)!.settings.seed;
    const done = several ? `Done: ${results.length} images in ${formatDuration(elapsedMs)} (seeds ${first}–${last}).` : `Done in ${formatDuration(results[0]!.timings.totalMs)} (seed ${first}).`;
    const createdAt = Date.now();
    for (const [i, item] of this.#batch.entries()) {
      const r = item.result;
      const png = pngBlob(await this.#pngEncoder.encode(r.rgba, r.width, r.height, r.settings, r.model, r.keptRows));
      const shown: ShownImage = {
        png,
        settings: r.settings,
        timings: r.timings,
        model: r.model,
        backend: r.stats.backend,
        ...(r.stats.sjd ? { acceptedPerRun: r.stats.acceptedPerRun } : {}),
        ...(r.stats.decoderFallback ? { decoderFallback: r.stats.decoderFallback.reason } : {}),
        codes: r.codes,
        ...(r.keptRows ? { keptRows: r.keptRows } : {}),
        ...(r.image ? { image: r.image } : {}),
        ...(r.stats.imagesPerPass ? { imagesPerPass: r.stats.imagesPerPass } : {}),
      };
      item.shown = shown;
      // The result view follows the chosen image, once its PNG (the download) exists.
      if (this.#batch[this.#selected] === item) this.#result.show(shown);
      // "Done" once the first image's settings and download link are there (tests wait on it).
      if (i === 0) this.status.show(done, 'ok');
      try {
        const entry = await this.gallery.add({ ...shown, codes: r.codes, backend: r.stats.backend, width: r.width, height: r.height, createdAt });
        this.handlers.onSaved(entry);
      } catch (e) {
        this.status.show(`Done, but ${several ? `image ${i + 1}` : 'the image'} could not be kept in the gallery: ${messageOf(e)}`, 'warning');
      }
    }
  }

  /** Makes image `index` of the last request the current result: on the stage, its facts and actions. */
  #select(index: number): void {
    const item = this.#batch[index];
    if (!item) return;
    this.#selected = index;
    const r = item.result;
    this.#grid.select(index);
    this.#preview.showImage(r.rgba, r.width, r.height, r.settings.prompt); // copies the pixels
    if (item.shown) this.#result.show(item.shown);
    else this.#result.hide();
    this.#showRowLine(r.settings.size, r.codes);
  }

  /** The row line over an image whose codes are known (a grid of size/16 rows), else none. */
  #showRowLine(size: number, codes: Int32Array | undefined): void {
    const side = size / 16;
    if (codes && codes.length === side * side) this.#rowPicker.show(side);
    else this.#rowPicker.hide();
  }

  async #failed(e: unknown, cancelled: boolean): Promise<void> {
    this.#grid.stop(cancelled || isAbort(e) ? 'Cancelled: none of these images was kept' : 'Failed');
    if (cancelled || isAbort(e)) {
      this.#preview.stop('Cancelled');
      this.status.show('Cancelled. The engine is ready for the next image.', 'info');
      return;
    }
    this.#preview.stop('Failed');
    if (e instanceof SimpleARError && (e.code === 'InvalidSettings' || e.code === 'PromptTooLong') && this.#form.showError(e)) {
      this.#grid.hide(); // refused before any work: no tiles to look at
      this.status.show('Please check the highlighted setting.', 'warning');
      return;
    }
    if (e instanceof SimpleARError && (e.code === 'DeviceLost' || e.code === 'GpuOutOfMemory')) {
      const what = e.code === 'DeviceLost' ? 'The GPU stopped responding (device lost).' : 'The GPU ran out of memory.';
      const advice = e.code === 'GpuOutOfMemory' ? ' A smaller size needs less memory; closing other GPU-heavy tabs helps too.' : '';
      this.status.show(`${what} ${e.message} Loading the model again from this browser’s storage…`, 'error');
      this.modelGone();
      try {
        await this.handlers.onDeviceLost();
        this.status.show(`${what} The engine was restarted: press Generate to try again.${advice}`, 'warning');
      } catch (again) {
        this.status.show(`${what} The engine could not be restarted: ${messageOf(again)}. Reload the page to try again.`, 'error');
      }
      return;
    }
    this.status.show(`The image could not be generated: ${messageOf(e)}`, 'error');
  }

  /** No WebGPU: measure this device's CPU speed with a tiny image and show honest estimates. */
  async #measureCpu(): Promise<void> {
    this.#notice.hidden = false;
    this.#notice.textContent = 'No WebGPU: images are made on the CPU. Measuring this device’s speed with a 4 × 4-token test image…';
    this.#form.setReady(false);
    const running = new AbortController();
    this.#running = running;
    this.#form.setBusy(true);
    let works = true;
    try {
      this.#notice.textContent = `No WebGPU: images are made on the CPU. ${estimateText(await measureSpeed(this.client, running.signal))}`;
    } catch (e) {
      works = running.signal.aborted;
      this.#notice.textContent = works
        ? 'No WebGPU: images are made on the CPU, much more slowly than on a GPU (the speed test was cancelled).'
        : `No WebGPU, and the CPU engine failed its speed test: ${messageOf(e)}. This browser cannot generate images here; a browser with WebGPU (Chrome or Edge 113+ on desktop, Chrome 121+ on Android) can.`;
      if (!works) this.status.show('This browser cannot generate images: see the note above the prompt.', 'error');
    } finally {
      this.#running = undefined;
      this.#form.setBusy(false);
      this.#form.setReady(works && this.#model !== undefined);
    }
  }
}
