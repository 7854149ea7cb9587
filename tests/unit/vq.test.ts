// The Cosmos DV decoder conversion (src/core/model/decoder*.ts): structure read from tensor names and
// shapes (the real decoder.jit's key list, tests/fixtures/released-decoder-shapes.tsv,
// and width-scaled versions of it), the T=1 weight folding, parameter counts (docs/model.md#decoder-parameters), and the
// ONNX graph's IO contract on onnxruntime-node.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { LocalFileSource } from '../../src/core/formats/byte-source.ts';
import { openTorchScript } from '../../src/core/formats/torchscript/index.ts';
import {
  buildDecoderGraph,
  checkFsqLevels,
  collectWeights,
  convertDecoderWeights,
  convertedWeightShapes,
  decoderWeightPlan,
  describeCosmosDecoder,
  describeDecoderFile,
  foldWeight,
  fuseConvBias,
  fuseConvWeights,
  unusedSourceTensors,
  type CosmosDecoderSpec,
  type ShapeInfo,
} from '../../src/core/model/decoder.ts';
import type { NamedTensor } from '../../src/core/base/model-spec.ts';
import { floatToHalf } from '../../src/core/formats/tensor.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const TSV = join(FIXTURES, 'released-decoder-shapes.tsv');

const realKeys: ShapeInfo[] = readFileSync(TSV, 'utf8')
  .trim()
  .split('\n')
  .map((line) => {
    const [name, shape] = line.split('\t');
    return { name: name!, shape: shape!.replace(/[()\s]/g, '').split(',').filter(Boolean).map(Number) };
  });

