// The LM graph on ONNX Runtime Web's native WebGPU EP in headless Chromium (SwiftShader where
// there is no GPU) against onnxruntime-node's CPU EP: teacher-forced golden prompts, prefill by
// the schedule of session-io.ts (first ≤ 31 tokens, then token by token), decode with the KV cache
// in GPU buffers bound in place (past_key.{i} and present_key.{i} are the same GPUBuffer).
// Slow on SwiftShader (minutes: shader compilation, ~40 calls), so opt-in: LM_WEBGPU=1
// (LM_WEBGPU_FORMATS=q4,q8,f32 to choose weight formats; default q4).
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { chromium } from 'playwright-core';
import { startServer } from '../../tools/serve.ts';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { openSafetensors } from '../../src/core/formats/safetensors.ts';
import { readModelConfig } from '../../src/core/formats/model-config.ts';
import { collectLmWeights, type LmWeightFormat } from '../../src/core/convert/lm/convert-weights.ts';
import { buildLmGraph } from '../../src/core/convert/lm/graph.ts';
import { LmRunner, decodeFeeds, prefillSchedule, type StepFeeds } from '../../src/core/convert/lm/session-io.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FIXTURES = join(import.meta.dirname, '../fixtures');
const ORT_DIST = join(import.meta.dirname, '../../node_modules/onnxruntime-web/dist');
const enabled = !!process.env.LM_WEBGPU && existsSync(CHROMIUM);

// Runs in the page: every call of `steps` with the cache in GPU buffers, returns max |Δ| vs the
// CPU EP's logits over the rows that are final in each call.
const PAGE = `<!doctype html><script type="module">
import * as ort from './ort.webgpu.bundle.min.mjs';
ort.env.wasm.numThreads = 1;
window.result = (async () => {
  const { spec, cap, cases } = await (await fetch('spec.json')).json();
  const out = {};
  for (const c of cases) {
    const steps = c.steps;
    const B = steps[0].seqlens_k.length;
    const dims = [B, spec.numKvHeads, cap, spec.headDim];
    const n = dims.reduce((a, b) => a * b, 1);
    try {
      const s = await ort.InferenceSession.create(c.model + '.onnx', { executionProviders: ['webgpu'] });
      const device = await ort.env.webgpu.device;
      const cache = {};
      for (let i = 0; i < spec.numLayers; i++) for (const k of ['key', 'value']) {
        const buf = device.createBuffer({ size: n * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
        cache[k + '.' + i] = ort.Tensor.fromGpuBuffer(buf, { dataType: 'float32', dims });
      }
      let maxErr = 0;
      for (let t = 0; t < steps.length; t++) {
        const f = steps[t];
        const feeds = {
          input_ids: new ort.Tensor('int32', Int32Array.from(f.input_ids), [B, f.seq]),
          seqlens_k: new ort.Tensor('int32', Int32Array.from(f.seqlens_k), [B]),
          total_sequence_length: new ort.Tensor('int32', Int32Array.of(f.total_sequence_length), []),
          logits_index: new ort.Tensor('int32', Int32Array.from(f.logits_index), [B, f.rows]),
        };
        const fetches = { logits: null };
        for (let i = 0; i < spec.numLayers; i++) for (const k of ['key', 'value']) {
          feeds['past_' + k + '.' + i] = cache[k + '.' + i];
          fetches['present_' + k + '.' + i] = cache[k + '.' + i];
        }
        const l = (await s.run(feeds, fetches)).logits.data;
        const V = l.length / B;
        for (let j = 0; j < l.length; j++) if (f.final[Math.floor(j / V)]) maxErr = Math.max(maxErr, Math.abs(l[j] - c.expected[t][j]));
      }
      out[c.name] = maxErr;
      await s.release();
    } catch (e) { out[c.name] = 'FAILED ' + (e.message ?? e); }
  }
  return out;
})();
</script>`;

describe.skipIf(!enabled)('LM graph on the WebGPU EP (Chromium) vs the CPU EP', () => {
  it('teacher-forced golden prompts (batch 2, and batch 1 in chunks): prefill schedule + 7 decode steps, cache in place on the GPU', async () => {
    const golden = JSON.parse(readFileSync(join(FIXTURES, 'golden/golden.json'), 'utf8'));
    const c = golden.lm[0];
    const folder = openFolder(join(FIXTURES, c.checkpoint));
    const { lm: spec } = await readModelConfig(folder, golden.tokenizer.len);
    const reader = await openSafetensors(folder);
    const cap = 64;
    /** Prefill schedule (calls of ≤ 31 tokens) + teacher-forced decode steps for these prompts. */
    const schedule = (prompts: number[][]) => {
      const steps: (StepFeeds & { final: boolean[] })[] = [];
      for (const call of prefillSchedule(prompts, 31)) steps.push({ ...call.feeds, final: call.final });
      let lens = prompts.map((p) => p.length);
      for (const t of c.teacher_forcing.fed_token_ids) {
        steps.push({ ...decodeFeeds(prompts.map(() => t), lens), final: prompts.map(() => true) });
        lens = lens.map((x: number) => x + 1);
      }
      return steps;
    };
    const dir = mkdtempSync(join(tmpdir(), 'lm-webgpu-'));
    const cases: { name: string; model: string; steps: unknown[]; expected: number[][] }[] = [];
    const formats = (process.env.LM_WEBGPU_FORMATS ?? 'q4').split(',') as LmWeightFormat[];
    for (const format of formats) {
      const w = await collectLmWeights(reader, spec, { weights: format });
      const model = buildLmGraph(spec, (n) => w.get(n), { activations: 'f32', maxSeqLen: cap });
      writeFileSync(join(dir, `${format}.onnx`), model);
      const runs: [string, number[][]][] = [[`${format} batch 2`, [c.cond_ids, c.uncond_ids]]];
      if (format === formats[0]) runs.push([`${format} batch 1 (uncond, chunks 31+14)`, [c.uncond_ids]]);
      for (const [name, prompts] of runs) {
        const steps = schedule(prompts);
        const s = await ort.InferenceSession.create(model);
        const r = new LmRunner(ort, s, spec, { batch: prompts.length, capacity: cap });
        const expected: number[][] = [];
        for (const st of steps) expected.push(Array.from(await r.run(st)));
        await s.release();
        cases.push({ name, model: format, steps, expected });
      }
    }
    const json = (k: string, v: unknown) => (ArrayBuffer.isView(v) ? Array.from(v as Int32Array) : v);
    writeFileSync(join(dir, 'spec.json'), JSON.stringify({ spec, cap, cases }, json));
    writeFileSync(join(dir, 'index.html'), PAGE);
    for (const f of ['ort.webgpu.bundle.min.mjs', 'ort-wasm-simd-threaded.asyncify.wasm']) copyFileSync(join(ORT_DIST, f), join(dir, f));
    const server = await startServer({ root: dir, port: 0 });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--enable-unsafe-webgpu'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${server.port}/index.html`);
      const result = (await page.evaluate(() => (window as unknown as { result: Promise<Record<string, number | string>> }).result));
      console.log('[lm webgpu] max |Δ| vs CPU EP:', result);
      for (const cse of cases) expect(result[cse.name]).toBeLessThan(1e-4);
    } finally {
      await browser.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 900_000);
});
