// The row line over the image for "Redraw below": a horizontal line the user drags (or moves
// with the arrow keys) to the latent row above which the image is kept. Shown over the result
// or an opened gallery image when its tokens are known.
import { h } from './dom.ts';
import { rowFromPointer, rowLineFraction, stepRow } from './row-pick.ts';

export class RowPicker {
  readonly element: HTMLElement;
  readonly #label: HTMLElement;
  #side = 0;
  #rows = 0;
  #dragging = false;

  /** `frame`: the box the image fills, which the line is positioned in. */
  constructor(private readonly frame: HTMLElement, private readonly onChange?: (rows: number) => void) {
    this.#label = h('span', { class: 'row-line-label' });
    this.element = h('div', {
      class: 'row-line',
      hidden: true,
      role: 'slider',
      tabindex: 0,
      'aria-label': 'Rows to keep: drag the line, or use the arrow keys',
      onkeydown: (e) => this.#key(e as KeyboardEvent),
    }, this.#label);
    frame.append(this.element);
    frame.addEventListener('pointerdown', (e) => this.#down(e));
    frame.addEventListener('pointermove', (e) => this.#dragging && this.#moveTo(e.clientY));
    frame.addEventListener('pointerup', () => (this.#dragging = false));
    frame.addEventListener('pointercancel', () => (this.#dragging = false));
  }

  /** The rows currently kept (above the line). */
  get rows(): number {
    return this.#rows;
  }

  /** Shows the line over an image of `side` latent rows, at half height. */
  show(side: number): void {
    this.#side = side;
    this.element.hidden = side < 2;
    this.#set(Math.max(1, Math.floor(side / 2)));
  }

  hide(): void {
    this.element.hidden = true;
    this.#side = 0;
  }

  get visible(): boolean {
    return !this.element.hidden;
  }

  #down(e: PointerEvent): void {
    if (this.element.hidden) return;
    this.#dragging = true;
    this.frame.setPointerCapture?.(e.pointerId);
    this.#moveTo(e.clientY);
    e.preventDefault();
  }

  #moveTo(clientY: number): void {
    const box = this.frame.getBoundingClientRect();
    this.#set(rowFromPointer(clientY, box, this.#side));
  }

  #key(e: KeyboardEvent): void {
    const delta = e.key === 'ArrowUp' ? -1 : e.key === 'ArrowDown' ? 1 : 0;
    if (!delta) return;
    this.#set(stepRow(this.#rows, delta, this.#side));
    e.preventDefault();
  }

  #set(rows: number): void {
    this.#rows = rows;
    this.element.style.top = `${rowLineFraction(rows, this.#side) * 100}%`;
    this.element.setAttribute('aria-valuemin', '1');
    this.element.setAttribute('aria-valuemax', String(Math.max(1, this.#side - 1)));
    this.element.setAttribute('aria-valuenow', String(rows));
    this.#label.textContent = `keep ${rows} of ${this.#side} rows`;
    this.onChange?.(rows);
  }
}
