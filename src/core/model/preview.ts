// Live preview: each visual code gets a colour from a 6→RGB affine map of its FSQ vector, fitted
// once per model against the real decoder's output. Painting a token is then a table lookup, so
// the preview costs nothing next to generation and can update every row.

/** Cosmos DV FSQ levels (docs/model.md#fsq-inverse); 8·8·8·5·5·5 = 64,000 codes. */
export const FSQ_LEVELS = [8, 8, 8, 5, 5, 5] as const;

/** The FSQ code vector of a visual code (channel 0 = least significant digit). */
export function fsqVector(code: number, out = new Float32Array(6)): Float32Array {
  let rest = code;
  for (let i = 0; i < 6; i++) {
    const L = FSQ_LEVELS[i]!;
    const half = Math.floor(L / 2);
    out[i] = ((rest % L) - half) / half;
    rest = Math.floor(rest / L);
  }
  return out;
}

/** RGB = M · [fsq, 1]: 3 rows of 7 coefficients, in 0..255 units. */
export type PreviewMap = number[];

/**
 * Least-squares fit of the preview map from a decoded grid: `codes` (h×w raster) and the decoder's
 * RGBA image (h·16 × w·16); each code is matched with the mean colour of its 16×16 block.
 */
export function fitPreviewMap(codes: ArrayLike<number>, h: number, w: number, rgba: Uint8Array | Uint8ClampedArray): PreviewMap {
  const W = w * 16;
  const ata = new Float64Array(49);
  const atb = new Float64Array(21);
  const x = new Float64Array(7);
  const v = new Float32Array(6);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      fsqVector(codes[r * w + c]!, v);
      for (let i = 0; i < 6; i++) x[i] = v[i]!;
      x[6] = 1;
      const mean = [0, 0, 0];
      for (let y = 0; y < 16; y++) {
        for (let xx = 0; xx < 16; xx++) {
          const p = ((r * 16 + y) * W + c * 16 + xx) * 4;
          for (let k = 0; k < 3; k++) mean[k]! += rgba[p + k]! / 256;
        }
      }
      for (let i = 0; i < 7; i++) {
        for (let j = 0; j < 7; j++) ata[i * 7 + j]! += x[i]! * x[j]!;
        for (let k = 0; k < 3; k++) atb[k * 7 + i]! += x[i]! * mean[k]!;
      }
    }
  }
  for (let i = 0; i < 7; i++) ata[i * 8]! += 1e-3; // ridge: keeps tiny grids well-posed
  const out: number[] = [];
  for (let k = 0; k < 3; k++) out.push(...solve7(ata, atb.subarray(k * 7, k * 7 + 7)));
  return out;
}

/** Gaussian elimination with partial pivoting on a 7×7 system. */
function solve7(a: Float64Array, b: Float64Array): number[] {
  const n = 7;
  const m = Array.from({ length: n }, (_, i) => [...a.subarray(i * n, i * n + n), b[i]!]);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r]![col]!) > Math.abs(m[piv]![col]!)) piv = r;
    [m[col], m[piv]] = [m[piv]!, m[col]!];
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const factor = m[r]![col]! / m[col]![col]!;
      for (let k = col; k <= n; k++) m[r]![k]! -= factor * m[col]![k]!;
    }
  }
  return m.map((row, i) => row[n]! / row[i]!);
}

/** A palette of all 64,000 codes as RGBA bytes, for painting tokens with one lookup. */
export function previewPalette(map: PreviewMap, count = 64000): Uint8ClampedArray {
  const out = new Uint8ClampedArray(count * 4);
  const v = new Float32Array(6);
  for (let code = 0; code < count; code++) {
    fsqVector(code, v);
    for (let k = 0; k < 3; k++) {
      let acc = map[k * 7 + 6]!;
      for (let i = 0; i < 6; i++) acc += map[k * 7 + i]! * v[i]!;
      out[code * 4 + k] = acc;
    }
    out[code * 4 + 3] = 255;
  }
  return out;
}

/** Paints `count` tokens of an h×w grid into an RGBA buffer of w×h pixels (one pixel per token). */
export function paintTokens(codes: ArrayLike<number>, count: number, palette: Uint8ClampedArray, into: Uint8ClampedArray): void {
  for (let i = 0; i < count; i++) {
    const p = codes[i]! * 4;
    into[i * 4] = palette[p]!;
    into[i * 4 + 1] = palette[p + 1]!;
    into[i * 4 + 2] = palette[p + 2]!;
    into[i * 4 + 3] = 255;
  }
}
