// The LM graph (src/core/convert/lm) on onnxruntime-node against a float64 TypeScript reference,
// on a random tiny Qwen2 (no fixtures needed): f32 weights match to 1e-4; quantized variants are
// measured and printed.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import type { LmSpec } from '../../src/core/model-spec.ts';
import { collectLmWeights, type LmWeightFormat } from '../../src/core/convert/lm/convert-weights.ts';
import { buildLmGraph } from '../../src/core/convert/lm/graph.ts';
import { LmRunner } from '../../src/core/convert/lm/session-io.ts';
import { Qwen2Reference } from '../../src/core/convert/lm/reference.ts';
import { memoryReader, randomCheckpoint } from '../../src/core/convert/lm/random-model.ts';

const spec: LmSpec = {
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 16,
  intermediateSize: 80, // not a multiple of 32: exercises MatMulNBits K padding
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  vocabSize: 120 + 300,
  visualOffset: 120,
  visualCount: 300,
  tieWordEmbeddings: true,
};

const cond = [5, 17, 3, 99, 118, 7, 64];
const uncond = [11, 2, 40, 119];
const steps = [120 + 5, 120 + 299, 120, 120 + 77, 120 + 150];

async function runGraph(format: LmWeightFormat, s: LmSpec, ckpt: Map<string, Float32Array>) {
  const weights = await collectLmWeights(memoryReader(s, ckpt), s, { weights: format, rowChunk: 50 });
  const model = buildLmGraph(s, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64 });
  const session = await ort.InferenceSession.create(model);
  const runner = new LmRunner(ort, session, s, { capacity: 32 });
  const V = s.visualCount;
  const out: Float32Array[][] = [[], []];
  const push = (l: Float32Array) => {
    out[0]!.push(l.slice(0, V));
    out[1]!.push(l.slice(V, 2 * V));
  };
  push(await runner.prefill([cond, uncond]));
  for (const t of steps) push(await runner.step([t, t]));
  await session.release();
  return out;
}

function reference(s: LmSpec, ckpt: Map<string, Float32Array>) {
  const get = (n: string) => ckpt.get(n)!;
  return [cond, uncond].map((prompt) => {
    const ref = new Qwen2Reference(s, get, 64);
    const rows = [ref.forward(prompt).at(-1)!];
    for (const t of steps) rows.push(ref.forward([t])[0]!);
    return rows;
  });
}

function maxAbs(a: Float32Array[][], b: Float64Array[][]) {
  let m = 0;
  let scale = 0;
  let mean = 0;
  let n = 0;
  let agree = 0;
  let rows = 0;
  for (let s = 0; s < a.length; s++) {
    for (let t = 0; t < a[s]!.length; t++) {
      const x = a[s]![t]!;
      const y = b[s]![t]!;
      let ax = 0;
      let ay = 0;
      for (let i = 0; i < x.length; i++) {
        const d = Math.abs(x[i]! - y[i]!);
        m = Math.max(m, d);
        scale = Math.max(scale, Math.abs(y[i]!));
        mean += d;
        n++;
        if (x[i]! > x[ax]!) ax = i;
        if (y[i]! > y[ay]!) ay = i;
      }
      rows++;
      if (ax === ay) agree++;
    }
  }
  return { max: m, mean: mean / n, top1: agree / rows, scale };
}

