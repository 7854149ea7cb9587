// CRC-32 (IEEE 802.3, the zip and PNG checksum). Shared by the PNG encoder and the zip reader.

let table: Uint32Array | undefined;

function crcTable(): Uint32Array {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  return table;
}

/** CRC-32 of `data`; pass a previous result as `seed` to continue over several chunks. */
export function crc32(data: Uint8Array, seed = 0): number {
  const t = crcTable();
  let c = ~seed >>> 0;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
