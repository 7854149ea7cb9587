// The widget's DOM: prompt form, image, progress bar, status line and the storage notice.
// Renders what it is told; the wiring lives in main.ts.
import type { ProgressPhase } from '../embed/protocol.ts';

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
  #imageUrl: string | undefined;

  constructor(root: ParentNode = document) {
    const q = <T extends Element>(selector: string) => root.querySelector<T>(selector)!;
    this.form = q('.w-form');
    this.prompt = q('.w-form input[name="prompt"]');
    this.generateButton = q('.w-generate');
    this.cancelButton = q('.w-cancel');
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

  progress(phase: ProgressPhase, done: number, total: number): void {
    if (total > 0) {
      this.#bar.max = total;
      this.#bar.value = Math.min(done, total);
    }
    this.#progressText.textContent = [PHASE_LABEL[phase], formatAmount(phase, done, total)].filter(Boolean).join(' · ');
    this.#progress.dataset.phase = phase;
  }

  idle(): void {
    this.generateButton.disabled = false;
    this.cancelButton.hidden = true;
    this.#progress.hidden = true;
  }

  image(png: Blob, caption: string): void {
    if (this.#imageUrl) URL.revokeObjectURL(this.#imageUrl);
    this.#imageUrl = URL.createObjectURL(png);
    this.#image.src = this.#imageUrl;
    this.#image.alt = caption;
    this.#image.hidden = false;
    this.#caption.textContent = caption;
  }

  storageNotice(text: string, offerRequest: boolean): void {
    this.#storage.hidden = false;
    this.#storageText.textContent = text;
    this.storageButton.hidden = !offerRequest;
  }
}
