// d. Images per minute on the CPU engine for N = 1, 2 and 4 images per request (generateImages:
// one pass of 2N streams, the weights read once per step for all of them), each timed from the
// call to its last image's pixels. Full size: SimpleAR-0.5B shapes with random weights (the
// checkpoint of `npm run fixtures:full`, written when missing), q4 as the page and the CLI load
// it, 1024² images. --quick: the tiny fixture at 64 px (the plumbing, not the figures).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { FIXTURES, FULL_CHECKPOINT, ROOT, SAMPLE_PROMPT } from './inputs.ts';
import { log } from './log.ts';
import { round } from './stats.ts';

/** The counts measured, and the target of the comparison (issue: N = 4 at least 2× N = 1). */
export const IMAGE_COUNTS = [1, 2, 4] as const;

export interface ImagesRow {
  count: number;
  seconds: number;
  imagesPerMinute: number;
  /** Decode-loop ms per step of the pass (each step samples one token of every image). */
  msPerStep: number;
  /** Tokens per second over all the pass's images. */
  tokensPerSecond: number;
  /** VQ decoder seconds per image. */
  vqSecondsPerImage: number;
  imagesPerPass: number;
}

/** Writes the full-size random checkpoint where the bench looks for it, unless it is there. */
function ensureFullCheckpoint(dir: string): void {
  if (existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'decoder.jit'))) return;
  log(`  writing the full-size random checkpoint to ${dir} (npm run fixtures:full)`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'tools/fixtures/full-checkpoint.ts'), '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`npm run fixtures:full -- --out ${dir} failed (exit ${r.status})`);
}

export async function benchImagesPerMinute(quick: boolean) {
  const ort = await import('onnxruntime-node');
  const { createCpuEngine } = await import('../../src/core/engine/create-cpu.ts');
  const { loadOriginalModel } = await import('../../src/core/engine/load-original.ts');
  log('d. images per minute, N images per request (CPU engine)');
  const model = quick ? join(FIXTURES, 'tiny-simplear') : FULL_CHECKPOINT;
  const vq = quick ? join(FIXTURES, 'tiny-cosmos') : FULL_CHECKPOINT;
  if (!quick) ensureFullCheckpoint(FULL_CHECKPOINT);
  const weights = quick ? 'f32' : 'q4';
  const size = quick ? 64 : 1024;
  const t0 = performance.now();
  const loaded = await loadOriginalModel(openFolder(model), openFolder(vq), { weights, decoderDtype: 'f32', name: quick ? 'tiny-simplear' : 'SimpleAR-0.5B shapes (random)' });
  const engine = await createCpuEngine(ort, loaded, { maxLatentSide: size / 16 });
  const loadS = (performance.now() - t0) / 1000;
  log(`  model ${quick ? 'tiny' : 'full size'}, ${weights}, loaded in ${round(loadS)} s`);
  const rows: ImagesRow[] = [];
  try {
    // A short warm-up: first-run costs (allocations, thread pools) out of N = 1's figure.
    await engine.generateImages({ prompt: SAMPLE_PROMPT, size: 64, seed: 1, count: 1 });
    for (const count of IMAGE_COUNTS) {
      const start = performance.now();
      const results = await engine.generateImages({ prompt: SAMPLE_PROMPT, size, seed: 1, count });
      const seconds = (performance.now() - start) / 1000;
      const first = results[0]!;
      const steps = first.stats.steps;
      const row: ImagesRow = {
        count,
        seconds: round(seconds, 3),
        imagesPerMinute: round((count / seconds) * 60),
        msPerStep: round(first.timings.decodeMs / Math.max(1, steps - 1)),
        tokensPerSecond: round((count * steps) / (first.timings.decodeMs / 1000)),
        vqSecondsPerImage: round(results.reduce((s, r) => s + r.timings.vqMs, 0) / count / 1000),
        imagesPerPass: first.stats.imagesPerPass ?? 1,
      };
      rows.push(row);
      log(`  N=${count}: ${row.seconds} s, ${row.imagesPerMinute} images/min, ${row.msPerStep} ms/step, ${row.tokensPerSecond} tokens/s, decoder ${row.vqSecondsPerImage} s/image`);
    }
  } finally {
    await engine.dispose();
  }
  const one = rows.find((r) => r.count === 1)!;
  const four = rows.find((r) => r.count === 4)!;
  return {
    model: quick ? 'tests/fixtures/tiny-simplear (f32)' : 'SimpleAR-0.5B shapes, random weights (npm run fixtures:full), q4',
    size,
    loadS: round(loadS),
    rows,
    /** Images per minute at N = 4 over N = 1: the target is ≥ 2. */
    n4OverN1: round(four.imagesPerMinute / one.imagesPerMinute),
  };
}
