// PNG encoding (src/core/image/png.ts): byte-level structure, round trips through the test
// decoder, text chunks, and the CRC-32 against known values.
import { describe, expect, it } from 'vitest';
import { unzlibSync } from 'fflate';
import { decodePng, encodePng, rgbaToRgb } from '../../src/core/image/png.ts';
import { crc32 } from '../../src/core/base/crc32.ts';

const ascii = (s: string) => new TextEncoder().encode(s);

function chunks(png: Uint8Array): { type: string; body: Uint8Array }[] {
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out = [];
  for (let p = 8; p < png.length; ) {
    const len = v.getUint32(p);
    out.push({ type: new TextDecoder().decode(png.subarray(p + 4, p + 8)), body: png.subarray(p + 8, p + 8 + len) });
    p += 12 + len;
  }
  return out;
}

/** Deterministic image with smooth gradients and noise, so every filter type gets used. */
function testImage(width: number, height: number, channels: 3 | 4): Uint8Array {
  const data = new Uint8Array(width * height * channels);
  let s = 7;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      const i = (y * width + x) * channels;
      data[i] = (x * 4) & 255;
      data[i + 1] = (y * 3 + x) & 255;
      data[i + 2] = y > height / 2 ? s >>> 24 : 128;
      if (channels === 4) data[i + 3] = 255 - ((x + y) & 63);
    }
  }
  return data;
}

describe('crc32', () => {
  it('matches the standard check values', () => {
    expect(crc32(ascii('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32(ascii('IEND'))).toBe(0xae426082);
    expect(crc32(ascii('56789'), crc32(ascii('1234')))).toBe(0xcbf43926); // continued
  });
});

describe('encodePng', () => {
  it('writes signature, IHDR (8-bit RGB), IDAT, IEND with valid CRCs', () => {
    const png = encodePng({ width: 3, height: 2, channels: 3, data: testImage(3, 2, 3) });
    expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const cs = chunks(png);
    expect(cs.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    expect(Array.from(cs[0]!.body)).toEqual([0, 0, 0, 3, 0, 0, 0, 2, 8, 2, 0, 0, 0]);
    // IDAT is zlib of (filter byte + row) per row
    expect(unzlibSync(cs[1]!.body).length).toBe(2 * (1 + 9));
    expect(cs[2]!.body.length).toBe(0);
  });

  for (const channels of [3, 4] as const) {
    it(`round-trips ${channels === 3 ? 'RGB' : 'RGBA'} pixels exactly`, () => {
      const data = testImage(61, 47, channels);
      const png = encodePng({ width: 61, height: 47, channels, data });
      const back = decodePng(png);
      expect([back.width, back.height, back.channels]).toEqual([61, 47, channels]);
      expect(back.data).toEqual(data);
      const filters = new Set(Array.from({ length: 47 }, (_, y) => unzlibSync(chunks(png)[1]!.body)[y * (61 * channels + 1)]));
      expect(filters.size).toBeGreaterThan(1); // adaptive per-row filtering
    });
  }

  it('stores text metadata: tEXt for Latin-1, iTXt (UTF-8) otherwise', () => {
    const text = { prompt: 'a red fox — in snow ✓', seed: '42', Comment: 'café' };
    const png = encodePng({ width: 1, height: 1, channels: 4, data: Uint8Array.of(1, 2, 3, 4) }, { text });
    expect(chunks(png).map((c) => c.type)).toEqual(['IHDR', 'iTXt', 'tEXt', 'tEXt', 'IDAT', 'IEND']);
    expect(decodePng(png).text).toEqual(text);
    expect(() => encodePng({ width: 1, height: 1, channels: 3, data: new Uint8Array(3) }, { text: { '': 'x' } })).toThrow(/keyword/);
  });

  it('rejects inconsistent sizes', () => {
    expect(() => encodePng({ width: 2, height: 2, channels: 3, data: new Uint8Array(11) })).toThrow(/expected 12/);
    expect(() => encodePng({ width: 0, height: 2, channels: 3, data: new Uint8Array(0) })).toThrow(/positive/);
  });

  it('drops alpha from the decoder’s rgba bytes', () => {
    expect(Array.from(rgbaToRgb(Uint8Array.of(1, 2, 3, 255, 4, 5, 6, 255)))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => rgbaToRgb(new Uint8Array(5))).toThrow();
  });
});
