// The LM graph (src/core/convert/lm) on onnxruntime-node against a float64 TypeScript reference,
// on a random tiny Qwen2 (no fixtures needed): f32 weights match to 1e-4; quantized variants are
// measured and printed.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import type { LmSpec } from '../../src/core/base/model-spec.ts';
import { collectLmWeights, type LmWeightFormat } from '../../src/core/convert/lm-weights.ts';
import { buildLmGraph, type KvCacheMode } from '../../src/core/model/lm-graph.ts';
import { LmRunner, createKvCache, newEntrySlots, prefillApart, prefillSchedule, resizeKvCache, writeNewEntries } from '../../src/core/runtime/lm-runner.ts';
import { Qwen2Reference } from '../../src/core/model/reference.ts';
import { memoryReader, randomCheckpoint } from '../helpers/random-model.ts';

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

/** Prefills [cond, uncond] (calls of ≤ maxChunk tokens), then decodes `steps` in both rows;
 * logits per stream: [cond rows, uncond rows]. */
async function cfgRows(runner: LmRunner, s: LmSpec, maxChunk = Infinity): Promise<Float32Array[][]> {
  const V = s.visualCount;
  const out: Float32Array[][] = [[], []];
  const push = (l: Float32Array) => {
    out[0]!.push(l.slice(0, V));
    out[1]!.push(l.slice(V, 2 * V));
  };
  push(await runner.prefill([cond, uncond], maxChunk));
  for (const t of steps) push(await runner.step([t, t]));
  return out;
}

async function runGraph(format: LmWeightFormat, s: LmSpec, ckpt: Map<string, Float32Array>) {
  const weights = await collectLmWeights(memoryReader(s, ckpt), s, { weights: format, rowChunk: 50 });
  const model = buildLmGraph(s, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64 });
  const session = await ort.InferenceSession.create(model);
  const out = await cfgRows(new LmRunner(ort, session, s, { capacity: 32 }), s);
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
      const got = await cfgRows(new LmRunner(ort, session, spec, { capacity: 32 }), spec, maxFirst);
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
        const out = await cfgRows(new LmRunner(ort, session, spec, { capacity: 32, dtype: act === 'f16' ? 'float16' : 'float32' }), spec);
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
  const run = async (act: 'f32' | 'f16', opts: { growBy: number; preallocateOutputs?: boolean; kvCache?: KvCacheMode }) => {
    const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: 'f32' });
    const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: act, maxSeqLen: 64, kvCache: opts.kvCache }));
    const runner = new LmRunner(ort, session, spec, { capacity: 32, dtype: act === 'f16' ? 'float16' : 'float32', ...opts });
    const rows = [await runner.prefill([cond, uncond])];
    const capacities = [runner.capacity];
    for (const t of steps) {
      rows.push((await runner.step([t, t])).slice());
      capacities.push(runner.capacity);
    }
    return { rows, capacities, runner, session };
  };

  const modes = [
    { preallocateOutputs: true, name: 'pre-allocated outputs (in place)' },
    { preallocateOutputs: false, name: 'fresh outputs adopted (the wasm EP)' },
    // Its MatMuls run over the whole cache, masked: ORT's GEMM blocks the sums differently for
    // another cache length, so the logits agree to float rounding, not bit for bit.
    { kvCache: 'read-only' as const, name: 'read-only cache (onnxruntime-node)', rounding: true },
  ];
  for (const act of ['f32', 'f16'] as const) {
    for (const { name, rounding, ...mode } of modes) {
      it(`${act}, ${name}: across chunk boundaries, the same logits ${rounding ? 'to float rounding' : 'bit for bit'} as a static cache`, async () => {
        const fixed = await run(act, { growBy: 0, ...mode });
        expect(fixed.capacities.every((c) => c === 32)).toBe(true);
        expect(fixed.runner.growths).toBe(0);
        const grown = await run(act, { growBy: 4, ...mode });
        // prefill needs 7 slots → 8; steps need 8, 9 (→ 12), 10, 11, 12
        expect(grown.capacities).toEqual([8, 8, 12, 12, 12, 12]);
        expect(grown.runner.growths).toBe(1);
        if (rounding) expect(maxAbs([grown.rows], [fixed.rows.map((r) => Float64Array.from(r))]).max).toBeLessThan(1e-5);
        else grown.rows.forEach((r, k) => expect(Array.from(r), `row ${k}`).toEqual(Array.from(fixed.rows[k]!)));
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

  for (const kvCache of ['in-place', 'read-only'] as const) it(`batch-1 windows (speculative decoding) grow the cache mid-window (${kvCache})`, async () => {
    const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: 'f32' });
    const session = await ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: 'f32', maxSeqLen: 64, kvCache }));
    const go = async (growBy: number) => {
      const runner = new LmRunner(ort, session, spec, { batch: 1, capacity: 32, growBy, kvCache });
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
    // read-only: to float rounding (see the chunk-boundary tests above)
    if (kvCache === 'read-only') expect(maxAbs([grown.out], [fixed.out.map((r) => Float64Array.from(r))]).max).toBeLessThan(1e-5);
    else grown.out.forEach((r, k) => expect(Array.from(r), `call ${k}`).toEqual(Array.from(fixed.out[k]!)));
    await session.release();
  });
});

