// The engine API scenario (tests/helpers/engine-scenario.ts) through the real engine worker: the
// page's EngineClient, the worker's bridge and its EngineHost on the wasm EP (no WebGPU adapter).
// tests/unit/engine-host.test.ts runs the same scenario against EngineHost in Node; both give the
// reference's greedy tokens.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { openFixtureApp, type FixtureApp } from './browser.ts';
import { goldenGreedy } from '../helpers/fixture-model.ts';
import { expectScenario, runEngineScenario, type ScenarioEngine } from '../helpers/engine-scenario.ts';
import type { EngineClient, GenerateRequest, GenerationResult } from '../../src/client/engine-client.ts';

declare const simplear: { client: EngineClient };
/** Generations started by pageEngine, by id: their page-side controller and outcome. */
declare const scenarioCalls: Record<number, { controller: AbortController; settled: Promise<Settled> }>;
type Settled = { result: GenerationResult } | { error: { name: string; message: string } };

/**
 * The page's EngineClient as a ScenarioEngine driven from Node. An AbortSignal cannot enter the
 * page: each generation gets a page-side controller that is aborted when the caller's signal is.
 */
function pageEngine(page: Page): ScenarioEngine {
  let calls = 0;
  return {
    loadModel: (source, options = {}) => {
      const { signal: _signal, ...rest } = options;
      return page.evaluate(([s, o]) => simplear.client.loadModel(s, o), [source, rest] as const);
    },
    async generate(request, options = {}) {
      const id = ++calls;
      await page.evaluate(
        ([req, id]: [GenerateRequest, number]) => {
          const g = globalThis as unknown as { scenarioCalls?: typeof scenarioCalls };
          const controller = new AbortController();
          const settled = simplear.client.generate(req, { signal: controller.signal }).then(
            (result): Settled => ({ result }),
            (e: Error): Settled => ({ error: { name: e.name, message: e.message } }),
          );
          (g.scenarioCalls ??= {})[id] = { controller, settled };
        },
        [request, id] as [GenerateRequest, number],
      );
      const abort = () => void page.evaluate((id) => scenarioCalls[id]!.controller.abort(), id);
      if (options.signal?.aborted) abort();
      else options.signal?.addEventListener('abort', abort, { once: true });
      const settled = await page.evaluate((id) => scenarioCalls[id]!.settled, id);
      if ('error' in settled) throw Object.assign(new Error(settled.error.message), { name: settled.error.name });
      return settled.result;
    },
    decode: (codes, side) => page.evaluate(([c, s]) => simplear.client.decode(Int32Array.from(c), s), [Array.from(codes), side] as const),
  };
}

let fixture: FixtureApp;

beforeAll(async () => {
  // Chromium itself says so when it finds no adapter.
  fixture = await openFixtureApp({ webgpu: false, allow: [/No available adapters/] });
});

afterAll(async () => {
  await fixture?.close();
});

it('the worker runs the engine scenario as EngineHost does in Node: the reference tokens, a cancel that leaves it ready', async () => {
  const golden = goldenGreedy('tiny-simplear-b');
  const source = {
    kind: 'original' as const,
    model: new URL('tiny-simplear-b/', fixture.files.url).href,
    vq: new URL('tiny-cosmos-b/', fixture.files.url).href,
  };
  const outcome = await runEngineScenario(pageEngine(fixture.session.page), source, golden.prompt);
  expect(outcome.backend).toBe('wasm');
  expectScenario(outcome, golden.greedy.codes);
  fixture.session.console.assertClean([/404.*\/tiny-simplear-b\/model\.safetensors\)?$/]);
});
