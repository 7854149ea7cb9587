// PNG encoding (8-bit RGB / RGBA) with text metadata, isomorphic (Node and workers: fflate's zlib).
// A small decoder for the same kinds of images serves tests and round trips.
import { unzlibSync, zlibSync } from 'fflate';
import { crc32 } from '../base/crc32.ts';

export interface PngImage {
  width: number;
  height: number;
  /** 3 = RGB, 4 = RGBA. */
  channels: 3 | 4;
  /** Row-major, `width · height · channels` bytes. */
  data: Uint8Array;
}

export interface PngEncodeOptions {
  /** Text metadata (prompt, seed, settings …): tEXt when Latin-1, iTXt (UTF-8) otherwise. */
  text?: Record<string, string>;
  /** zlib level 0–9 (default 6). */
  level?: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;
}

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
const latin1 = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0));
const isLatin1 = (s: string) => /^[\u0000-\u00ff]*$/.test(s);

export function encodePng(image: PngImage, options: PngEncodeOptions = {}): Uint8Array {
  const { width, height, channels, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`PNG size must be positive integers, got ${width}×${height}`);
  }
  if (channels !== 3 && channels !== 4) throw new RangeError(`PNG channels must be 3 or 4, got ${channels}`);
  if (data.length !== width * height * channels) {
    throw new RangeError(`PNG data has ${data.length} bytes, expected ${width * height * channels}`);
  }
  const chunks: Uint8Array[] = [SIGNATURE];
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = channels === 4 ? 6 : 2; // colour type: RGBA / RGB
  // compression 0, filter 0, interlace 0
  chunks.push(chunk('IHDR', ihdr));
  for (const [key, value] of Object.entries(options.text ?? {})) chunks.push(textChunk(key, value));
  chunks.push(chunk('IDAT', zlibSync(filterRows(data, width, height, channels), { level: options.level ?? 6 })));
  chunks.push(chunk('IEND', new Uint8Array(0)));
  return concat(chunks);
}

/** Drops the alpha channel of RGBA bytes (e.g. the decoder's `rgba` output). */
export function rgbaToRgb(rgba: Uint8Array): Uint8Array {
  if (rgba.length % 4) throw new RangeError(`RGBA data length ${rgba.length} is not a multiple of 4`);
  const n = rgba.length / 4;
  const rgb = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    rgb[i * 3] = rgba[i * 4]!;
    rgb[i * 3 + 1] = rgba[i * 4 + 1]!;
    rgb[i * 3 + 2] = rgba[i * 4 + 2]!;
  }
  return rgb;
}

function chunk(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, body.length);
  out.set(latin1(type), 4);
  out.set(body, 8);
  v.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
  return out;
}

function textChunk(key: string, value: string): Uint8Array {
  if (!/^[\u0020-\u007e\u00a1-\u00ff]{1,79}$/.test(key) || key.startsWith(' ') || key.endsWith(' ')) {
    throw new RangeError(`PNG text keyword ${JSON.stringify(key)} must be 1–79 printable Latin-1 characters`);
  }
  if (isLatin1(value) && !value.includes('\0')) return chunk('tEXt', concat([latin1(key), Uint8Array.of(0), latin1(value)]));
  // iTXt: keyword \0, compression flag 0, method 0, empty language tag \0, empty translated keyword \0, UTF-8 text.
  return chunk('iTXt', concat([latin1(key), Uint8Array.of(0, 0, 0, 0, 0), new TextEncoder().encode(value)]));
}

