// The text chunks of a PNG (tEXt, and iTXt compressed or not): what the CLI's PNGs record.
import { inflateSync } from 'node:zlib';

/** Text chunks of a PNG (tEXt and uncompressed/compressed iTXt). */
export function pngTextChunks(png: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  for (let at = 8; at < png.length; ) {
    const len = v.getUint32(at);
    const type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    const data = png.subarray(at + 8, at + 8 + len);
    if (type === 'tEXt') {
      const z = data.indexOf(0);
      out[Buffer.from(data.subarray(0, z)).toString('latin1')] = Buffer.from(data.subarray(z + 1)).toString('latin1');
    } else if (type === 'iTXt') {
      const z = data.indexOf(0);
      const key = Buffer.from(data.subarray(0, z)).toString('latin1');
      const compressed = data[z + 1] === 1;
      let p = z + 3;
      p = data.indexOf(0, p) + 1; // language tag
      p = data.indexOf(0, p) + 1; // translated keyword
      const body = data.subarray(p);
      out[key] = Buffer.from(compressed ? inflateSync(body) : body).toString('utf8');
    }
    at += 12 + len;
  }
  return out;
}