/** The same tensors at channels = 128/div (the first two dims of convs and all vectors scale). */
function scaled(div: number): ShapeInfo[] {
  const s = (n: number, name: string) => (name.startsWith('post_quant_conv') || n === 192 || n === 6 || n === 16 ? n : n / div);
  return realKeys.map(({ name, shape }) => ({ name, shape: shape.map((n, i) => (i < 2 ? s(n, name) : n)) }));
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

describe('describeCosmosDecoder on the released decoder.jit key list', () => {
  const spec = describeCosmosDecoder(realKeys);

  it('derives the decoder structure (docs/model.md#decoder-structure) from names and shapes', () => {
    expect(spec.fsq).toEqual({ levels: [8, 8, 8, 5, 5, 5], embeddingDim: 6, codebookSize: 64000 });
    expect(spec.zChannels).toBe(16);
    expect(spec.latentChannels).toBe(512);
    expect(spec.mid.attention).toEqual({ prefix: 'decoder.mid.attn_1', channels: 512 });
    expect(spec.up.map((l) => l.index)).toEqual([2, 1, 0]);
    expect(spec.up.map((l) => l.blocks.map((b) => `${b.inChannels}>${b.outChannels}${b.shortcut ? '+nin' : ''}`))).toEqual([
      ['512>512', '512>512', '512>512'],
      ['512>512', '512>512', '512>512'],
      ['512>256+nin', '256>256', '256>256'],
    ]);
    expect(spec.up.map((l) => l.attentions.length)).toEqual([0, 0, 0]);
    expect(spec.up.map((l) => l.upsample && { temporal: l.upsample.temporal, spatial: l.upsample.spatial })).toEqual([
      { temporal: false, spatial: true }, // up.2: conv1 exists but is unused
      { temporal: true, spatial: true },
      null,
    ]);
    expect(spec.finalChannels).toBe(256);
    expect(spec.outChannels).toBe(192);
    expect(spec.haarLevels).toBe(2);
    expect(spec.upscale).toBe(16); // 64² codes → 1024² pixels
  });

  it('drops exactly the weights unused at T=1 and counts the parameters of docs/model.md#decoder-parameters after folding', () => {
    const names = realKeys.map((k) => k.name);
    expect(unusedSourceTensors(spec, names)).toEqual([
      'decoder.mid.attn_1.1.q.conv3d.weight',
      'decoder.mid.attn_1.1.q.conv3d.bias',
      'decoder.mid.attn_1.1.k.conv3d.weight',
      'decoder.mid.attn_1.1.k.conv3d.bias',
      'decoder.up.2.upsample.conv1.conv3d.weight',
      'decoder.up.2.upsample.conv1.conv3d.bias',
    ]);
    const source = new Map(realKeys.map((k) => [k.name, k.shape]));
    const plan = decoderWeightPlan(spec);
    expect(plan.length).toBe(172);
    expect(realKeys.reduce((n, k) => n + numel(k.shape), 0)).toBe(66_148_080);
    expect(plan.reduce((n, e) => n + numel(source.get(e.source)!), 0)).toBe(64_835_824);
    const converted = convertedWeightShapes(spec, source);
    const params = [...converted.values()].reduce((n, s) => n + numel(s), 0);
    expect(params).toBe(54_538_480); // 109,076,960 bytes (104.0 MiB) in f16
    expect(converted.get('decoder.conv_in.0.weight')).toEqual([512, 16, 3, 3]);
    expect(converted.get('decoder.conv_in.1.weight')).toEqual([512, 512, 1, 1]);
    expect(converted.get('decoder.mid.block_1.norm1.weight')).toEqual([512]);
    expect(converted.get('decoder.mid.attn_1.0.norm.bias')).toEqual([512]);
    expect(converted.get('decoder.up.1.upsample.conv1.weight')).toEqual([512, 512, 1, 1]);
    expect(converted.has('decoder.up.2.upsample.conv1.weight')).toBe(false);
    expect(converted.get('decoder.conv_out.1.weight')).toEqual([192, 192, 1, 1]);

    // Optional fusion of each 3×3 conv with its folded 1×1 conv (docs/model.md#decoder-parameters, the fused count).
    const fused = convertedWeightShapes(spec, source, { fuse: true });
    expect([...fused.values()].reduce((n, s) => n + numel(s), 0)).toBe(49_641_520);
    expect(fused.get('decoder.conv_out.0.weight')).toEqual([192, 256, 3, 3]);
    expect(fused.has('decoder.conv_out.1.weight')).toBe(false);
  });

  it('describes narrower decoders (other widths) the same way', () => {
    for (const div of [8, 16]) {
      const s = describeCosmosDecoder(scaled(div));
      expect(s.latentChannels).toBe(512 / div);
      expect(s.finalChannels).toBe(256 / div);
      expect(s.up.map((l) => l.blocks.length)).toEqual([3, 3, 3]);
      expect(s.upscale).toBe(16);
    }
  });

  it('names what is wrong when a file is not this decoder', () => {
    const without = (name: string) => realKeys.filter((k) => k.name !== name);
    expect(() => describeCosmosDecoder(without('decoder.mid.block_2.conv2.1.conv3d.bias'), { file: 'x.jit' })).toThrow(
      /x\.jit \(tensor decoder\.mid\.block_2\.conv2\.1\.conv3d\.bias\): not a Cosmos DV decoder/,
    );
    const badKernel = realKeys.map((k) => (k.name === 'decoder.conv_in.1.conv3d.weight' ? { ...k, shape: [512, 512, 1, 3, 3] } : k));
    expect(() => describeCosmosDecoder(badKernel)).toThrow(/\(3,1,1\) kernel/);
    const fiveDim = realKeys.map((k) => (k.name === 'post_quant_conv.conv3d.weight' ? { ...k, shape: [16, 5, 1, 1, 1] } : k));
    expect(() => describeCosmosDecoder(fiveDim)).toThrow(/no known FSQ levels for 5-dim codes/);
    expect(describeCosmosDecoder(fiveDim, { fsqLevels: [8, 8, 5, 5, 5] }).fsq.codebookSize).toBe(8000);
    expect(() => checkFsqLevels(describeCosmosDecoder(realKeys), [8, 8, 8, 6, 5, 5])).toThrow(/FSQ levels in the file are \[8,8,8,6,5,5\]/);
    let error: unknown;
    try {
      describeCosmosDecoder([]);
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'ModelMismatch' });
  });
});

describe('describeDecoderFile', () => {
  /** A TorchScriptReader stand-in holding the real key list and a `_levels` buffer. */
  const fakeReader = (levels: number[], codeDim = 6) =>
    ({
      file: 'fake.jit',
      tensors: () => [
        ...realKeys.map((k) => ({ ...k, shape: k.name === 'post_quant_conv.conv3d.weight' ? [16, codeDim, 1, 1, 1] : k.shape, dtype: 'f32' })),
        { name: 'inv_quant.quantizer._levels', shape: [levels.length], dtype: 'i32' },
      ],
      list: () => [],
      info: (n: string) => (n === 'inv_quant.quantizer._levels' ? { dtype: 'i32' } : undefined),
      readAny: async () => ({ dtype: 'i32', bytes: new Uint8Array(Int32Array.from(levels).buffer) }),
    }) as unknown as Parameters<typeof describeDecoderFile>[0];

  it('checks the archive’s FSQ levels against the known config, and uses them for unknown code sizes', async () => {
    expect((await describeDecoderFile(fakeReader([8, 8, 8, 5, 5, 5]))).fsq.codebookSize).toBe(64000);
    await expect(describeDecoderFile(fakeReader([8, 8, 8, 5, 5, 4]))).rejects.toMatchObject({ code: 'ModelMismatch' });
    expect((await describeDecoderFile(fakeReader([7, 5, 5, 5, 5], 5))).fsq).toEqual({ levels: [7, 5, 5, 5, 5], embeddingDim: 5, codebookSize: 4375 });
  });
});

