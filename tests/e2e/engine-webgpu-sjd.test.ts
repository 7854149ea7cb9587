// Speculative Jacobi decoding on the WebGPU engine in a real Chromium (SwiftShader here), through
// the worker and client: greedy SJD gives exactly the reference tokens; a seed gives the same
// tokens as Node's CPU engine with SJD; cancel mid-SJD leaves the engine ready; the SJD buffers
// are allocated once (GPU memory flat across generations). SwiftShader takes seconds per window
// run, so this stays small; the distribution and the windows are tested in Node (engine-sjd).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { openFixtureEngine, type AppSession, type FixtureApp } from './browser.ts';
import { goldenGreedy, loadFixtureModel } from '../helpers/fixture-model.ts';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import type { EngineClient } from '../../src/client/engine-client.ts';

declare const simplear: { client: EngineClient };

let fixture: FixtureApp;
let session: AppSession;

beforeAll(async () => {
  fixture = await openFixtureEngine('webgpu');
  ({ session } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

describe('speculative Jacobi decoding on the WebGPU engine in Chromium', () => {
  it('greedy SJD gives exactly the reference tokens; one readback per window run', async () => {
    const ref = goldenGreedy('tiny-simplear');
    const window = 3;
    const r = await session.page.evaluate(
      ([prompt, window]) => simplear.client.generate({ prompt, size: 64, temperature: 0, seed: 1, sjd: { window } }),
      [ref.prompt, window] as const,
    );
    expect(Array.from(r.codes)).toEqual(ref.greedy.codes);
    console.log(`webgpu sjd window ${window}: ${JSON.stringify(r.stats)}`);
    const s = r.stats;
    expect(s).toMatchObject({ backend: 'webgpu', steps: 16, sjd: { window } });
    expect(s.runs + s.sjd!.draftsAccepted).toBe(15);
    expect(s.sjd!.sessionRuns).toBe(2 * s.runs);
    expect(s.readbacks).toBe(s.sjd!.sessionRuns + 2); // every window run + each stream's prefill logits
    // GPU-resident feeds: no allocation per run (ORT's pool grows only when a window length is new).
    expect(s.steadyStateAllocations).toBeLessThan(s.runs);
    session.console.assertClean();
  });

  it('a seed gives the same SJD tokens as Node on the CPU; cancel leaves it ready; memory stays flat', async () => {
    const request = { prompt: 'a small house by a lake', size: 64, seed: 4242, topK: 50, temperature: 0.9, sjd: { window: 4 } };
    const result = await session.page.evaluate(async (req) => {
      const { client } = simplear;
      const a = await client.generate(req);
      const memory = [(await client.gpuMemory())!.liveBytes];
      const controller = new AbortController();
      const cancelled = await client
        .generate({ ...req, size: 128 }, { signal: controller.signal, onProgress: (p) => p.phase === 'decode' && p.done >= 8 && controller.abort() })
        .then(() => 'completed', (e: Error) => e.name);
      const b = await client.generate(req);
      memory.push((await client.gpuMemory())!.liveBytes);
      return { a: Array.from(a.codes), b: Array.from(b.codes), cancelled, memory, stats: a.stats };
    }, request);
    const cpuEngine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    const cpu = await cpuEngine.generate(request);
    await cpuEngine.dispose();
    expect(result.a).toEqual(Array.from(cpu.codes));
    expect(result.cancelled).toBe('AbortError');
    expect(result.b).toEqual(result.a);
    console.log(`webgpu sjd sampled: ${JSON.stringify(result.stats)}; GPU memory (bytes): ${result.memory.join(', ')}`);
    expect(result.memory.at(-1)).toBe(result.memory[0]);
    session.console.assertClean();
  });
});
