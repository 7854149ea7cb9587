// The image area: tokens painted as they arrive (one pixel per token, scaled up by CSS), then
// the decoded image. Reusable (no global state). The colours come from the model's fitted
// preview map (src/core/model/preview.ts); a model without one gets a rough fixed map, and says so.
import { paintTokens, previewPalette, type PreviewMap } from '../core/model/preview.ts';
import { h } from './dom.ts';

/** FSQ channels 0–2 straight to R, G, B: structure without the model's real colours. */
export const ROUGH_MAP: PreviewMap = [96, 0, 0, 0, 0, 0, 128, 0, 96, 0, 0, 0, 0, 128, 0, 0, 96, 0, 0, 0, 128];

export type CanvasState = 'empty' | 'preview' | 'image';

export class PreviewCanvas {
  readonly element: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  /** The box the canvas fills: overlays (the row line) are placed in it. */
  readonly frame: HTMLElement;
  readonly #caption: HTMLElement;
  #palette: Uint8ClampedArray | undefined;
  #fitted = false;
  #pixels: ImageData | undefined;
  /** Redraw below a row: latent rows kept from the image on screen, and the token grid drawn
   * scaled below them (the canvas is at image resolution then). */
  #keptRows = 0;
  #tokens: HTMLCanvasElement | undefined;

  constructor() {
    this.canvas = h('canvas', { class: 'stage-canvas', width: 1, height: 1, role: 'img', 'aria-label': 'No image yet' });
    this.#caption = h('p', { class: 'stage-caption' });
    this.frame = h('div', { class: 'stage-frame' }, this.canvas);
    this.element = h('figure', { class: 'stage', 'data-state': 'empty' }, this.frame, this.#caption);
  }

  get state(): CanvasState {
    return this.element.dataset.state as CanvasState;
  }

  /** The colour map of the loaded model (undefined: none fitted). */
  setColourMap(map: PreviewMap | undefined): void {
    this.#fitted = map !== undefined;
    this.#palette = previewPalette(map ?? ROUGH_MAP);
  }

  /** Starts a live preview of a side × side token grid. */
  start(side: number): void {
    this.#palette ??= previewPalette(ROUGH_MAP);
    this.canvas.width = side;
    this.canvas.height = side;
    this.#pixels = new ImageData(side, side);
    this.#keptRows = 0;
    this.#setState('preview', 'Image forming, row by row', this.#fitted ? 'Live preview' : 'Live preview (rough colours: this model has no fitted colour map)');
    this.canvas.getContext('2d')!.clearRect(0, 0, side, side);
  }

  /**
   * Starts a live preview of a side × side grid below `rows` kept latent rows: the image on screen
   * (at 16 px per token) keeps its top rows, and the tokens below are painted as 16 × 16 blocks.
   */
  startBelow(side: number, rows: number): void {
    this.#palette ??= previewPalette(ROUGH_MAP);
    const width = side * 16;
    // The kept part is copied canvas to canvas (no readback to the CPU) before the resize clears it.
    let kept: HTMLCanvasElement | undefined;
    if (this.state === 'image' && this.canvas.width === width && rows > 0) {
      kept = h('canvas', { width, height: rows * 16 });
      kept.getContext('2d')!.drawImage(this.canvas, 0, 0);
    }
    this.canvas.width = width; // clears the canvas
    this.canvas.height = width;
    const context = this.canvas.getContext('2d')!;
    if (kept) context.drawImage(kept, 0, 0);
    this.#pixels = new ImageData(side, side);
    this.#keptRows = rows;
    this.#tokens ??= document.createElement('canvas');
    this.#tokens.width = side;
    this.#tokens.height = side;
    this.#setState('preview', 'Image forming below the kept rows', this.#fitted ? 'Live preview below the kept rows' : 'Live preview below the kept rows (rough colours)');
  }

  /** Paints the first `count` codes (raster order). */
  paint(codes: ArrayLike<number>, count: number): void {
    if (!this.#pixels || !this.#palette) return;
    paintTokens(codes, Math.min(count, this.#pixels.width * this.#pixels.height), this.#palette, this.#pixels.data);
    if (this.#keptRows === 0 || !this.#tokens) {
      this.canvas.getContext('2d')!.putImageData(this.#pixels, 0, 0);
      return;
    }
    // Below kept rows: the token grid scaled up under the kept part of the image.
    const side = this.#pixels.width;
    const k = this.#keptRows;
    this.#tokens.getContext('2d')!.putImageData(this.#pixels, 0, 0);
    const context = this.canvas.getContext('2d')!;
    context.imageSmoothingEnabled = false;
    context.drawImage(this.#tokens, 0, k, side, side - k, 0, k * 16, side * 16, (side - k) * 16);
  }

  /** Shows a decoded image (RGBA bytes). */
  showImage(rgba: Uint8Array, width: number, height: number, description: string): void {
    this.canvas.width = width;
    this.canvas.height = height;
    const data = new ImageData(new Uint8ClampedArray(rgba.buffer as ArrayBuffer, rgba.byteOffset, rgba.byteLength).slice(), width, height);
    this.canvas.getContext('2d')!.putImageData(data, 0, 0);
    this.#pixels = undefined;
    this.#setState('image', description, '');
  }

  /** Shows a stored image (a PNG from the gallery). */
  async showBlob(png: Blob, description: string): Promise<void> {
    const bitmap = await createImageBitmap(png);
    this.canvas.width = bitmap.width;
    this.canvas.height = bitmap.height;
    this.canvas.getContext('2d')!.drawImage(bitmap, 0, 0);
    bitmap.close();
    this.#pixels = undefined;
    this.#setState('image', description, '');
  }

  /** Nothing on the stage (hidden): the images of a request for several form in the grid instead. */
  clear(): void {
    this.canvas.width = 1;
    this.canvas.height = 1;
    this.#pixels = undefined;
    this.#keptRows = 0;
    this.#setState('empty', 'No image yet', '');
  }

  /** Leaves a cancelled or failed preview on screen but marks it as such. */
  stop(caption: string): void {
    if (this.state === 'preview') this.#caption.textContent = caption;
  }

  #setState(state: CanvasState, label: string, caption: string): void {
    this.element.dataset.state = state;
    this.canvas.setAttribute('aria-label', label);
    this.#caption.textContent = caption;
  }
}