describe('T=1 weight folding', () => {
  const entry = (kind: 'conv3x3' | 'temporal' | 'pointwise' | 'vector') => ({ name: 'w', source: 'w.conv3d.weight', kind });

  it('sums the three temporal taps of a (3,1,1) kernel in fp32', () => {
    // W[o=2, i=2, t=3]: taps 1,2,3 / 10,20,30 / … → sums 6, 60, 600, 6000
    const w = Float32Array.from([1, 2, 3, 10, 20, 30, 100, 200, 300, 1000, 2000, 3000]);
    expect(Array.from(foldWeight(entry('temporal'), [2, 2, 3, 1, 1], w))).toEqual([6, 60, 600, 6000]);
    // fp32 rounding happens once, after an exact sum
    const tiny = Float32Array.from([1, 2 ** -24, 2 ** -24]);
    expect(foldWeight(entry('temporal'), [1, 1, 3, 1, 1], tiny)[0]).toBe(Math.fround(1 + 2 ** -23));
  });

  it('fuses a 3×3 conv and the 1×1 conv after it: W = W1·W3 per tap, b = W1·b3 + b1', () => {
    // W3: [M=2, I=1, 1, 2] taps; W1: [O=2, M=2]
    const w3 = Float32Array.from([1, 2, 3, 4]);
    const w1 = Float32Array.from([1, 10, 100, 1000]);
    expect(Array.from(fuseConvWeights(w1, 2, 2, w3))).toEqual([1 + 30, 2 + 40, 100 + 3000, 200 + 4000]);
    expect(Array.from(fuseConvBias(w1, 2, 2, Float32Array.from([1, 2]), Float32Array.from([5, 6])))).toEqual([5 + 1 + 20, 6 + 100 + 2000]);
  });

  it('keeps (1,3,3) and (1,1,1) kernels as they are and rejects other kernels', () => {
    const w = Float32Array.from({ length: 18 }, (_, i) => i);
    expect(foldWeight(entry('conv3x3'), [2, 1, 1, 3, 3], w)).toBe(w);
    expect(() => foldWeight(entry('conv3x3'), [2, 1, 3, 3, 1], w)).toThrow(/temporal kernel 1/);
    expect(() => foldWeight(entry('temporal'), [1, 2, 3, 3, 1], w)).toThrow(/\(kT,1,1\)/);
  });

  it('converts a traced decoder: execution order, folded shapes, f16 rounding of the fp32 sums', async () => {
    const reader = await openTorchScript(new LocalFileSource(join(FIXTURES, 'tiny-cosmos/decoder.jit')));
    const spec = await describeDecoderFile(reader);
    const f32 = await collectWeights(convertDecoderWeights(reader, { spec, dtype: 'f32' }));
    const f16 = await collectWeights(convertDecoderWeights(reader, { dtype: 'f16' })); // spec described from the reader
    expect([...f32.keys()].slice(0, 4)).toEqual(['post_quant_conv.weight', 'post_quant_conv.bias', 'decoder.conv_in.0.weight', 'decoder.conv_in.0.bias']);
    const src = reader.info('decoder.conv_in.1.conv3d.weight')!;
    const w = f32.get('decoder.conv_in.1.weight')!;
    expect(w.dims).toEqual([src.shape[0], src.shape[1], 1, 1]);
    const raw = new Float32Array((await reader.read(src.name)).bytes.slice().buffer);
    const folded = new Float32Array(w.raw.slice().buffer);
    expect(folded[5]).toBe(Math.fround(raw[15]! + raw[16]! + raw[17]!));
    const half = new Uint16Array(f16.get('decoder.conv_in.1.weight')!.raw.slice().buffer);
    expect(half.length).toBe(folded.length);
    for (let i = 0; i < 50; i++) expect(half[i]).toBe(floatToHalf(folded[i]!)); // rounded once, from the fp32 sum
    expect(f16.get('decoder.conv_in.1.weight')!.type).toBe('float16');
  });
});

