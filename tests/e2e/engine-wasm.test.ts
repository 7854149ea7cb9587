// Without WebGPU the worker falls back to ONNX Runtime's wasm EP (the CPU token loop) and still
// generates exactly the reference's greedy tokens.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadFixtureInPage, openFixtureApp, type AppSession, type FixtureApp } from './browser.ts';
import * as ort from 'onnxruntime-node';
import { goldenGreedy, loadFixtureModel } from '../helpers/fixture-model.ts';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import type { EngineClient } from '../../src/client/engine-client.ts';

declare const simplear: { client: EngineClient };

let fixture: FixtureApp;
let session: AppSession;
// Chromium itself says so when it finds no adapter.
const NO_ADAPTER = [/No available adapters/];

beforeAll(async () => {
  fixture = await openFixtureApp({ webgpu: false, allow: NO_ADAPTER });
  ({ session } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

it('with no WebGPU adapter the engine runs on the wasm EP and gives the reference tokens', async () => {
  const ref = goldenGreedy('tiny-simplear-b');
  const info = await loadFixtureInPage(fixture, { lm: 'tiny-simplear-b', vq: 'tiny-cosmos-b' });
  expect(info.backend).toBe('wasm');
  const r = await session.page.evaluate((prompt) => simplear.client.generate({ prompt, size: 64, temperature: 0 }), ref.prompt);
  expect(Array.from(r.codes)).toEqual(ref.greedy.codes);
  expect(r.stats.backend).toBe('wasm');
  expect(r.rgba.length).toBe(64 * 64 * 4);
  session.console.assertClean([/404.*\/tiny-simplear-b\/model\.safetensors\)?$/]);
});

// q4 is the default weight format. The WebGPU build of ONNX Runtime Web (the worker's) has no CPU
// GatherBlockQuantized kernel: the worker must build the wasm graph (standard-op lookups, weights
// as external data). onnxruntime-node runs the GatherBlockQuantized graph on the same weights.
it('q4 weights run on the wasm EP in the worker and give onnxruntime-node’s greedy tokens', async () => {
  const prompt = goldenGreedy('tiny-simplear-b').prompt;
  const info = await loadFixtureInPage(fixture, { lm: 'tiny-simplear-b', vq: 'tiny-cosmos-b', weights: 'q4' });
  expect(info.backend).toBe('wasm');
  const r = await session.page.evaluate((p) => simplear.client.generate({ prompt: p, size: 64, temperature: 0 }), prompt);
  expect(r.stats.backend).toBe('wasm');

  const node = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear-b', 'tiny-cosmos-b', 'q4'), { maxLatentSide: 8, accuracyLevel: 0 });
  try {
    const want = await node.generate({ prompt, size: 64, temperature: 0 });
    expect(Array.from(r.codes)).toEqual(Array.from(want.codes));
  } finally {
    await node.dispose();
  }
  session.console.assertClean([/404.*\/tiny-simplear-b\/model\.safetensors\)?$/]);
});

// ONNX Runtime Web's wasm runs settle without a turn of the worker's event loop, so a loop of
// them used to starve the cancel message: the generation ran to its end (a 1024² one at full
// size: over an hour) and every later call waited behind it. The runner now gives the event
// loop a turn between runs (base/event-turns.ts).
it('a cancel reaches the worker during a wasm generation: it stops within a few steps, and the next call is not kept waiting', async () => {
  await loadFixtureInPage(fixture, { lm: 'tiny-simplear-b', vq: 'tiny-cosmos-b', maxLatentSide: 64 });
  const r = await session.page.evaluate(async () => {
    const abort = new AbortController();
    let abortedAt = -1;
    let last = 0;
    let firstAt = 0;
    let firstMs = 0;
    let abortMs = 0;
    const outcome = await simplear.client
      .generate(
        { prompt: 'a red fox', size: 1024, seed: 3 },
        {
          signal: abort.signal,
          onProgress: (p) => {
            if (p.phase !== 'decode' || p.done === 0) return;
            last = Math.max(last, p.done);
            if (firstAt === 0) {
              firstAt = p.done;
              firstMs = p.elapsedMs;
            } else if (abortedAt < 0) {
              // The second report (a row or more later): the loop is well into its steps.
              abortedAt = p.done;
              abortMs = p.elapsedMs;
              abort.abort();
            }
          },
        },
      )
      .then(
        () => 'resolved',
        (e: Error) => e.name,
      );
    const t0 = performance.now();
    // Queued behind the first in the worker: it can only start once the first has stopped.
    const next = await simplear.client.generate({ prompt: 'a red fox', size: 16, seed: 3 });
    const nextMs = performance.now() - t0;
    await new Promise((resolve) => setTimeout(resolve, 200)); // any late progress report of the first
    return { outcome, abortedAt, last, pace: (abortMs - firstMs) / (abortedAt - firstAt), nextMs, nextCodes: next.codes.length };
  });
  expect(r.outcome).toBe('AbortError');
  expect(r.abortedAt).toBeGreaterThan(0);
  // Had the first run on, the next call would have waited for its remaining steps, at the pace
  // it had: it waits for one step and its own short generation instead.
  const remainingMs = r.pace * (4096 - r.abortedAt);
  console.log(`wasm cancel: aborted at step ${r.abortedAt} (${r.pace.toFixed(1)} ms a step), last report ${r.last}; the next call took ${Math.round(r.nextMs)} ms (the rest would have taken ~${Math.round(remainingMs)} ms)`);
  expect(r.nextMs).toBeLessThan(remainingMs / 4);
  expect(r.last).toBeLessThan(2048);
  expect(r.nextCodes).toBe(1);
  session.console.assertClean([/404.*\/tiny-simplear-b\/model\.safetensors\)?$/]);
});
