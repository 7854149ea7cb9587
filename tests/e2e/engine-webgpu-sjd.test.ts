// Speculative Jacobi decoding on the WebGPU engine in a real Chromium (SwiftShader here), through
// the worker and client: greedy SJD gives exactly the reference tokens; a seed gives the same
// tokens as Node's CPU engine with SJD; cancel mid-SJD leaves the engine ready; the SJD buffers
// are allocated once (GPU memory flat across generations); kept rows give Node's tokens below them. SwiftShader takes seconds per window
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
    // 48 px: 9 codes, room for windows of 4 to draft and verify (the greedy test above covers 64 px).
    const request = { prompt: 'a small house by a lake', size: 48, seed: 4242, topK: 50, temperature: 0.9, sjd: { window: 4 } };
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

  it("kept rows: SJD's windows start below them and give Node's CPU tokens, greedy and sampled", async () => {
    const cpuEngine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    // Another seed's image supplies the kept rows, so the rows below differ from the plain image's.
    const donor = await cpuEngine.generate({ prompt: 'a red cat', size: 64, seed: 7, topK: 2000, temperature: 0.9 });
    const keep = { codes: Array.from(donor.codes), rows: 2 };
    const requests = [
      { prompt: 'a small house by a lake', size: 64, seed: 1, temperature: 0, sjd: { window: 3 }, keep },
      { prompt: 'a small house by a lake', size: 64, seed: 4242, topK: 50, temperature: 0.9, sjd: { window: 4 }, keep },
    ];
    const gpu = await session.page.evaluate((reqs) => Promise.all(reqs.map((req) => simplear.client.generate(req))), requests);
    for (const [i, req] of requests.entries()) {
      const cpu = await cpuEngine.generate(req);
      expect(Array.from(cpu.codes.slice(0, 8))).toEqual(keep.codes.slice(0, 8));
      expect(Array.from(gpu[i]!.codes), `request ${i}`).toEqual(Array.from(cpu.codes));
      expect(gpu[i]!.stats.runs + gpu[i]!.stats.sjd!.draftsAccepted).toBe(7); // 8 codes sampled, the first from the prefill
    }
    // Greedy SJD below kept rows is plain greedy below them.
    const plain = await cpuEngine.generate({ ...requests[0]!, sjd: null });
    expect(Array.from(gpu[0]!.codes)).toEqual(Array.from(plain.codes));
    const unkept = await cpuEngine.generate({ ...requests[0]!, keep: undefined });
    expect(Array.from(plain.codes.slice(8))).not.toEqual(Array.from(unkept.codes.slice(8)));
    await cpuEngine.dispose();
    session.console.assertClean();
  });
});