/** Random converted weights for a spec (graph-contract tests do not need real values). */
function randomWeights(spec: CosmosDecoderSpec, shapes: Map<string, number[]>, seed = 1): NamedTensor[] {
  let s = seed;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  return [...convertedWeightShapes(spec, shapes)].map(([name, dims]) => {
    const n = numel(dims);
    const fanIn = dims.length === 4 ? dims[1]! * dims[2]! * dims[3]! : 0;
    const v = Float32Array.from({ length: n }, () => (fanIn ? rand() * Math.sqrt(3 / fanIn) : name.endsWith('.weight') ? 1 + 0.1 * rand() : 0.1 * rand()));
    return { name, type: 'float32' as const, dims, raw: new Uint8Array(v.buffer) };
  });
}

describe('decoder graph IO contract (onnxruntime-node)', () => {
  const keys = scaled(16); // 32-wide latent: fast
  const spec = describeCosmosDecoder(keys);
  const weights = randomWeights(spec, new Map(keys.map((k) => [k.name, k.shape as number[]])));
  const codes = (h: number, w: number, f: (i: number) => number) => BigInt64Array.from({ length: h * w }, (_, i) => BigInt(f(i)));

  it('maps int64 codes [h, w] of any grid to rgba uint8 [16h, 16w, 4] with alpha 255', async () => {
    const session = await ort.InferenceSession.create(buildDecoderGraph(spec, weights, { activations: 'float32' }));
    expect(session.inputNames).toEqual(['codes']);
    expect(session.outputNames).toEqual(['rgba']);
    const out = await session.run({ codes: new ort.Tensor('int64', codes(3, 5, (i) => i * 4099), [3, 5]) });
    expect(out.rgba!.type).toBe('uint8');
    expect(out.rgba!.dims).toEqual([48, 80, 4]);
    const px = out.rgba!.data as Uint8Array;
    for (let i = 3; i < px.length; i += 4) if (px[i] !== 255) throw new Error(`alpha ${px[i]} at ${i}`);
    expect(new Set(px.filter((_, i) => i % 4 !== 3)).size).toBeGreaterThan(10);
  });

  it('accepts [1, h, w] codes, clamps codes to 0..63999 and can also output the float image', async () => {
    const plain = await ort.InferenceSession.create(buildDecoderGraph(spec, weights, { activations: 'float32', floatImage: true }));
    const batched = await ort.InferenceSession.create(buildDecoderGraph(spec, weights, { activations: 'float32', codesRank: 3 }));
    expect([...plain.outputNames].sort()).toEqual(['image', 'rgba']);
    const grid = codes(2, 2, (i) => [0, 63999, 12345, 777][i]!);
    const a = await plain.run({ codes: new ort.Tensor('int64', grid, [2, 2]) });
    const b = await batched.run({ codes: new ort.Tensor('int64', grid, [1, 2, 2]) });
    expect(a.image!.dims).toEqual([3, 32, 32]);
    expect(b.rgba!.data).toEqual(a.rgba!.data);
    const outOfRange = await plain.run({ codes: new ort.Tensor('int64', codes(2, 2, (i) => [-5, 70000, 12345, 777][i]!), [2, 2]) });
    expect(outOfRange.image!.data).toEqual(a.image!.data);
  });

  it('runs the f16-activation variant close to f32', async () => {
    const grid = new ort.Tensor('int64', codes(2, 3, (i) => i * 9001), [2, 3]);
    const f32 = await ort.InferenceSession.create(buildDecoderGraph(spec, weights, { activations: 'float32', floatImage: true }));
    const f16 = await ort.InferenceSession.create(buildDecoderGraph(spec, weights, { activations: 'float16', floatImage: true }));
    const a = (await f32.run({ codes: grid })).image!.data as Float32Array;
    const b = (await f16.run({ codes: grid })).image!.data as Float32Array;
    let err = 0;
    let mag = 0;
    for (let i = 0; i < a.length; i++) {
      err = Math.max(err, Math.abs(a[i]! - b[i]!));
      mag = Math.max(mag, Math.abs(a[i]!));
    }
    expect(err / mag).toBeLessThan(2e-2);
  });

  it('refuses weights that do not match the spec', () => {
    expect(() => buildDecoderGraph(spec, weights.slice(1), { activations: 'float32' })).toThrow(/post_quant_conv\.weight.*missing converted weight/);
  });
});
