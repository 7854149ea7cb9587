// The f16 VQ decoder cannot silently return garbage: its graph measures every GroupNorm input and
// the image (largest |x|, mean square, in fp32); a non-finite value or a peak near f16's range
// makes the runner decode again in f32 from the same weights, and the engine, the CLI and the
// page say so. Overflow is forced by scaling the tiny decoder's conv_in: its output (and the
// residual stream after it) grows by the factor. onnxruntime's CPU kernels compute f16 graphs
// through f32, so there the f16 output is not wrong; the checks still see the range, and the
// rerun's bytes are the f32 decode's exactly. (On WebGPU f16 arithmetic really overflows.)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ortNode from 'onnxruntime-node';
import {
  buildDecoder,
  checkActivations,
  F16_MAX,
  F16_SAFE_PEAK,
  type CosmosDecoderSpec,
} from '../../src/core/model/decoder.ts';
import { float32ToFloat16Bytes, halfToFloat } from '../../src/core/formats/tensor.ts';
import type { NamedTensor } from '../../src/core/base/model-spec.ts';
import { DecoderRunner } from '../../src/core/runtime/decoder-runner.ts';
import type { OrtModule } from '../../src/core/base/ort.ts';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { loadFixtureDecoder, loadFixtureModel } from '../helpers/fixture-model.ts';

let spec: CosmosDecoderSpec;
let weights: Map<string, NamedTensor>;

beforeAll(async () => {
  ({ spec, weights } = await loadFixtureDecoder('tiny-cosmos', 'f16'));
});

/** The decoder weights with conv_in's weight and bias multiplied by `factor` (still f16). */
function scaled(source: ReadonlyMap<string, NamedTensor>, factor: number): Map<string, NamedTensor> {
  const out = new Map(source);
  for (const name of ['decoder.conv_in.0.weight', 'decoder.conv_in.0.bias']) {
    const t = source.get(name)!;
    const view = new DataView(t.raw.buffer, t.raw.byteOffset, t.raw.byteLength);
    const n = t.raw.byteLength / (t.type === 'float16' ? 2 : 4);
    const values = Float32Array.from({ length: n }, (_, i) =>
      (t.type === 'float16' ? halfToFloat(view.getUint16(2 * i, true)) : view.getFloat32(4 * i, true)) * factor,
    );
    out.set(name, { ...t, raw: t.type === 'float16' ? float32ToFloat16Bytes(values) : new Uint8Array(values.buffer) });
  }
  return out;
}

const codes = Array.from({ length: 36 }, (_, i) => (i * 7919) % 64000);

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('activation checks', () => {
  it('flag non-finite values and peaks near f16 range, naming the first point', () => {
    const names = ['a', 'b', 'image'];
    expect(checkActivations([1, 1, 2, 3, 1, 0.5], names)).toBeUndefined();
    expect(checkActivations([1, 1, Infinity, 3, 1, 0.5], names)).toMatch(/non-finite activations at b/);
    expect(checkActivations([1, 1, 2, NaN, 1, 0.5], names)).toMatch(/non-finite activations at b/);
    expect(checkActivations([1, 1, 2, 3, F16_SAFE_PEAK, 1], names)).toMatch(/reach .* at image .*65504/);
    expect(checkActivations([1, 1, 2, 3, F16_SAFE_PEAK * 0.99, 1], names)).toBeUndefined();
    expect(F16_SAFE_PEAK).toBeLessThan(F16_MAX);
  });

  it('are in the f16 graph only (one pair per GroupNorm input, then the image)', () => {
    const f16 = buildDecoder(spec, weights, { activations: 'float16' });
    const norms = f16.checks.slice(0, -1);
    expect(f16.checks.at(-1)).toBe('image');
    expect(norms[0]).toBe('decoder.mid.block_1.norm1');
    expect(norms.at(-1)).toBe('decoder.norm_out');
    // Each res block has two norms, each attention pair two, plus norm_out.
    const blocks = 2 + spec.up.reduce((n, l) => n + l.blocks.length, 0);
    expect(norms.length).toBe(2 * blocks + 2 + 1);
    expect(buildDecoder(spec, weights, { activations: 'float32' }).checks).toEqual([]);
  });
});

