// SHA-256, as lower-case hex. WebCrypto where available (native, one buffer); hash-wasm where it
// is not (crypto.subtle only exists in secure contexts: a page served over plain http from a LAN
// address has none) and for the incremental stream, which hashes files too large to hold whole.
// hash-wasm over the plain-JS compression function this replaced: 207 vs 66–90 MiB/s on 1 GiB
// in 8 MiB blocks (Node 20, a shared 2-core machine); @noble/hashes ran at 94 MiB/s.
import { createSHA256, type IHasher } from 'hash-wasm';

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return (await Sha256Stream.create()).update(bytes).hex();
  return toHex(new Uint8Array(await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)));
}

function toHex(digest: Uint8Array): string {
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return hex;
}

/** SHA-256 of one buffer, without WebCrypto. */
export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return (await Sha256Stream.create()).update(bytes).digest();
}

/** Incremental SHA-256: hashes a file block by block (WebCrypto takes one buffer). */
export class Sha256Stream {
  private constructor(private readonly hasher: IHasher) {}

  /** A fresh stream (async: the WebAssembly hasher is instantiated on first use). */
  static async create(): Promise<Sha256Stream> {
    const hasher = await createSHA256();
    hasher.init();
    return new Sha256Stream(hasher);
  }

  update(bytes: Uint8Array): this {
    this.hasher.update(bytes);
    return this;
  }

  /** The 32-byte digest; the stream cannot be updated afterwards. */
  digest(): Uint8Array {
    return this.hasher.digest('binary');
  }

  /** Lower-case hex digest; the stream cannot be updated afterwards. */
  hex(): string {
    return this.hasher.digest('hex');
  }
}
