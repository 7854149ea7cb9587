// c. Speculative Jacobi decoding end to end on the CPU engine with the tiny fixture: accepted
// tokens per run and ms per token, beside plain decoding with the same seed.
import { join } from 'node:path';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { FIXTURES, SAMPLE_PROMPT } from './inputs.ts';
import { log } from './log.ts';
import { round } from './stats.ts';

/**
 * Speculative Jacobi decoding end to end on the tiny fixture (the engine the CLI uses): accepted
 * tokens per run and decode ms per token, against plain decoding with the same seed. The
 * fixture's weights are random, so its acceptance says nothing about a trained checkpoint; the
 * break-even acceptance of the 0.5B shapes is in section a.
 */
export async function benchSjdTiny(quick: boolean) {
  const ort = await import('onnxruntime-node');
  const { createCpuEngine } = await import('../../src/core/engine/create-cpu.ts');
  const { loadOriginalModel } = await import('../../src/core/engine/load-original.ts');
  log('c. SJD on the CPU engine (tiny fixture)');
  const model = await loadOriginalModel(openFolder(join(FIXTURES, 'tiny-simplear')), openFolder(join(FIXTURES, 'tiny-cosmos')), {
    weights: 'f32',
    decoderDtype: 'f32',
    name: 'tiny-simplear (random weights)',
  });
  const size = quick ? 64 : 128;
  const engine = await createCpuEngine(ort, model, { maxLatentSide: size / 16 });
  const rows: { mode: string; window: number | null; temperature: number; acceptedPerRun: number; runs: number; msPerToken: number }[] = [];
  try {
    for (const temperature of [1, 0]) {
      for (const window of [null, 4, 8]) {
        const r = await engine.generate({ prompt: SAMPLE_PROMPT, size, seed: 1, temperature, ...(window ? { sjd: { window } } : {}) });
        rows.push({
          mode: window ? 'sjd' : 'plain',
          window,
          temperature,
          acceptedPerRun: round(r.stats.acceptedPerRun),
          runs: r.stats.runs,
          msPerToken: round(r.timings.decodeMs / r.stats.steps),
        });
        log(`  T=${temperature} ${window ? `SJD window ${window}` : 'plain'}: ${round(r.stats.acceptedPerRun)} tokens/run, ${round(r.timings.decodeMs / r.stats.steps)} ms/token`);
      }
    }
  } finally {
    await engine.dispose();
  }
  return { model: 'tests/fixtures/tiny-simplear (random weights: acceptance is not indicative)', size, seed: 1, rows };
}
