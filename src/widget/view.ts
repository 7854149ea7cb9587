// The widget's DOM: prompt form, image (or a small grid of a request's images), progress bar,
// status line and the storage notice. Renders what it is told; the wiring lives in main.ts.
import type { ProgressPhase } from '../embed/protocol.ts';
import type { ImageOf } from './runner.ts';

/** One image of a result, as the view shows it. */
export interface ShownImage {
  png: Blob;
  caption: string;
}

/** Grid columns for n images: 2 side by side up to 4 images (2×2), then 3 (up to 3×3). */
export const gridColumns = (n: number): number => (n <= 4 ? 2 : 3);

const PHASE_LABEL: Record<ProgressPhase, string> = {
  queued: 'Waiting for the previous image',
  download: 'Downloading the model',
  convert: 'Preparing the model',
  verify: 'Checking the model',
  load: 'Loading the model',
  prefill: 'Reading the prompt',
  decode: 'Drawing',
  'vq-decode': 'Decoding the image',
};

function formatAmount(phase: ProgressPhase, done: number, total: number): string {
  if (phase === 'download') return `${(done / 2 ** 20).toFixed(1)} / ${(total / 2 ** 20).toFixed(1)} MiB`;
  return total > 1 ? `${done} / ${total}` : '';
}

export class WidgetView {
  readonly form: HTMLFormElement;
  readonly prompt: HTMLInputElement;
  readonly generateButton: HTMLButtonElement;
  readonly cancelButton: HTMLButtonElement;
  readonly storageButton: HTMLButtonElement;
  readonly #image: HTMLImageElement;
  readonly #caption: HTMLElement;
  readonly #progress: HTMLElement;
  readonly #bar: HTMLProgressElement;
  readonly #progressText: HTMLElement;
  readonly #status: HTMLElement;
  readonly #storage: HTMLElement;
  readonly #storageText: HTMLElement;
  readonly #stage: HTMLElement;
  /** The grid of a request's images (count > 1), made on first use: embed.html has one <img>. */
  #grid: HTMLElement | undefined;
  /** Object URLs of what is on screen, revoked when it is replaced. */
  #urls: string[] = [];

  constructor(root: ParentNode = document) {
    const q = <T extends Element>(selector: string) => root.querySelector<T>(selector)!;
    this.form = q('.w-form');
    this.prompt = q('.w-form input[name="prompt"]');
    this.generateButton = q('.w-generate');
    this.cancelButton = q('.w-cancel');
    this.#stage = q('.w-stage');
    this.#image = q('.w-image');
    this.#caption = q('.w-caption');
    this.#progress = q('.w-progress');
    this.#bar = q('.w-progress progress');
    this.#progressText = q('.w-progress-text');
    this.#status = q('.w-status');
    this.#storage = q('.w-storage');
    this.#storageText = q('.w-storage-text');
    this.storageButton = q('.w-storage-request');
  }

  status(text: string, tone: 'info' | 'error' = 'info'): void {
    this.#status.textContent = text;
    this.#status.dataset.tone = tone;
  }

  /** A generation started (from the form or from the host). */
  running(prompt: string): void {
    this.prompt.value = prompt;
    this.generateButton.disabled = true;
    this.cancelButton.hidden = false;
    this.#progress.hidden = false;
    this.#bar.removeAttribute('value');
    this.#progressText.textContent = '';
    this.status(`Generating “${prompt}”…`);
  }

  progress(phase: ProgressPhase, done: number, total: number, of?: ImageOf): void {
    if (total > 0) {
      this.#bar.max = total;
      this.#bar.value = Math.min(done, total);
    }
    const which = of ? `image ${of.image + 1} of ${of.count}` : '';
    this.#progressText.textContent = [PHASE_LABEL[phase], which, formatAmount(phase, done, total)].filter(Boolean).join(' · ');
    this.#progress.dataset.phase = phase;
  }

  idle(): void {
    this.generateButton.disabled = false;
    this.cancelButton.hidden = true;
    this.#progress.hidden = true;
  }

  /**
   * A request's images: one fills the stage as it always has; several go in a small grid (each
   * with its own caption as alt text and title) under one `caption`.
   */
  images(images: readonly ShownImage[], caption: string): void {
    for (const url of this.#urls) URL.revokeObjectURL(url);
    this.#urls = images.map((image) => URL.createObjectURL(image.png));
    if (images.length === 1) {
      if (this.#grid) this.#grid.hidden = true;
      this.#image.src = this.#urls[0]!;
      this.#image.alt = images[0]!.caption;
      this.#image.hidden = false;
    } else {
      this.#image.hidden = true;
      this.#image.removeAttribute('src');
      const grid = this.#gridElement();
      grid.style.setProperty('--w-columns', String(gridColumns(images.length)));
      grid.replaceChildren(
        ...images.map((image, i) => {
          const img = document.createElement('img');
          img.className = 'w-grid-image';
          img.src = this.#urls[i]!;
          img.alt = image.caption;
          img.title = image.caption;
          return img;
        }),
      );
      grid.hidden = false;
    }
    this.#caption.textContent = caption;
  }

  #gridElement(): HTMLElement {
    if (!this.#grid) {
      this.#grid = document.createElement('div');
      this.#grid.className = 'w-grid';
      this.#stage.insertBefore(this.#grid, this.#caption);
    }
    return this.#grid;
  }

  storageNotice(text: string, offerRequest: boolean): void {
    this.#storage.hidden = false;
    this.#storageText.textContent = text;
    this.storageButton.hidden = !offerRequest;
  }
}
