// What is known about the image on screen: its settings (the seed always), the time it took, and
// what to do with it: download as PNG (settings inside), copy the settings, re-run them, or
// redraw it below the row line (when its tokens are known).
import type { GenerationSettings } from '../core/engine/settings.ts';
import type { GenerationTimings } from '../core/engine/types.ts';
import { h } from './dom.ts';
import { formatDuration } from './format.ts';
import { imageFileName, settingsJson } from './image-export.ts';

export interface ShownImage {
  png: Blob;
  settings: GenerationSettings;
  timings: GenerationTimings;
  model: string;
  backend?: string;
  /** With SJD: tokens accepted per window verification. */
  acceptedPerRun?: number;
  /** Why the f16 decoder's result was discarded and the image decoded again in f32. */
  decoderFallback?: string;
  /** Its visual codes (raster order): needed to redraw below a row. Older gallery images lack them. */
  codes?: Int32Array;
  /** Latent rows it kept from the image it was redrawn from. */
  keptRows?: number;
  /** Where it sits in a request for several images (the "Images" count). */
  image?: { index: number; count: number };
  /** Images drawn together in its pass (absent or 1: drawn on its own). */
  imagesPerPass?: number;
}

export interface ResultViewHandlers {
  onRerun(settings: GenerationSettings): void;
  /** Redraw the image below the row line, with a new seed. */
  onRedrawBelow(image: ShownImage & { codes: Int32Array }): void;
}

export class ResultView {
  readonly element: HTMLElement;
  readonly #facts: HTMLElement;
  readonly #download: HTMLAnchorElement;
  readonly #copied: HTMLElement;
  readonly #redraw: HTMLButtonElement;
  #url: string | undefined;
  #shown: ShownImage | undefined;

  constructor(handlers: ResultViewHandlers) {
    this.#facts = h('dl', { class: 'result-facts' });
    this.#download = h('a', { class: 'button download', href: '#' }, 'Download PNG');
    this.#copied = h('span', { class: 'copied', role: 'status' });
    const copy = h('button', { type: 'button', class: 'copy-settings secondary', onclick: () => void this.#copy() }, 'Copy settings');
    const rerun = h('button', { type: 'button', class: 'rerun secondary', onclick: () => this.#shown && handlers.onRerun(this.#shown.settings) }, 'Re-run');
    this.#redraw = h('button', {
      type: 'button',
      class: 'redraw-below secondary',
      title: 'Keeps the image above the line on the image and draws the rest again with a new seed',
      onclick: () => {
        const shown = this.#shown;
        if (shown?.codes) handlers.onRedrawBelow({ ...shown, codes: shown.codes });
      },
    }, 'Redraw below');
    this.element = h('section', { class: 'result', hidden: true, 'aria-label': 'The image’s settings' },
      this.#facts, h('div', { class: 'actions' }, this.#download, copy, rerun, this.#redraw, this.#copied));
  }

  show(image: ShownImage): void {
    this.#shown = image;
    if (this.#url) URL.revokeObjectURL(this.#url);
    this.#url = URL.createObjectURL(image.png);
    this.#download.href = this.#url;
    this.#download.download = imageFileName(image.settings);
    const s = image.settings;
    const rows: [string, string, string][] = [
      ['prompt', 'Prompt', s.prompt],
      ['seed', 'Seed', String(s.seed)],
      ...(image.image
        ? [['image', 'Image', `${image.image.index + 1} of ${image.image.count} of one Generate (seed + ${image.image.index}), ${(image.imagesPerPass ?? 1) > 1 ? 'drawn together in one pass' : 'drawn one after another'}`] as [string, string, string]]
        : []),
      ...(image.keptRows ? [['kept', 'Kept rows', `the top ${image.keptRows} of ${s.size / 16} rows, from an earlier image`] as [string, string, string]] : []),
      ['size', 'Size', `${s.size} × ${s.size}`],
      ['sampling', 'Sampling', `CFG ${s.cfg}, temperature ${s.temperature}, top-k ${s.topK}, top-p ${s.topP}${s.repetitionPenalty !== undefined && s.repetitionPenalty !== 1 ? `, repetition penalty ${s.repetitionPenalty}` : ''}${s.sjd ? `, SJD window ${s.sjd.window}` : ''}`],
      ['negative', 'Negative prompt', s.negativePrompt === undefined ? 'SimpleAR’s default' : s.negativePrompt === '' ? 'none (the null condition)' : s.negativePrompt],
      ['time', 'Time taken', `${formatDuration(image.timings.totalMs)} (prompt ${formatDuration(image.timings.prefillMs)}, tokens ${formatDuration(image.timings.decodeMs)}, pixels ${formatDuration(image.timings.vqMs)})`],
      ...(s.sjd && image.acceptedPerRun !== undefined
        ? [['sjd', 'SJD', `${image.acceptedPerRun.toFixed(2)} tokens accepted per run (window ${s.sjd.window})`] as [string, string, string]]
        : []),
      ['model', 'Model', `${image.model}${image.backend ? ` on ${image.backend}` : ''}`],
      ...(image.decoderFallback
        ? [['decoder', 'Pixels', `decoded again in f32: the f16 decoder overflowed (${image.decoderFallback})`] as [string, string, string]]
        : []),
    ];
    this.#facts.replaceChildren(...rows.map(([key, label, value]) => h('div', { 'data-result': key }, h('dt', {}, label), h('dd', {}, value))));
    this.#copied.textContent = '';
    this.#redraw.hidden = !image.codes;
    this.element.hidden = false;
  }

  hide(): void {
    this.element.hidden = true;
  }

  async #copy(): Promise<void> {
    if (!this.#shown) return;
    try {
      await navigator.clipboard.writeText(settingsJson(this.#shown.settings, this.#shown.model));
      this.#copied.textContent = 'Settings copied.';
    } catch {
      this.#copied.textContent = 'The browser did not allow copying.';
    }
  }
}
