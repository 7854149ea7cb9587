// Without WebGPU the worker falls back to ONNX Runtime's wasm EP (the CPU token loop) and still
// generates exactly the reference's greedy tokens.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openFixtureApp, type AppSession, type FixtureApp } from './browser.ts';
import type { TestServer } from '../helpers/http-server.ts';
import { FIXTURES } from '../helpers/fixture-model.ts';
import type { EngineClient } from '../../src/client/engine-client.ts';

const golden = JSON.parse(readFileSync(join(FIXTURES, 'golden/golden.json'), 'utf8')) as {
  lm: { checkpoint: string; prompt: string; greedy: { codes: number[] } }[];
};
declare const simplear: { client: EngineClient };

let fixture: FixtureApp;
let files: TestServer;
let session: AppSession;
// Chromium itself says so when it finds no adapter.
const NO_ADAPTER = [/No available adapters/];

beforeAll(async () => {
  fixture = await openFixtureApp({ webgpu: false, allow: NO_ADAPTER });
  ({ files, session } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

it('with no WebGPU adapter the engine runs on the wasm EP and gives the reference tokens', async () => {
  const ref = golden.lm.find((c) => c.checkpoint === 'tiny-simplear-b')!;
  const info = await session.page.evaluate(
    ([model, vq]) => simplear.client.loadModel({ kind: 'original', model, vq }, { weights: 'f32', decoderDtype: 'f32', maxLatentSide: 8 }),
    [new URL('tiny-simplear-b/', files.url).href, new URL('tiny-cosmos-b/', files.url).href],
  );
  expect(info.backend).toBe('wasm');
  const r = await session.page.evaluate((prompt) => simplear.client.generate({ prompt, size: 64, temperature: 0 }), ref.prompt);
  expect(Array.from(r.codes)).toEqual(ref.greedy.codes);
  expect(r.stats.backend).toBe('wasm');
  expect(r.rgba.length).toBe(64 * 64 * 4);
  session.console.assertClean([/404.*\/tiny-simplear-b\/model\.safetensors\)?$/]);
});
