// A progress display: headline, bar and the measured details. Reusable (no global state): the
// page uses one for preparing the model and one for generating; the widget may embed its own.
import { h } from './dom.ts';
import type { ProgressReport } from './progress-text.ts';

export class ProgressView {
  readonly element: HTMLElement;
  readonly #title: HTMLElement;
  readonly #bar: HTMLProgressElement;
  readonly #detail: HTMLElement;

  constructor(label: string) {
    // The headline is the live region: it changes per phase/row, not per token, so screen
    // readers hear progress without a flood.
    this.#title = h('p', { class: 'progress-title', 'aria-live': 'polite' });
    this.#bar = h('progress', { class: 'progress-bar', 'aria-label': label, max: 1 });
    this.#detail = h('p', { class: 'progress-detail' });
    this.element = h('div', { class: 'progress', hidden: true }, this.#title, this.#bar, this.#detail);
  }

  show(report: ProgressReport): void {
    this.element.hidden = false;
    if (this.#title.textContent !== report.title) this.#title.textContent = report.title;
    this.#detail.textContent = report.detail;
    if (report.fraction === null) this.#bar.removeAttribute('value'); // indeterminate
    else this.#bar.value = report.fraction;
    this.element.dataset.fraction = report.fraction === null ? '' : report.fraction.toFixed(4);
  }

  hide(): void {
    this.element.hidden = true;
  }
}
