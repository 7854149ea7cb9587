// "Redraw below a row": which latent row boundary a pointer on the image points at. Pure, so the
// page's row line and its tests agree on the mapping.

/**
 * The rows to keep when the pointer is at `clientY` over an image box (`top`, `height` in the same
 * CSS pixels) of `side` latent rows: the nearest row boundary, clamped to 1 … side − 1, so at least
 * one row is kept and at least one redrawn. 0 when the grid has a single row (nothing to redraw below).
 */
export function rowFromPointer(clientY: number, box: { top: number; height: number }, side: number): number {
  if (side < 2 || !(box.height > 0)) return 0;
  const boundary = Math.round(((clientY - box.top) / box.height) * side);
  return Math.min(side - 1, Math.max(1, Number.isFinite(boundary) ? boundary : 1));
}

/** The row a keyboard arrow moves to: one row up or down, within 1 … side − 1. */
export function stepRow(rows: number, delta: number, side: number): number {
  if (side < 2) return 0;
  return Math.min(side - 1, Math.max(1, rows + delta));
}

/** The line's position over the image, as a fraction of its height from the top. */
export const rowLineFraction = (rows: number, side: number): number => (side > 0 ? rows / side : 0);