describe('LM graph vs float64 reference (random tiny Qwen2)', () => {
  const ckpt = randomCheckpoint(spec);
  const ref = reference(spec, ckpt);

  it('f32 weights: prefill (different prompt lengths) + decode through the static cache match to 1e-4', async () => {
    const got = await runGraph('f32', spec, ckpt);
    const e = maxAbs(got, ref);
    console.log(`[lm-graph] f32: max abs ${e.max.toExponential(2)}, mean ${e.mean.toExponential(2)}`);
    expect(e.max).toBeLessThan(1e-4);
  });

  it('untied head (lm_head.weight) is used when present', async () => {
    const s2 = { ...spec, tieWordEmbeddings: false };
    const c2 = randomCheckpoint(s2, 7);
    const e = maxAbs(await runGraph('f32', s2, c2), reference(s2, c2));
    expect(e.max).toBeLessThan(1e-4);
  });

  // Loose sanity bounds, relative to the largest |logit|; the golden tests report the real numbers.
  for (const [format, bound] of [['f16', 0.01], ['q8', 0.05], ['q4', 0.5]] as const) {
    it(`${format} weights stay close to the reference`, async () => {
      const e = maxAbs(await runGraph(format, spec, ckpt), ref);
      console.log(`[lm-graph] ${format}: max abs ${e.max.toExponential(2)}, mean ${e.mean.toExponential(2)} (logit scale ${e.scale.toFixed(2)}), top-1 agreement ${(e.top1 * 100).toFixed(0)}%`);
      expect(e.max).toBeLessThan(bound * e.scale);
    });
  }
});

describe('prefill schedule (calls of ≤ maxChunk tokens, for WebGPU adapters with narrow subgroups)', () => {
  const ckpt = randomCheckpoint(spec);
  const ref = reference(spec, ckpt);
  for (const maxFirst of [1, 3, 5]) {
    it(`batch 2, maxChunk = ${maxFirst}: same logits as a one-call prefill`, async () => {
      const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: 'f32' });
      const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64 }));
      const runner = new LmRunner(ort, session, spec, { capacity: 32 });
      const V = spec.visualCount;
      const got: Float32Array[][] = [[], []];
      const push = (l: Float32Array) => {
        got[0]!.push(l.slice(0, V));
        got[1]!.push(l.slice(V, 2 * V));
      };
      push(await runner.prefill([cond, uncond], maxFirst));
      for (const t of steps) push(await runner.step([t, t]));
      await session.release();
      expect(maxAbs(got, ref).max).toBeLessThan(1e-4);
    });
  }
});

describe('f16 activations (the graph for GPUs with shader-f16), on the CPU EP', () => {
  const ckpt = randomCheckpoint(spec);
  for (const format of ['q4', 'f16'] as const) {
    it(`${format} weights: builds, runs with an f16 KV cache, stays close to f32 activations`, async () => {
      const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: format });
      const run = async (act: 'f32' | 'f16') => {
        const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: act, maxSeqLen: 64 }));
        const runner = new LmRunner(ort, session, spec, { capacity: 32, dtype: act === 'f16' ? 'float16' : 'float32' });
        const V = spec.visualCount;
        const out: Float32Array[][] = [[], []];
        const push = (l: Float32Array) => {
          out[0]!.push(l.slice(0, V));
          out[1]!.push(l.slice(V, 2 * V));
        };
        push(await runner.prefill([cond, uncond]));
        for (const t of steps) push(await runner.step([t, t]));
        await session.release();
        return out;
      };
      const a = await run('f32');
      const b = await run('f16');
      const toF64 = (x: Float32Array[][]) => x.map((r) => r.map((v) => Float64Array.from(v)));
      const e = maxAbs(b, toF64(a));
      console.log(`[lm-graph] ${format} weights, f16 vs f32 activations: max abs ${e.max.toExponential(2)} (logit scale ${e.scale.toFixed(2)})`);
      expect(e.max).toBeLessThan(0.02 * e.scale);
    });
  }
});

describe('batch-1 prefill in chunks (one stream per session)', () => {
  const ckpt = randomCheckpoint(spec);
  const ref = reference(spec, ckpt);
  for (const chunk of [2, 3, 7]) {
    it(`chunks of ${chunk}: same logits as the reference`, async () => {
      const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: 'f32' });
      const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64 }));
      const runner = new LmRunner(ort, session, spec, { batch: 1, capacity: 32 });
      const got = [await runner.prefill([cond], chunk)];
      for (const t of steps) got.push(await runner.step([t]));
      await session.release();
      expect(maxAbs([got], [ref[0]!]).max).toBeLessThan(1e-4);
    });
  }
});

