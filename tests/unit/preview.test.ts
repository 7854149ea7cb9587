import { describe, expect, it } from 'vitest';
import { fitPreviewMap, fsqVector, paintTokens, previewPalette } from '../../src/core/model/preview.ts';

describe('FSQ vectors (docs/model.md#fsq-inverse)', () => {
  it('maps the extreme codes as the reference does', () => {
    expect([...fsqVector(0)]).toEqual([-1, -1, -1, -1, -1, -1]);
    expect([...fsqVector(63999)]).toEqual([0.75, 0.75, 0.75, 1, 1, 1]);
    // channel 0 is the least significant digit (basis 1), channel 3 has basis 512
    expect([...fsqVector(1)]).toEqual([-0.75, -1, -1, -1, -1, -1]);
    expect([...fsqVector(512)]).toEqual([-1, -1, -1, -0.5, -1, -1]);
  });
});

describe('preview map', () => {
  it('recovers an affine colour map from a decoded grid', () => {
    // A synthetic "decoder" whose blocks are an exact affine function of the FSQ vector.
    const truth = [40, 0, 10, 0, 0, 0, 128, 0, 30, 0, -20, 0, 0, 128, 0, 0, 0, 0, 25, 25, 128];
    const h = 8;
    const w = 8;
    const codes = Array.from({ length: h * w }, (_, i) => (i * 7919) % 64000);
    const rgba = new Uint8Array(h * 16 * w * 16 * 4);
    codes.forEach((code, i) => {
      const v = fsqVector(code);
      const col = [0, 1, 2].map((k) => truth[k * 7 + 6]! + [0, 1, 2, 3, 4, 5].reduce((a, j) => a + truth[k * 7 + j]! * v[j]!, 0));
      const r = Math.floor(i / w);
      const c = i % w;
      for (let y = 0; y < 16; y++) {
        for (let x = 0; x < 16; x++) {
          const p = ((r * 16 + y) * w * 16 + c * 16 + x) * 4;
          for (let k = 0; k < 3; k++) rgba[p + k] = Math.round(col[k]! * 256 / 256);
          rgba[p + 3] = 255;
        }
      }
    });
    const map = fitPreviewMap(codes, h, w, rgba);
    const palette = previewPalette(map);
    const painted = new Uint8ClampedArray(codes.length * 4);
    paintTokens(codes, codes.length, palette, painted);
    for (let i = 0; i < codes.length; i++) {
      const p = ((Math.floor(i / w) * 16) * w * 16 + (i % w) * 16) * 4;
      for (let k = 0; k < 3; k++) expect(Math.abs(painted[i * 4 + k]! - rgba[p + k]!)).toBeLessThanOrEqual(2);
    }
  });
});
