// Draws the app icons (public/icons/*.png) from the favicon's design: a blue rounded square
// with three white tiles. Run once after changing the design: `npx tsx tools/make-icons.ts`.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePng } from '../src/core/image/png.ts';

const BLUE = [0x3b, 0x5b, 0xdb];
const WHITE = [0xff, 0xff, 0xff];

/** `inset`: fraction of the side left around the artwork (maskable icons keep a safe zone). */
function drawIcon(size: number, options: { rounded: boolean; inset: number }): Uint8Array {
  const data = new Uint8Array(size * size * 4);
  const radius = options.rounded ? size * (3 / 16) : 0;
  const art = size * (1 - 2 * options.inset);
  const unit = art / 16; // the favicon's 16-unit grid
  const tiles = [
    [4, 4],
    [9, 4],
    [4, 9],
  ];
  // 4×4 supersampling for smooth edges.
  const SS = 4;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let bg = 0;
      let fg = 0;
      for (let sy = 0; sy < SS; sy++) {
        for (let sx = 0; sx < SS; sx++) {
          const px = x + (sx + 0.5) / SS;
          const py = y + (sy + 0.5) / SS;
          const cx = Math.min(Math.max(px, radius), size - radius);
          const cy = Math.min(Math.max(py, radius), size - radius);
          if ((px - cx) ** 2 + (py - cy) ** 2 > radius * radius) continue;
          bg++;
          const ux = (px - size * options.inset) / unit;
          const uy = (py - size * options.inset) / unit;
          if (tiles.some(([tx, ty]) => ux >= tx! && ux < tx! + 3 && uy >= ty! && uy < ty! + 3)) fg++;
        }
      }
      const o = (y * size + x) * 4;
      const f = fg / Math.max(bg, 1);
      for (let c = 0; c < 3; c++) data[o + c] = Math.round(BLUE[c]! * (1 - f) + WHITE[c]! * f);
      data[o + 3] = Math.round((255 * bg) / (SS * SS));
    }
  }
  return data;
}

const out = join(import.meta.dirname, '../public/icons');
for (const [name, size, rounded, inset] of [
  ['icon-192.png', 192, true, 0],
  ['icon-512.png', 512, true, 0],
  // Maskable: full-bleed background, the tiles inside the central 80% safe zone.
  ['icon-maskable-512.png', 512, false, 0.1],
] as const) {
  writeFileSync(join(out, name), encodePng({ width: size, height: size, channels: 4, data: drawIcon(size, { rounded, inset }) }, { level: 9 }));
}
