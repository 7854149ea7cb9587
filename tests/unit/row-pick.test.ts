// "Redraw below" on the page: the row a pointer over the image points at, and the arrow keys.
import { describe, expect, it } from 'vitest';
import { rowFromPointer, rowLineFraction, stepRow } from '../../src/app/row-pick.ts';

describe('row from pointer', () => {
  const box = { top: 100, height: 512 }; // a 32-row grid shown 512 px tall: 16 px per row

  it('is the nearest row boundary to the pointer', () => {
    expect(rowFromPointer(100 + 16 * 10, box, 32)).toBe(10);
    expect(rowFromPointer(100 + 16 * 10 + 7, box, 32)).toBe(10);
    expect(rowFromPointer(100 + 16 * 10 + 9, box, 32)).toBe(11);
    expect(rowFromPointer(100 + 256, box, 32)).toBe(16);
    // Another scale: a 4-row grid shown 200 px tall.
    expect(rowFromPointer(100 + 150, { top: 100, height: 200 }, 4)).toBe(3);
  });

  it('keeps at least one row and redraws at least one, wherever the pointer goes', () => {
    expect(rowFromPointer(0, box, 32)).toBe(1);
    expect(rowFromPointer(100, box, 32)).toBe(1);
    expect(rowFromPointer(100 + 512, box, 32)).toBe(31);
    expect(rowFromPointer(5000, box, 32)).toBe(31);
    expect(rowFromPointer(NaN, box, 32)).toBe(1);
  });

  it('has nothing to pick on a one-row grid or an image not laid out yet', () => {
    expect(rowFromPointer(150, box, 1)).toBe(0);
    expect(rowFromPointer(150, { top: 100, height: 0 }, 32)).toBe(0);
  });

  it('arrow keys move one row within 1 … side − 1; the line sits at rows / side of the height', () => {
    expect(stepRow(5, 1, 8)).toBe(6);
    expect(stepRow(5, -1, 8)).toBe(4);
    expect(stepRow(7, 1, 8)).toBe(7);
    expect(stepRow(1, -1, 8)).toBe(1);
    expect(rowLineFraction(3, 4)).toBe(0.75);
    // The line's position maps back to its row.
    for (let rows = 1; rows < 32; rows++) expect(rowFromPointer(box.top + rowLineFraction(rows, 32) * box.height, box, 32)).toBe(rows);
  });
});
