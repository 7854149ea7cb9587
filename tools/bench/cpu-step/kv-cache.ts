// What the engine's growing KV cache costs: steps through a static cache of the engine's maximum
// beside the grown one's, and one growth by a chunk.
import type { LmSpec } from '../../../src/core/base/model-spec.ts';
import type { KvCacheMode } from '../../../src/core/model/lm-graph.ts';
import { KV_CACHE_CHUNK, LmRunner, createKvCache, resizeKvCache } from '../../../src/core/runtime/lm-runner.ts';
import { log } from '../log.ts';
import { median, round } from '../stats.ts';
import type { Ort, StepBench } from './step-bench.ts';

export interface StaticCacheTiming {
  msPerStep: number;
  grownMsPerStepAlongside: number;
  staticOverGrown: number;
}

/**
 * Steps through a static cache of the engine's maximum (what createCpuEngine allocated before the
 * cache grew with the context), in pairs with the growing runner's steps at the same context
 * (order swapped every pair); the ratio is the median of the pairs' ratios, which a shared
 * machine's drift affects least.
 */
export async function staticCacheSteps({ ort, session, spec, capacity, lengths, token, plainStep, quick, dtype, kvCache }: StepBench): Promise<StaticCacheTiming> {
  const fixed = new LmRunner(ort, session, spec, { capacity, growBy: 0, dtype, kvCache });
  const staticStep = () => {
    fixed.lengths[0] = lengths[0]!;
    fixed.lengths[1] = lengths[1]!;
    return fixed.step([token, token]);
  };
  const timed = async (f: () => Promise<unknown>) => {
    const t = performance.now();
    await f();
    return performance.now() - t;
  };
  await staticStep(); // the first step of the new shape warms up
  const still: number[] = [];
  const grown: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < (quick ? 4 : 10); i++) {
    let a: number;
    let b: number;
    if (i % 2) {
      b = await timed(plainStep);
      a = await timed(staticStep);
    } else {
      a = await timed(staticStep);
      b = await timed(plainStep);
    }
    still.push(a);
    grown.push(b);
    ratios.push(a / b);
  }
  const s = median(still);
  const g = median(grown);
  log(`  static ${capacity}-slot cache: ${round(s)} ms/step vs ${round(g)} ms/step grown, in pairs: ×${round(median(ratios))}`);
  return { msPerStep: round(s), grownMsPerStepAlongside: round(g), staticOverGrown: round(median(ratios)) };
}

/** One growth of a batch-2 cache of `slots` slots by a chunk (allocation + copy): best of 3, ms. */
export function growthCost(ort: Ort, spec: LmSpec, slots: number, dtype: 'float32' | 'float16', kvCache: KvCacheMode): number {
  const cache = createKvCache(ort.Tensor, spec, 2, slots, dtype, kvCache === 'read-only');
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    resizeKvCache(ort.Tensor, cache, slots + KV_CACHE_CHUNK);
    best = Math.min(best, performance.now() - t);
  }
  return round(best);
}
