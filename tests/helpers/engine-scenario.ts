// One scenario for every host of the engine API (src/core/host/api.ts): the tiny fixture loaded,
// a greedy image, a generation cancelled as soon as it starts, the greedy image again (the engine
// stayed ready), and the decoder alone on the greedy tokens. Run against EngineHost in Node and
// through the worker (EngineClient) in Chromium; both must give the reference's tokens.
import { expect } from 'vitest';
import type { EngineApi } from '../../src/core/host/api.ts';
import type { ModelSource } from '../../src/core/store/types.ts';

/** The part of the engine API the scenario uses. */
export type ScenarioEngine = Pick<EngineApi, 'loadModel' | 'generate' | 'decode'>;

export interface ScenarioOutcome {
  backend: string;
  codes: number[];
  /** The error the cancelled generation rejected with. */
  cancelled: { name: string };
  /** The generation after the cancelled one. */
  againCodes: number[];
  /** The decoder alone gave the greedy image's pixels. */
  decodedSameImage: boolean;
  decodedSize: [number, number];
}

export async function runEngineScenario(engine: ScenarioEngine, source: ModelSource, prompt: string): Promise<ScenarioOutcome> {
  const info = await engine.loadModel(source, { weights: 'f32', decoderDtype: 'f32', maxLatentSide: 8 });
  const request = { prompt, size: 64, temperature: 0 };
  const first = await engine.generate(request);

  const controller = new AbortController();
  const doomed = engine.generate(request, { signal: controller.signal });
  controller.abort();
  const cancelled = await doomed.then(
    () => ({ name: 'resolved' }),
    (e: unknown) => ({ name: e instanceof Error || e instanceof DOMException ? e.name : String(e) }),
  );

  const again = await engine.generate(request);
  const side = Math.round(Math.sqrt(first.codes.length));
  const decoded = await engine.decode(Int32Array.from(first.codes), side);
  return {
    backend: info.backend,
    codes: Array.from(first.codes),
    cancelled,
    againCodes: Array.from(again.codes),
    decodedSameImage: decoded.rgba.length === first.rgba.length && decoded.rgba.every((v, i) => v === first.rgba[i]),
    decodedSize: [decoded.width, decoded.height],
  };
}

/** What every host must give: the reference's greedy tokens, twice around a cancel, and its pixels from the decoder alone. */
export function expectScenario(outcome: ScenarioOutcome, greedyCodes: number[]): void {
  expect(outcome.codes).toEqual(greedyCodes);
  expect(outcome.cancelled).toEqual({ name: 'AbortError' });
  expect(outcome.againCodes).toEqual(greedyCodes);
  expect(outcome.decodedSameImage).toBe(true);
  expect(outcome.decodedSize).toEqual([64, 64]);
}
