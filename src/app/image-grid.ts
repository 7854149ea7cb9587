// The images of a request for several (the "Images" count): one tile per image. While they are
// drawn each tile paints its image's tokens as they arrive, in the model's preview colours (as
// the stage does for one image); then each shows its decoded image and is a button that makes it
// the current result (shown large on the stage, with its settings and actions).
import { paintTokens, previewPalette, type PreviewMap } from '../core/model/preview.ts';
import { h } from './dom.ts';
import { ROUGH_MAP } from './preview-canvas.ts';

interface Tile {
  button: HTMLButtonElement;
  canvas: HTMLCanvasElement;
  /** The live preview's token pixels (one per token); undefined once the image is shown. */
  pixels: ImageData | undefined;
}

export type GridState = 'preview' | 'image';

export class ImageGrid {
  readonly element: HTMLElement;
  readonly #list: HTMLElement;
  readonly #caption: HTMLElement;
  #palette: Uint8ClampedArray = previewPalette(ROUGH_MAP);
  #tiles: Tile[] = [];

  constructor(private readonly onSelect: (index: number) => void) {
    this.#list = h('div', { class: 'image-grid-tiles', role: 'group', 'aria-label': 'The images of this request' });
    this.#caption = h('p', { class: 'image-grid-caption' });
    this.element = h('figure', { class: 'image-grid', hidden: true }, this.#list, this.#caption);
  }

  get count(): number {
    return this.#tiles.length;
  }

  /** The colour map of the loaded model (undefined: none fitted, the rough map). */
  setColourMap(map: PreviewMap | undefined): void {
    this.#palette = previewPalette(map ?? ROUGH_MAP);
  }

  /** `count` empty tiles of a side × side token grid, for a live preview. */
  start(count: number, side: number): void {
    this.#tiles = Array.from({ length: count }, (_, i) => {
      const canvas = h('canvas', { class: 'image-tile-canvas', width: side, height: side });
      const button = h('button', {
        type: 'button',
        class: 'image-tile',
        'data-index': i,
        disabled: true,
        'aria-pressed': 'false',
        'aria-label': `Image ${i + 1} of ${count}, forming`,
        onclick: () => this.onSelect(i),
      }, canvas);
      return { button, canvas, pixels: new ImageData(side, side) };
    });
    this.#list.replaceChildren(...this.#tiles.map((t) => t.button));
    this.#caption.textContent = `${count} images forming, row by row`;
    this.element.dataset.state = 'preview' satisfies GridState;
    this.element.hidden = false;
  }

  /** Paints the first `count` codes (raster order) of image `index`. */
  paint(index: number, codes: ArrayLike<number>, count: number): void {
    const tile = this.#tiles[index];
    if (!tile?.pixels) return;
    paintTokens(codes, Math.min(count, tile.pixels.width * tile.pixels.height), this.#palette, tile.pixels.data);
    tile.canvas.getContext('2d')!.putImageData(tile.pixels, 0, 0);
  }

  /** Shows image `index` decoded (RGBA bytes, copied), selectable from now on. */
  showImage(index: number, rgba: Uint8Array, width: number, height: number, label: string): void {
    const tile = this.#tiles[index];
    if (!tile) return;
    tile.canvas.width = width;
    tile.canvas.height = height;
    const data = new ImageData(new Uint8ClampedArray(rgba.buffer as ArrayBuffer, rgba.byteOffset, rgba.byteLength).slice(), width, height);
    tile.canvas.getContext('2d')!.putImageData(data, 0, 0);
    tile.pixels = undefined;
    tile.button.disabled = false;
    tile.button.setAttribute('aria-label', label);
    if (this.#tiles.every((t) => !t.pixels)) {
      this.element.dataset.state = 'image' satisfies GridState;
      this.#caption.textContent = 'Choose an image to see its settings, download it or redraw it';
    }
  }

  /** Marks image `index` as the current result. */
  select(index: number): void {
    this.#tiles.forEach((t, i) => t.button.setAttribute('aria-pressed', String(i === index)));
  }

  /** Leaves a cancelled or failed preview on screen but marks it as such. */
  stop(caption: string): void {
    if (this.element.dataset.state === 'preview') this.#caption.textContent = caption;
  }

  hide(): void {
    this.element.hidden = true;
    this.#tiles = [];
    this.#list.replaceChildren();
  }
}
