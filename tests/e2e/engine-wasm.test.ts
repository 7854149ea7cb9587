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
