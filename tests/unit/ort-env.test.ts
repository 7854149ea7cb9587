// How ORT Web is configured in the engine worker.
import type { Env } from 'onnxruntime-web';
import { describe, expect, test } from 'vitest';
import { chooseNumThreads, configureOrtWeb } from '../../src/core/runtime/ort-env.ts';

describe('chooseNumThreads', () => {
  test('one thread unless cross-origin isolated (no SharedArrayBuffer otherwise)', () => {
    expect(chooseNumThreads({ crossOriginIsolated: false, hardwareConcurrency: 16 })).toBe(1);
  });

  test('isolated: half the cores, at least 1, at most 4', () => {
    expect(chooseNumThreads({ crossOriginIsolated: true, hardwareConcurrency: 1 })).toBe(1);
    expect(chooseNumThreads({ crossOriginIsolated: true, hardwareConcurrency: 2 })).toBe(1);
    expect(chooseNumThreads({ crossOriginIsolated: true, hardwareConcurrency: 6 })).toBe(3);
    expect(chooseNumThreads({ crossOriginIsolated: true, hardwareConcurrency: 32 })).toBe(4);
    expect(chooseNumThreads({ crossOriginIsolated: true, hardwareConcurrency: 0 })).toBe(1);
  });
});

test('configureOrtWeb points ORT at our copies of its runtime files and turns its proxy off', () => {
  const env = { wasm: {} } as Env;
  configureOrtWeb(env, { assets: { mjs: '/assets/a.mjs', wasm: '/assets/a.wasm' }, numThreads: 3 });
  expect(env.wasm).toEqual({ wasmPaths: { mjs: '/assets/a.mjs', wasm: '/assets/a.wasm' }, numThreads: 3, proxy: false });
});