describe("read-only KV cache (kvCache 'read-only': attention in MatMuls, new entries returned; onnxruntime-node's)", () => {
  const ckpt = randomCheckpoint(spec);
  const ref = reference(spec, ckpt);
  const session = async (act: 'f32' | 'f16', kvCache: KvCacheMode) => {
    const weights = await collectLmWeights(memoryReader(spec, ckpt), spec, { weights: 'f32' });
    return ort.InferenceSession.create(buildLmGraph(spec, (n) => weights.get(n), { activations: act, maxSeqLen: 64, kvCache }));
  };

  it('returns only logits and each layer’s new entries; keeps the values transposed in the cache', async () => {
    const s = await session('f32', 'read-only');
    expect([...s.outputNames].sort()).toEqual(['logits', ...Array.from({ length: spec.numLayers }, (_, i) => [`new_key.${i}`, `new_value.${i}`]).flat()].sort());
    const cache = createKvCache(ort.Tensor, spec, 2, 8, 'float32', true);
    expect(cache.tensors['past_value.0']!.dims).toEqual([2, spec.numKvHeads, spec.headDim, 8]);
    const out = await s.run({ ...decodeFeedsTensors([125, 125], [7, 4]), ...cache.tensors });
    expect(out['new_key.0']!.dims).toEqual([2, spec.numKvHeads, 1, spec.headDim]);
    expect(out['new_value.0']!.dims).toEqual([2, spec.numKvHeads, 1, spec.headDim]);
    await s.release();
  });

  for (const maxChunk of [Infinity, 3]) {
    it(`f32, batch 2, prefill in calls of ≤ ${maxChunk} tokens (rows of different lengths) + decode, growing: the float64 reference to 1e-4`, async () => {
      const s = await session('f32', 'read-only');
      const runner = new LmRunner(ort, s, spec, { capacity: 32, growBy: 4, kvCache: 'read-only' });
      const got = await cfgRows(runner, spec, maxChunk);
      expect(runner.growths).toBeGreaterThan(0);
      await s.release();
      const e = maxAbs(got, ref);
      console.log(`[lm-graph] read-only cache, prefill calls of ≤ ${maxChunk}: max abs ${e.max.toExponential(2)}`);
      expect(e.max).toBeLessThan(1e-4);
    });
  }

  it('batch 1: chunked prefill and speculative windows (rejected entries overwritten) give the in-place graph’s logits', async () => {
    const go = async (kvCache: KvCacheMode) => {
      const s = await session('f32', kvCache);
      const runner = new LmRunner(ort, s, spec, { batch: 1, capacity: 32, growBy: 4, kvCache });
      const out = [await runner.prefill([cond], 3)];
      for (const [window, keep] of [[3, 1], [4, 4], [5, 2], [2, 1]] as const) {
        out.push((await runner.runWindow(steps.slice(5 - window))).slice());
        runner.advance(keep);
      }
      out.push(await runner.runWindow([130]));
      await s.release();
      return out.map((l) => Float64Array.from(l));
    };
    const inPlace = await go('in-place');
    const readOnly = await go('read-only');
    const e = maxAbs([readOnly.map((l) => Float32Array.from(l))], [inPlace]);
    expect(e.max).toBeLessThan(1e-5);
  });

  it('batch 2: windows after each row’s own prefix in one run (SJD’s CFG pair) give two batch-1 runners’ logits; GQA’s in-place graph refuses them', async () => {
    const windows = [[3, 1], [4, 4], [2, 2]] as const;
    const pairSession = await session('f32', 'read-only');
    const pair = new LmRunner(ort, pairSession, spec, { capacity: 32, growBy: 4, kvCache: 'read-only' });
    const got = [await pair.prefill([cond, uncond])];
    for (const [window, keep] of windows) {
      got.push((await pair.runWindow(steps.slice(0, window))).slice());
      pair.advance(keep);
    }
    expect(pair.lengths).toEqual([cond.length + 7, uncond.length + 7]);
    await pairSession.release();
    const singleSession = await session('f32', 'in-place');
    const want: Float64Array[] = [];
    const streams = [cond, uncond].map((p) => ({ prompt: p, runner: new LmRunner(ort, singleSession, spec, { batch: 1, capacity: 32 }) }));
    const first = await Promise.all(streams.map(async ({ prompt, runner }) => Array.from(await runner.prefill([prompt]))));
    want.push(Float64Array.from(first.flat()));
    for (const [window, keep] of windows) {
      const rows: number[] = [];
      for (const { runner } of streams) {
        rows.push(...(await runner.runWindow(steps.slice(0, window))));
        runner.advance(keep);
      }
      want.push(Float64Array.from(rows));
    }
    expect(maxAbs([got], [want]).max).toBeLessThan(1e-5);
    const inPlacePair = new LmRunner(ort, singleSession, spec, { capacity: 32 });
    await inPlacePair.prefill([cond, uncond]);
    await expect(inPlacePair.runWindow([125, 126])).rejects.toThrow('batch-1 runners only on an in-place cache');
    await singleSession.release();
  });

  it('f16 activations and cache stay close to f32', async () => {
    const run = async (act: 'f32' | 'f16') => {
      const s = await session(act, 'read-only');
      const runner = new LmRunner(ort, s, spec, { capacity: 32, growBy: 4, dtype: act === 'f16' ? 'float16' : 'float32', kvCache: 'read-only' });
      const out = [(await runner.prefill([cond, uncond])).slice()];
      for (const t of steps) out.push((await runner.step([t, t])).slice());
      await s.release();
      return out;
    };
    const f32 = (await run('f32')).map((l) => Float64Array.from(l));
    const e = maxAbs([await run('f16')], [f32]);
    expect(e.max).toBeLessThan(0.02 * e.scale);
  });

  it('new entries go to the slots GQA would write: 0.. for a first prompt, after the cache otherwise', () => {
    const [first, ...rest] = prefillSchedule([[1, 2, 3, 4, 5], [1, 2]], 3);
    expect(newEntrySlots(first!.feeds)).toEqual([0, 0]); // padding included
    expect(rest.map((c) => newEntrySlots(c.feeds))).toEqual([[3, 2], [4, 2]]); // the short row parked at its length
    expect(newEntrySlots({ input_ids: new Int32Array(4), seqlens_k: Int32Array.of(9), total_sequence_length: 10, logits_index: new Int32Array(4), seq: 4, rows: 4 })).toEqual([6]);
  });

  it('prefillApart: each prompt on its own only where that takes fewer calls than the pair together', () => {
    const ids = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
    // Together: one chunk of 31, then one call per remaining token of the longer prompt.
    expect(prefillSchedule([ids(45), ids(40)], 31)).toHaveLength(15);
    expect(prefillApart([ids(45), ids(40)], 31)).toBe(true); // 2 + 2 calls
    expect(prefillApart([ids(20), ids(31)], 31)).toBe(false); // 1 call together, 2 apart
    expect(prefillApart([ids(33), ids(5)], 31)).toBe(false); // 3 together, 3 apart: keep the pair's cache
    expect(prefillApart([ids(34), ids(5)], 31)).toBe(true); // 4 together, 3 apart
    expect(prefillApart([ids(100)], 31)).toBe(false); // one prompt is already chunked
  });

  it('writeNewEntries and resizeKvCache place slots in both layouts', () => {
    const s1: LmSpec = { ...spec, numLayers: 1, numKvHeads: 1, headDim: 2 };
    const cache = createKvCache(ort.Tensor, s1, 2, 4, 'float32', true);
    const key = cache.tensors['past_key.0']!;
    const value = cache.tensors['past_value.0']!;
    expect([key.dims, value.dims]).toEqual([[2, 1, 4, 2], [2, 1, 2, 4]]);
    // two new tokens per row: row 0 at slots 1-2, row 1 at slots 2-3
    writeNewEntries(key, new ort.Tensor('float32', Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), [2, 1, 2, 2]), [1, 2]);
    writeNewEntries(value, new ort.Tensor('float32', Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), [2, 1, 2, 2]), [1, 2], true);
    expect(Array.from(key.data as Float32Array)).toEqual([0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 5, 6, 7, 8]);
    expect(Array.from(value.data as Float32Array)).toEqual([0, 1, 3, 0, 0, 2, 4, 0, 0, 0, 5, 7, 0, 0, 6, 8]);
    expect(() => writeNewEntries(key, new ort.Tensor('float32', new Float32Array(8), [2, 1, 2, 2]), [3, 0])).toThrow('slots 3..4: the cache holds 4');
    const grown = resizeKvCache(ort.Tensor, cache, 6);
    expect(Array.from(grown.tensors['past_key.0']!.data as Float32Array)).toEqual([0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 6, 7, 8, 0, 0, 0, 0]);
    expect(Array.from(grown.tensors['past_value.0']!.data as Float32Array)).toEqual([0, 1, 3, 0, 0, 0, 0, 2, 4, 0, 0, 0, 0, 0, 5, 7, 0, 0, 0, 0, 6, 8, 0, 0]);
  });
});

function decodeFeedsTensors(tokens: number[], lengths: number[]) {
  const B = tokens.length;
  return {
    input_ids: new ort.Tensor('int32', Int32Array.from(tokens), [B, 1]),
    seqlens_k: new ort.Tensor('int32', Int32Array.from(lengths), [B]),
    total_sequence_length: new ort.Tensor('int32', Int32Array.of(Math.max(...lengths) + 1), []),
    logits_index: new ort.Tensor('int32', Int32Array.from({ length: B }, (_, b) => b), [B, 1]),
  };
}