for (const [name, load] of [
  ['onnxruntime-node', async () => ortNode as unknown as OrtModule],
  ['onnxruntime-web (wasm EP)', async () => (await import('onnxruntime-web')) as unknown as OrtModule],
] as const) {
  describe(`f16 decoder with the f32 fallback on ${name}`, () => {
    let ort: OrtModule;
    const decode = async (w: ReadonlyMap<string, NamedTensor>, activations: 'float16' | 'float32', fallback = true) => {
      const runner = await DecoderRunner.create(ort, spec, w, { activations, fallback });
      try {
        return await runner.decode(codes, 6, 6);
      } finally {
        await runner.release();
      }
    };
    beforeAll(async () => {
      ort = await load();
    });

    it('keeps the f16 image when its activations are in range', async () => {
      const f16 = await decode(weights, 'float16');
      const f32 = await decode(weights, 'float32');
      expect(f16.fallback).toBeUndefined();
      expect(maxDiff(f16.rgba, f32.rgba)).toBeLessThanOrEqual(3);
    });

    it('decodes again in f32 when conv_in is scaled ×10⁴ (peaks past f16 range), giving the f32 bytes', async () => {
      const big = scaled(weights, 1e4);
      const f16 = await decode(big, 'float16');
      expect(f16.fallback?.activations).toBe('float32');
      expect(f16.fallback?.reason).toMatch(/^activations reach \d\.\d\de\+4 at decoder\.mid\.block_1\.norm1 \(f16 overflows past 65504\)$/);
      const f32 = await decode(big, 'float32');
      expect(f32.fallback).toBeUndefined();
      expect(maxDiff(f16.rgba, f32.rgba)).toBe(0);
      // ×10 is still in range: no rerun.
      expect((await decode(scaled(weights, 10), 'float16')).fallback).toBeUndefined();
    });

    it('checks and falls back in bands too (decoder-bands.test.ts), rerunning in f32 bands', async () => {
      const big = scaled(weights, 1e4);
      const banded = async (activations: 'float16' | 'float32') => {
        const runner = await DecoderRunner.create(ort, spec, big, { activations, maxActivationBytes: 1 });
        expect(runner.bandBytes).toBe(1);
        try {
          return await runner.decode(codes, 6, 6);
        } finally {
          await runner.release();
        }
      };
      const f16 = await banded('float16');
      expect(f16.fallback?.reason).toMatch(/^activations reach \d\.\d\de\+4 at decoder\.mid\.block_1\.norm1 /);
      const f32 = await banded('float32');
      expect(maxDiff(f16.rgba, f32.rgba)).toBe(0);
      expect(maxDiff(f32.rgba, (await decode(big, 'float32')).rgba)).toBeLessThanOrEqual(1);
    });
  });
}

describe('engine and CLI report the fallback', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'simplear-fallback-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('generate() sets stats.decoderFallback and returns the f32 pixels', async () => {
    const model = await loadFixtureModel();
    const big = { ...model, decoderWeights: scaled(model.decoderWeights, 1e4) };
    const request = { prompt: 'a red cube', size: 64, temperature: 0, seed: 3 };
    const f16Engine = await createCpuEngine(ortNode as unknown as OrtModule, big, { maxLatentSide: 4, decoderActivations: 'f16' });
    const f32Engine = await createCpuEngine(ortNode as unknown as OrtModule, big, { maxLatentSide: 4 });
    try {
      const a = await f16Engine.generate(request);
      const b = await f32Engine.generate(request);
      expect(a.stats.decoderFallback).toEqual({ activations: 'f32', reason: expect.stringMatching(/decoder\.mid\.block_1\.norm1/) });
      expect(b.stats.decoderFallback).toBeUndefined();
      expect(Array.from(a.codes)).toEqual(Array.from(b.codes));
      expect(maxDiff(a.rgba, b.rgba)).toBe(0);
    } finally {
      await f16Engine.dispose();
      await f32Engine.dispose();
    }
  });
});
