// The VQ decoder in bands of rows (decoder-runner.ts): the graph cut at its GroupNorms, each stage
// run band by band with a margin for its 3×3 convs, each norm's statistics summed over all bands.
// The result is the whole decode's within one level, for any band height down to one row (where a
// margin too small for a stage's reach would show at every band edge), on onnxruntime-node and the
// wasm EP; bands are used only where the whole decode's largest activation exceeds the budget.
import { beforeAll, describe, expect, it } from 'vitest';
import * as ortNode from 'onnxruntime-node';
import { decoderStages, type CosmosDecoderSpec } from '../../src/core/model/decoder.ts';
import type { NamedTensor } from '../../src/core/base/model-spec.ts';
import { decoderActivationBytes, DecoderRunner } from '../../src/core/runtime/decoder-runner.ts';
import type { OrtModule } from '../../src/core/base/ort.ts';
import { loadFixtureDecoder } from '../helpers/fixture-model.ts';

let spec: CosmosDecoderSpec;
let weights: Map<string, NamedTensor>;

beforeAll(async () => {
  ({ spec, weights } = await loadFixtureDecoder('tiny-cosmos', 'f32'));
});

function compare(a: Uint8Array, b: Uint8Array): { maxLevel: number; differing: number } {
  expect(b.length).toBe(a.length);
  let maxLevel = 0;
  let differing = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    maxLevel = Math.max(maxLevel, d);
    if (d) differing++;
  }
  return { maxLevel, differing };
}

const grid = (h: number, w: number) => Array.from({ length: h * w }, (_, i) => (i * 7919 + 17) % 64000);

describe('decoder stages', () => {
  it('cut the released layout at every norm after the mid block', () => {
    const stages = decoderStages(spec)!;
    const blocks = spec.up.reduce((n, l) => n + l.blocks.length, 0);
    expect(stages.map((s) => s.kind)).toEqual(['head', ...Array.from({ length: blocks }, () => ['norm1', 'norm2']).flat(), 'pixels']);
    // An attention after the mid block needs the whole image: no stages.
    const withAttention = { ...spec, up: spec.up.map((l, i) => (i === 0 ? { ...l, attentions: [{ prefix: 'x', channels: 8 }] } : l)) };
    expect(decoderStages(withAttention)).toBeUndefined();
  });

  it('the largest activation grows with the grid; bands only where it exceeds the budget', async () => {
    const small = decoderActivationBytes(spec, 4, 4);
    expect(decoderActivationBytes(spec, 8, 8)).toBe(4 * small);
    const fits = await DecoderRunner.create(ortNode as unknown as OrtModule, spec, weights, { maxActivationBytes: small, maxSide: 4 });
    const tooBig = await DecoderRunner.create(ortNode as unknown as OrtModule, spec, weights, { maxActivationBytes: small, maxSide: 8 });
    expect(fits.bandBytes).toBeUndefined();
    expect(tooBig.bandBytes).toBe(small);
    await fits.release();
    await tooBig.release();
  });
});

for (const [name, load] of [
  ['onnxruntime-node', async () => ortNode as unknown as OrtModule],
  ['onnxruntime-web (wasm EP)', async () => (await import('onnxruntime-web')) as unknown as OrtModule],
] as const) {
  describe(`banded decode on ${name}`, () => {
    let ort: OrtModule;
    beforeAll(async () => {
      ort = await load();
    });

    for (const [h, w] of [
      [8, 8],
      [5, 7],
    ] as const) {
      it(`${h}×${w} grid: bands of 1 row and of a few rows give the whole decode within 1 level`, async () => {
        const codes = grid(h, w);
        const whole = await DecoderRunner.create(ort, spec, weights);
        const reference = await whole.decode(codes, h, w);
        await whole.release();
        const bytes = decoderActivationBytes(spec, h, w);
        for (const budget of [1, Math.floor(bytes / 3)]) {
          const banded = await DecoderRunner.create(ort, spec, weights, { maxActivationBytes: budget });
          expect(banded.bandBytes).toBe(budget);
          const image = await banded.decode(codes, h, w);
          await banded.release();
          expect([image.width, image.height]).toEqual([reference.width, reference.height]);
          const r = compare(reference.rgba, image.rgba);
          console.log(`[bands] ${name} ${h}×${w}, budget ${budget} B: max diff ${r.maxLevel}, ${r.differing}/${image.rgba.length} bytes differ`);
          expect(r.maxLevel).toBeLessThanOrEqual(1);
          expect(r.differing).toBeLessThan(image.rgba.length / 100);
        }
      });
    }
  });
}