describe('KV cache that grows with the context (LmRunner growBy)', () => {
  const ckpt = randomCheckpoint(spec);
  // cond 7 tokens, uncond 4, then 5 steps: the cache reaches 12 slots.
  const run = async (act: 'f32' | 'f16', opts: { growBy: number; preallocateOutputs?: boolean }) => {
    const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: 'f32' });
    const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: act, maxSeqLen: 64 }));
    const runner = new LmRunner(ort, session, spec, { capacity: 32, dtype: act === 'f16' ? 'float16' : 'float32', ...opts });
    const rows = [await runner.prefill([cond, uncond])];
    const capacities = [runner.capacity];
    for (const t of steps) {
      rows.push((await runner.step([t, t])).slice());
      capacities.push(runner.capacity);
    }
    return { rows, capacities, runner, session };
  };

  for (const act of ['f32', 'f16'] as const) {
    for (const preallocateOutputs of [true, false]) {
      it(`${act}, ${preallocateOutputs ? 'pre-allocated outputs (in place)' : 'fresh outputs adopted (the wasm EP)'}: across chunk boundaries, the same logits bit for bit as a static cache`, async () => {
        const fixed = await run(act, { growBy: 0, preallocateOutputs });
        expect(fixed.capacities.every((c) => c === 32)).toBe(true);
        expect(fixed.runner.growths).toBe(0);
        const grown = await run(act, { growBy: 4, preallocateOutputs });
        // prefill needs 7 slots → 8; steps need 8, 9 (→ 12), 10, 11, 12
        expect(grown.capacities).toEqual([8, 8, 12, 12, 12, 12]);
        expect(grown.runner.growths).toBe(1);
        grown.rows.forEach((r, k) => expect(Array.from(r), `row ${k}`).toEqual(Array.from(fixed.rows[k]!)));
        await Promise.all([fixed.session.release(), grown.session.release()]);
      });
    }
  }

  it('stops at the maximum with the overflow error; a new prefill starts again from the prompt’s size', async () => {
    const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: 'f32' });
    const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64 }));
    const runner = new LmRunner(ort, session, spec, { capacity: 10, growBy: 4 });
    const first = await runner.prefill([cond, uncond]);
    expect(runner.capacity).toBe(8);
    await runner.step([125, 125]);
    await runner.step([126, 126]);
    expect(runner.capacity).toBe(10); // 9 slots needed: the next chunk would pass the maximum
    await runner.step([127, 127]);
    await expect(runner.step([128, 128])).rejects.toThrow('KV cache overflow: 11 > 10');
    const again = await runner.prefill([cond, uncond]);
    expect(runner.capacity).toBe(8);
    expect(Array.from(again)).toEqual(Array.from(first));
    await session.release();
  });

  it('batch-1 windows (speculative decoding) grow the cache mid-window', async () => {
    const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: 'f32' });
    const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64 }));
    const go = async (growBy: number) => {
      const runner = new LmRunner(ort, session, spec, { batch: 1, capacity: 32, growBy });
      const out = [await runner.prefill([cond])];
      for (const [window, keep] of [[3, 1], [4, 4], [5, 2]] as const) {
        out.push((await runner.runWindow(steps.slice(0, window))).slice());
        runner.advance(keep);
      }
      return { out, runner };
    };
    const fixed = await go(0);
    const grown = await go(4);
    // prefill 7 → 8 slots; window of 3 after 7 needs 10 → 12; 4 after 8 fits; 5 after 12 → 20
    expect(grown.runner.capacity).toBe(20);
    expect(grown.runner.growths).toBe(2);
    grown.out.forEach((r, k) => expect(Array.from(r), `call ${k}`).toEqual(Array.from(fixed.out[k]!)));
    await session.release();
  });
});
