// The memory-bandwidth bound of a decode step: the bytes it must read and how fast this machine
// copies memory.
import type { NamedTensor } from '../../../src/core/base/model-spec.ts';
import { round } from '../stats.ts';

/** Copy bandwidth: best of `reps` copies of `mib` MiB; GB/s of traffic (bytes read + written). */
export function copyBandwidth(mib: number, reps = 5): { gbPerS: number; mib: number } {
  const n = mib * 2 ** 20;
  const src = new Float64Array(n / 8).fill(1.5);
  const dst = new Float64Array(n / 8);
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    dst.set(src);
    best = Math.min(best, performance.now() - t);
  }
  return { gbPerS: round((2 * n) / (best / 1000) / 1e9), mib };
}

/** Bytes one decode step reads: every converted tensor but the text-embedding table, as stored;
 * `scales`: the bytes of the q4/q8 scales among them (stored f16; an f32 graph holds them in f32). */
export function stepWeightBytes(weights: ReadonlyMap<string, NamedTensor>): { layers: number; head: number; scales: number } {
  let layers = 0;
  let head = 0;
  let scales = 0;
  for (const [name, t] of weights) {
    const read = name.startsWith('layers.') || name.startsWith('head') || name.startsWith('final_norm');
    if (name.startsWith('layers.')) layers += t.raw.byteLength;
    else if (read) head += t.raw.byteLength;
    if (read && name.endsWith('.scales')) scales += t.raw.byteLength;
  }
  return { layers, head, scales };
}
