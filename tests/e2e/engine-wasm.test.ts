// Without WebGPU the worker falls back to ONNX Runtime's wasm EP (the CPU token loop) and still
// generates exactly the reference's greedy tokens.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadFixtureInPage, openFixtureApp, type AppSession, type FixtureApp } from './browser.ts';
import { goldenGreedy } from '../helpers/fixture-model.ts';
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