/** Each row prefixed by the filter (None/Sub/Up/Average/Paeth) with the smallest sum of |residuals|. */
function filterRows(data: Uint8Array, width: number, height: number, bpp: number): Uint8Array {
  const stride = width * bpp;
  const out = new Uint8Array(height * (stride + 1));
  const zero = new Uint8Array(stride);
  const candidates = Array.from({ length: 5 }, () => new Uint8Array(stride));
  for (let y = 0; y < height; y++) {
    const row = data.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? data.subarray((y - 1) * stride, y * stride) : zero;
    const [none, sub, up, avg, paeth] = candidates as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    for (let i = 0; i < stride; i++) {
      const x = row[i]!;
      const a = i >= bpp ? row[i - bpp]! : 0;
      const b = prev[i]!;
      const c = i >= bpp ? prev[i - bpp]! : 0;
      none[i] = x;
      sub[i] = x - a;
      up[i] = x - b;
      avg[i] = x - ((a + b) >> 1);
      const p = a + b - c;
      const pa = p > a ? p - a : a - p;
      const pb = p > b ? p - b : b - p;
      const pc = p > c ? p - c : c - p;
      paeth[i] = x - (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
    }
    let best = 0;
    let bestCost = Infinity;
    for (let f = 0; f < 5; f++) {
      const r = candidates[f]!;
      let cost = 0;
      for (let i = 0; i < stride; i++) cost += r[i]! < 128 ? r[i]! : 256 - r[i]!;
      if (cost < bestCost) (bestCost = cost), (best = f);
    }
    out[y * (stride + 1)] = best;
    out.set(candidates[best]!, y * (stride + 1) + 1);
  }
  return out;
}

function predict(filter: number, a: number, b: number, c: number): number {
  switch (filter) {
    case 0:
      return 0;
    case 1:
      return a;
    case 2:
      return b;
    case 3:
      return (a + b) >> 1;
    default: {
      const p = a + b - c;
      const pa = Math.abs(p - a);
      const pb = Math.abs(p - b);
      const pc = Math.abs(p - c);
      return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface DecodedPng extends PngImage {
  text: Record<string, string>;
}

/** Decodes 8-bit, non-interlaced RGB / RGBA PNGs (what `encodePng` writes); checks every CRC. */
export function decodePng(bytes: Uint8Array): DecodedPng {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new Error('not a PNG file');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 8;
  let width = 0;
  let height = 0;
  let channels: 3 | 4 = 3;
  const idat: Uint8Array[] = [];
  const text: Record<string, string> = {};
  const dec = new TextDecoder('latin1');
  for (;;) {
    if (p + 12 > bytes.length) throw new Error('truncated PNG');
    const len = v.getUint32(p);
    const type = dec.decode(bytes.subarray(p + 4, p + 8));
    if (p + 12 + len > bytes.length) throw new Error(`truncated PNG chunk ${type}`);
    const body = bytes.subarray(p + 8, p + 8 + len);
    if (crc32(bytes.subarray(p + 4, p + 8 + len)) !== v.getUint32(p + 8 + len)) throw new Error(`PNG chunk ${type}: bad CRC`);
    p += 12 + len;
    if (type === 'IHDR') {
      const h = new DataView(body.buffer, body.byteOffset, body.byteLength);
      width = h.getUint32(0);
      height = h.getUint32(4);
      if (body[8] !== 8 || (body[9] !== 2 && body[9] !== 6) || body[12] !== 0) {
        throw new Error(`unsupported PNG (bit depth ${body[8]}, colour type ${body[9]}, interlace ${body[12]})`);
      }
      channels = body[9] === 6 ? 4 : 3;
    } else if (type === 'IDAT') {
      idat.push(body);
    } else if (type === 'tEXt') {
      const z = body.indexOf(0);
      text[dec.decode(body.subarray(0, z))] = dec.decode(body.subarray(z + 1));
    } else if (type === 'iTXt') {
      const z = body.indexOf(0);
      const compressed = body[z + 1] === 1;
      let q = body.indexOf(0, z + 3); // end of language tag
      q = body.indexOf(0, q + 1); // end of translated keyword
      const t = body.subarray(q + 1);
      text[dec.decode(body.subarray(0, z))] = new TextDecoder().decode(compressed ? unzlibSync(t) : t);
    } else if (type === 'IEND') {
      break;
    }
  }
  const stride = width * channels;
  const raw = unzlibSync(concat(idat));
  if (raw.length !== height * (stride + 1)) throw new Error('PNG image data has the wrong size');
  const data = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]!;
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? data[y * stride + i - channels]! : 0;
      const b = y > 0 ? data[(y - 1) * stride + i]! : 0;
      const c = y > 0 && i >= channels ? data[(y - 1) * stride + i - channels]! : 0;
      data[y * stride + i] = (src[i]! + predict(f, a, b, c)) & 0xff;
    }
  }
  return { width, height, channels, data, text };
}
