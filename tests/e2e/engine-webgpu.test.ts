// The engine in a real Chromium on real WebGPU (SwiftShader here): the worker reads the tiny
// fixture checkpoints over HTTP, converts them, and generates with the GPU-resident loop.
//  - greedy tokens equal the PyTorch reference; sampled tokens equal Node's CPU engine (same seed);
//  - the decode loop's counters: one run per step, one readback per latent row, no allocations;
//  - kept rows (redraw below a row): the tokens below them equal Node's CPU engine's;
//  - N images per request: one pass of 2N rows whose images equal the single generations with
//    seeds s + i and Node's CPU engine's batch, one LM run per step for all, buffers released;
//  - cancel rejects with AbortError and 20 cancel/generate cycles leave GPU memory flat.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { loadFixtureInPage, openFixtureEngine, type AppSession, type FixtureApp } from './browser.ts';
import { goldenGreedy, loadFixtureModel } from '../helpers/fixture-model.ts';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { WEBGPU_BATCH_MEMORY_BYTES, webgpuBatchMemory } from '../../src/core/engine/create-webgpu.ts';
import { kvBytesPerStream } from '../../src/core/engine/engine.ts';
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

describe('WebGPU engine in Chromium', () => {
  it('greedy generation gives exactly the reference tokens, with the loop on the GPU', async () => {
    const ref = goldenGreedy('tiny-simplear');
    const r = await session.page.evaluate(
      (prompt) => simplear.client.generate({ prompt, size: 64, temperature: 0, seed: 1 }),
      ref.prompt,
    );
    expect(Array.from(r.codes)).toEqual(ref.greedy.codes);
    const side = 4;
    console.log(`webgpu stats: ${JSON.stringify(r.stats)} timings: ${JSON.stringify(r.timings)}`);
    expect(r.stats).toMatchObject({
      backend: 'webgpu',
      steps: side * side,
      runs: side * side - 1, // one LM run per step (the last code needs none)
      readbacks: side, // one per latent row (the last row's is the final read)
      steadyStateAllocations: 0,
      graphCapture: false, // a software adapter: off unless asked for (create-webgpu.ts)
    });
    // Every step encodes the same kernels: at least a few per layer, plus the sampler's one.
    expect(Number.isInteger(r.stats.dispatchesPerStep)).toBe(true);
    expect(r.stats.dispatchesPerStep).toBeGreaterThan(2 * 5);
    session.console.assertClean();
  });

  it('a seed gives the same tokens and pixels as Node on the CPU, and different seeds differ', async () => {
    // SwiftShader runs the one-work-group sampler on a CPU core: ~0.5 s per step with top-p.
    const request = { prompt: 'a small house by a lake', size: 64, seed: 4242, topK: 2000, topP: 0.95, temperature: 0.9 };
    const gpu = await session.page.evaluate((req) => simplear.client.generate(req), request);
    const gpu2 = await session.page.evaluate((req) => simplear.client.generate(req), request);
    const other = await session.page.evaluate((req) => simplear.client.generate({ ...req, seed: 4243 }), request);
    const cpuEngine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    const cpu = await cpuEngine.generate(request);
    await cpuEngine.dispose();
    expect(Array.from(gpu.codes)).toEqual(Array.from(cpu.codes));
    expect(Array.from(gpu2.codes)).toEqual(Array.from(gpu.codes));
    expect(Array.from(other.codes)).not.toEqual(Array.from(gpu.codes));
    // Same codes → the WebGPU decoder's bytes are within one level of onnxruntime-node's.
    let maxDiff = 0;
    for (let i = 0; i < cpu.rgba.length; i++) maxDiff = Math.max(maxDiff, Math.abs(cpu.rgba[i]! - gpu.rgba[i]!));
    expect(maxDiff).toBeLessThanOrEqual(1);
  });

  it("a repetition penalty: the WGSL sampler's seen codes stay on the GPU and give Node's CPU tokens, greedy and sampled", async () => {
    const requests = [
      { prompt: 'a red cat', size: 64, seed: 1, temperature: 0, repetitionPenalty: 1.3 },
      { prompt: 'a small house by a lake', size: 64, seed: 4242, topK: 2000, temperature: 0.9, repetitionPenalty: 1.3 },
    ];
    const gpu = await session.page.evaluate((reqs) => Promise.all(reqs.map((req) => simplear.client.generate(req))), requests);
    const cpuEngine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    for (const [i, req] of requests.entries()) {
      const cpu = await cpuEngine.generate(req);
      const unpenalised = await cpuEngine.generate({ ...req, repetitionPenalty: 1 });
      // The penalty changes these tokens, so equal tokens are evidence.
      expect(Array.from(cpu.codes)).not.toEqual(Array.from(unpenalised.codes));
      expect(Array.from(gpu[i]!.codes), `request ${i}`).toEqual(Array.from(cpu.codes));
      expect(gpu[i]!.settings.repetitionPenalty).toBe(1.3);
      expect(gpu[i]!.stats).toMatchObject({ readbacks: 4, steadyStateAllocations: 0 });
    }
    await cpuEngine.dispose();
    session.console.assertClean();
  });

  it("kept rows: the GPU sampler starts below them (step counter and kept codes in its state) and gives Node's CPU tokens", async () => {
    const cpuEngine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    // Another seed's image supplies the kept rows, so the rows below differ from both plain images.
    const donor = await cpuEngine.generate({ prompt: 'a red cat', size: 64, seed: 7, topK: 2000, temperature: 0.9 });
    const keep = { codes: Array.from(donor.codes), rows: 2 };
    const requests = [
      { prompt: 'a small house by a lake', size: 64, seed: 1, temperature: 0, keep },
      { prompt: 'a small house by a lake', size: 64, seed: 4242, topK: 2000, temperature: 0.9, repetitionPenalty: 1.3, keep },
    ];
    const gpu = await session.page.evaluate(
      (reqs) =>
        Promise.all(
          reqs.map(async (req) => {
            const firstDecode: number[] = [];
            const r = await simplear.client.generate(req, { onProgress: (p) => p.phase === 'decode' && firstDecode.push(p.done) });
            return { ...r, firstDone: firstDecode[0] };
          }),
        ),
      requests,
    );
    for (const [i, req] of requests.entries()) {
      const cpu = await cpuEngine.generate(req);
      const unkept = await cpuEngine.generate({ ...req, keep: undefined });
      expect(Array.from(cpu.codes.slice(0, 8))).toEqual(keep.codes.slice(0, 8));
      expect(Array.from(cpu.codes.slice(8))).not.toEqual(Array.from(unkept.codes.slice(8)));
      expect(Array.from(gpu[i]!.codes), `request ${i}`).toEqual(Array.from(cpu.codes));
      expect(gpu[i]!.keptRows).toBe(2);
      expect(gpu[i]!.firstDone).toBe(8);
      // 8 codes sampled: 7 LM runs, one readback per row below the kept ones.
      expect(gpu[i]!.stats).toMatchObject({ steps: 8, runs: 7, readbacks: 2, steadyStateAllocations: 0 });
    }
    await cpuEngine.dispose();
    session.console.assertClean();
  });

  // Batches use a short negative prompt (one prefill run) and few codes where the reference allows:
  // SwiftShader takes seconds per LM run on a loaded machine.
  it('a sampled batch of 3 is one pass of 6 rows: image i is the single generation with seed s + i, and Node’s batch', { timeout: 600_000 }, async () => {
    const request = { prompt: 'a small house by a lake', negativePrompt: 'blurry', size: 32, seed: 4242, topK: 2000, topP: 0.95, temperature: 0.9 };
    const r = await session.page.evaluate(async (req) => {
      const { client } = simplear;
      const rows: { image?: number; count?: number; done: number }[] = [];
      const batch = await client.generateImages(
        { ...req, count: 3 },
        { onProgress: (p) => p.phase === 'decode' && p.codes && p.codes.length > 0 && rows.push({ image: p.image, count: p.count, done: p.done }) },
      );
      const memory = [(await client.gpuMemory())!.liveBytes];
      const again = await client.generateImages({ ...req, count: 3 });
      memory.push((await client.gpuMemory())!.liveBytes);
      const singles = [];
      for (let i = 0; i < 3; i++) singles.push(await client.generate({ ...req, seed: req.seed + i }));
      return { batch, again, memory, singles, rows };
    }, request);
    const cpuEngine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    const cpu = await cpuEngine.generateImages({ ...request, count: 3 });
    await cpuEngine.dispose();
    const codes = r.batch.map((b) => Array.from(b.codes));
    expect(r.batch.map((b) => b.settings.seed)).toEqual([4242, 4243, 4244]);
    for (let i = 0; i < 3; i++) {
      expect(codes[i], `image ${i}`).toEqual(Array.from(r.singles[i]!.codes));
      expect(codes[i], `image ${i} (Node)`).toEqual(Array.from(cpu[i]!.codes));
      expect(Array.from(r.again[i]!.codes), `image ${i} again`).toEqual(codes[i]);
      expect(r.batch[i]!.image).toEqual({ index: i, count: 3 });
      // Every row of every image, with its index.
      expect(r.rows.filter((p) => p.image === i).map((p) => p.done), `image ${i}`).toEqual([2, 4]);
    }
    expect(r.rows.every((p) => p.count === 3)).toBe(true);
    expect(new Set(codes.map((c) => c.join(','))).size).toBe(3);
    console.log(`webgpu batch of 3 stats: ${JSON.stringify(r.batch[0]!.stats)}; single: ${JSON.stringify(r.singles[0]!.stats)}; GPU memory after two batches: ${r.memory.join(', ')}`);
    // One prefill and one LM run per step for all three images.
    expect(r.batch[0]!.stats).toMatchObject({ backend: 'webgpu', imagesPerPass: 3, runs: 3, prefillRuns: 1, readbacks: 2, steadyStateAllocations: 0, graphCapture: false });
    // A step of 6 rows encodes the kernels of a step of 2 (the sampler's one dispatch has a work-group per image).
    expect(r.batch[0]!.stats.dispatchesPerStep).toBe(r.singles[0]!.stats.dispatchesPerStep);
    // The first batch's KV cache and buffers went with it: a second one leaves the same.
    expect(r.memory[1]).toBe(r.memory[0]);
    session.console.assertClean();
  });

  it("greedy f32 batches: every image has the reference's tokens, or Node's with a penalty, below kept rows too", { timeout: 600_000 }, async () => {
    const ref = goldenGreedy('tiny-simplear');
    const greedy = { prompt: ref.prompt, size: 64, temperature: 0, seed: 1 };
    const cpuEngine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
    const donor = await cpuEngine.generate({ prompt: 'a red cat', size: 64, seed: 7, topK: 2000, temperature: 0.9 });
    const keep = { codes: Array.from(donor.codes), rows: 2 };
    const penalised = [
      { prompt: 'a red cat', negativePrompt: 'blurry', size: 64, seed: 1, temperature: 0, repetitionPenalty: 1.3, count: 2 },
      { prompt: 'a small house by a lake', negativePrompt: 'blurry', size: 64, seed: 2, topK: 2000, temperature: 0.9, repetitionPenalty: 1.3, keep, count: 2 },
    ];
    const r = await session.page.evaluate(
      async ([greedy, penalised]) => {
        const { client } = simplear;
        const four = await client.generateImages({ ...greedy, count: 4 });
        const withPenalty = [];
        for (const req of penalised) withPenalty.push(await client.generateImages(req));
        return { four, withPenalty };
      },
      [greedy, penalised] as const,
    );
    for (const [i, image] of r.four.entries()) expect(Array.from(image.codes), `image ${i}`).toEqual(ref.greedy.codes);
    console.log(`webgpu batch of 4 stats: ${JSON.stringify(r.four[0]!.stats)}`);
    expect(r.four[0]!.stats).toMatchObject({ imagesPerPass: 4, runs: 15, readbacks: 4, steadyStateAllocations: 0 });
    for (const [k, req] of penalised.entries()) {
      const cpu = await cpuEngine.generateImages(req);
      const unpenalised = await cpuEngine.generateImages({ ...req, repetitionPenalty: 1 });
      for (let i = 0; i < 2; i++) {
        // The penalty changes these tokens, so equal tokens are evidence.
        expect(Array.from(cpu[i]!.codes)).not.toEqual(Array.from(unpenalised[i]!.codes));
        expect(Array.from(r.withPenalty[k]![i]!.codes), `request ${k} image ${i}`).toEqual(Array.from(cpu[i]!.codes));
      }
    }
    expect(r.withPenalty[1]!.map((b) => b.keptRows)).toEqual([2, 2]);
    expect(r.withPenalty[1]![0]!.stats).toMatchObject({ imagesPerPass: 2, steps: 8, runs: 7, readbacks: 2 });
    await cpuEngine.dispose();
    session.console.assertClean();
  });

  it('a cancelled batch rejects with AbortError within its row, releases its buffers, and leaves the engine ready', async () => {
    const request = { prompt: 'a tree', negativePrompt: 'blurry', size: 32, seed: 5, count: 2 };
    const r = await session.page.evaluate(async (req) => {
      const { client } = simplear;
      const done = await client.generateImages(req);
      const before = (await client.gpuMemory())!.liveBytes;
      const controller = new AbortController();
      let last = 0;
      const outcome = await client
        .generateImages(req, {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.phase !== 'decode') return;
            last = Math.max(last, p.done);
            if (p.done >= 2) controller.abort();
          },
        })
        .then(() => 'completed', (e: Error) => e.name);
      // The client rejects at once; the worker's pass unwinds after: measure once the next one is done.
      const again = await client.generateImages(req);
      const after = (await client.gpuMemory())!.liveBytes;
      return { outcome, last, before, after, same: JSON.stringify(again.map((a) => Array.from(a.codes))) === JSON.stringify(done.map((a) => Array.from(a.codes))) };
    }, request);
    expect(r.outcome).toBe('AbortError');
    // No progress past the row in which the cancel landed (4 codes would be the whole image).
    expect(r.last).toBe(2);
    expect(r.after).toBe(r.before);
    expect(r.same).toBe(true);
    session.console.assertClean();
  });

  it("the batch budget: each layer's K or V buffer within the device's largest buffer, all of them within 1 GiB", () => {
    const lm = { numLayers: 24, numKvHeads: 2, headDim: 64 }; // SimpleAR-0.5B
    const big = { maxBufferSize: 4 * 2 ** 30, maxStorageBufferBindingSize: 2 * 2 ** 30 };
    expect(webgpuBatchMemory(big, lm, 'f16')).toEqual({ budgetBytes: WEBGPU_BATCH_MEMORY_BYTES, bytesPerValue: 2, limit: 'the WebGPU batch budget' });
    // At 1024 px, even with the longest prompt (512 tokens), 8 images fit with f16; with f32, 4.
    const perImage = (bytes: number) => 2 * kvBytesPerStream(lm, 512 + 64 * 64, bytes);
    expect(Math.floor(WEBGPU_BATCH_MEMORY_BYTES / perImage(2))).toBeGreaterThanOrEqual(8);
    expect(Math.floor(WEBGPU_BATCH_MEMORY_BYTES / perImage(4))).toBe(4);
    // A device whose storage bindings stop at 16 MiB: no buffer may be larger, whatever the total.
    const small = webgpuBatchMemory({ ...big, maxStorageBufferBindingSize: 2 ** 24 }, lm, 'f32');
    expect(small).toEqual({ budgetBytes: 48 * 2 ** 24, bytesPerValue: 4, limit: "this GPU's largest buffer" });
    expect(webgpuBatchMemory(big, lm, 'f32', 2 ** 20).budgetBytes).toBe(2 ** 20);
  });

  it('cancel stops within a step, rejects with AbortError, and 20 cycles leave GPU memory flat', async () => {
    // A short negative prompt keeps the prefill to one run, so 20 cycles fit on SwiftShader.
    const base = { prompt: 'a tree', negativePrompt: 'blurry', size: 32 };
    const result = await session.page.evaluate(async (base) => {
      const { client } = simplear;
      const reference = await client.generate({ ...base, seed: 99 });
      const memory: number[] = [];
      const outcomes: string[] = [];
      const overshoot: number[] = [];
      for (let i = 0; i < 20; i++) {
        const controller = new AbortController();
        let stoppedAt = -1;
        let lastDone = 0;
        const run = client.generate(
          { ...base, seed: i },
          {
            signal: controller.signal,
            onProgress: (p) => {
              if (p.phase !== 'decode') return;
              lastDone = p.done;
              if (p.done >= 2 && stoppedAt < 0) {
                stoppedAt = p.done;
                controller.abort();
              }
            },
          },
        );
        outcomes.push(await run.then(() => 'completed', (e: Error) => e.name));
        overshoot.push(lastDone - stoppedAt);
        memory.push((await client.gpuMemory())!.liveBytes);
      }
      const again = await client.generate({ ...base, seed: 99 });
      return { memory, outcomes, overshoot, same: JSON.stringify(Array.from(again.codes)) === JSON.stringify(Array.from(reference.codes)) };
    }, base);
    expect(result.outcomes).toEqual(Array(20).fill('AbortError'));
    // No progress is reported past the row in which the cancel landed.
    expect(Math.max(...result.overshoot)).toBeLessThanOrEqual(0);
    // The engine is ready afterwards: the same seed gives the same image as before the cycles.
    expect(result.same).toBe(true);
    console.log(`GPU memory after each cancel cycle (bytes): ${result.memory.join(', ')}`);
    // Whatever ORT caches is allocated in the first cycles; after that nothing grows.
    expect(result.memory.at(-1)).toBe(result.memory[2]);
    session.console.assertClean();
  });

  it('q4 weights: the decode step is a captured graph replayed, with the tokens of Node at the same precision; SJD and batches still work', { timeout: 600_000 }, async () => {
    // Runs last: it replaces the f32 engine the other tests share. q4 on SwiftShader takes ~3 s a
    // run, and a captured graph takes the prompts one token per run: short prompts, 2×2 codes.
    const info = await loadFixtureInPage(fixture, { backend: 'webgpu', weights: 'q4', graphCapture: true });
    expect(info).toMatchObject({ backend: 'webgpu', activations: 'f32' });
    const greedy = { prompt: 'a red fox', negativePrompt: 'blurry', size: 32, temperature: 0, seed: 1 };
    const r = await session.page.evaluate(
      async (greedy) => ({
        plain: await simplear.client.generate(greedy),
        sjd: await simplear.client.generate({ ...greedy, sjd: { window: 3 } }),
        batch: await simplear.client.generateImages({ ...greedy, count: 2 }),
        again: await simplear.client.generate(greedy),
      }),
      greedy,
    );
    console.log(`captured webgpu stats: ${JSON.stringify(r.plain.stats)} timings: ${JSON.stringify(r.plain.timings)}`);
    expect(r.plain.stats).toMatchObject({ graphCapture: true, steps: 4, runs: 3, readbacks: 2, steadyStateAllocations: 0 });
    // A replay encodes the recorded kernels again: whole dispatches per step, as many each step.
    expect(Number.isInteger(r.plain.stats.dispatchesPerStep)).toBe(true);
    expect(r.plain.stats.dispatchesPerStep).toBeGreaterThan(2 * 5);
    // One prefill run per token of the longer prompt (a captured graph has one shape).
    expect(r.plain.stats.prefillRuns).toBeGreaterThan(1);
    // Node on the same q4 weights at the same precision (f32 activations, MatMulNBits level 0).
    const cpuEngine = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'q4'), {
      maxLatentSide: 8,
      activations: 'f32',
      accuracyLevel: 0,
    });
    const cpu = await cpuEngine.generate(greedy);
    await cpuEngine.dispose();
    expect(Array.from(r.plain.codes)).toEqual(Array.from(cpu.codes));
    // SJD runs its windows on a session without capture, and stays exact.
    expect(r.sjd.stats.graphCapture).toBe(false);
    expect(Array.from(r.sjd.codes)).toEqual(Array.from(r.plain.codes));
    // A captured graph has the pair's shape: a batch steps its 4 rows on that session without
    // capture, one run per step for both images, and stays exact.
    // That session, open now, also takes the prefill: both prompts in one chunk.
    expect(r.batch[0]!.stats).toMatchObject({ graphCapture: false, imagesPerPass: 2, runs: 3, prefillRuns: 1 });
    for (const image of r.batch) expect(Array.from(image.codes)).toEqual(Array.from(r.plain.codes));
    // The captured replay on the pair's buffers after the other session wrote them in its prefill.
    expect(r.again.stats).toMatchObject({ graphCapture: true, runs: 3, prefillRuns: 1 });
    expect(Array.from(r.again.codes)).toEqual(Array.from(r.plain.codes));
    session.console.assertClean();
  });
});
