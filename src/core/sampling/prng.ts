// Seeded per-step uniforms. PCG32 (O'Neill, pcg-random.org: XSH-RR output, 64-bit LCG state).
// Draws are 24-bit so every uniform is exact in f32: the CPU and GPU samplers see the same bits.

const MUL = 6364136223846793005n;
const MASK64 = (1n << 64n) - 1n;

export class Pcg32 {
  private state = 0n;
  private readonly inc: bigint;

  constructor(seed: number, stream = 0x5eed) {
    this.inc = ((BigInt(stream) << 1n) | 1n) & MASK64;
    this.nextU32();
    this.state = (this.state + BigInt(seed >>> 0)) & MASK64;
    this.nextU32();
  }

  nextU32(): number {
    const old = this.state;
    this.state = (old * MUL + this.inc) & MASK64;
    const xorshifted = Number((((old >> 18n) ^ old) >> 27n) & 0xffffffffn);
    const rot = Number(old >> 59n);
    return ((xorshifted >>> rot) | (xorshifted << ((32 - rot) & 31))) >>> 0;
  }

  /** Uniform in [0, 1) with 24 bits: exactly representable as f32. */
  nextUniform(): number {
    return (this.nextU32() >>> 8) * 2 ** -24;
  }
}

/** The whole image's draws up front: one per sampled token (plus SJD's extra draws). */
export function stepUniforms(seed: number, count: number, stream = 0x5eed): Float32Array {
  const rng = new Pcg32(seed, stream);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = rng.nextUniform();
  return out;
}

/** A random seed for "random by default": 32 bits from the platform CSPRNG. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}
