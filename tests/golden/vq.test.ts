// Golden tests of the Cosmos DV decoder against NVIDIA's PyTorch code (tests/fixtures/golden/
// golden.json, tools/fixtures/cosmos_decoder.py: decoder_jit() in float32, eager, on traced tiny
// decoders of width 16 and 8 (the latter held out while the converter was written)):
//  - the TorchScript reader returns every tensor byte-exactly (sha256 of each storage record);
//  - f32 weights: the decoder output matches to 1e-3 max abs, the RGB bytes within 1 level;
//  - f16 weights: the error is measured, printed and loosely bounded;
//  - the same graph on onnxruntime-web's wasm EP (Node);
//  - our PNG of the RGB bytes decodes to them; the reference PNG decodes to the reference bytes.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { LocalFileSource } from '../../src/core/formats/byte-source.ts';
import { openTorchScript, type TorchScriptReader } from '../../src/core/formats/torchscript/index.ts';
import {
  buildDecoderGraph,
  collectWeights,
  convertDecoderWeights,
  describeDecoderFile,
  type CosmosDecoderSpec,
  type WeightDType,
} from '../../src/core/model/decoder.ts';
import { decodePng, encodePng, rgbaToRgb } from '../../src/core/image/png.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const GOLDEN = join(FIXTURES, 'golden');

interface ArrayRef {
  file: string;
  shape: number[];
}
interface DecoderCase {
  checkpoint: string;
  file: string;
  jit_tensors: { name: string; dtype: string; shape: number[]; sha256: string }[];
  grids: { name: string; grid: [number, number]; codes: number[]; output: ArrayRef; rgb8: ArrayRef; png: { file: string } }[];
}

const golden = JSON.parse(readFileSync(join(GOLDEN, 'golden.json'), 'utf8')) as { decoder: DecoderCase[] };
const f32File = (ref: ArrayRef) => new Float32Array(new Uint8Array(readFileSync(join(GOLDEN, ref.file))).buffer);
const u8File = (ref: { file: string }) => new Uint8Array(readFileSync(join(GOLDEN, ref.file)));

type Session = { run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown; dims: readonly number[] }>> };
type TensorCtor = new (type: 'int64', data: BigInt64Array, dims: number[]) => unknown;

async function decode(session: Session, Tensor: TensorCtor, grid: DecoderCase['grids'][number]) {
  const [h, w] = grid.grid;
  const out = await session.run({ codes: new Tensor('int64', BigInt64Array.from(grid.codes.map(BigInt)), [h, w]) });
  return { image: out.image!.data as Float32Array, rgba: out.rgba!.data as Uint8Array, dims: out.rgba!.dims };
}

function compare(image: Float32Array, rgba: Uint8Array, grid: DecoderCase['grids'][number]) {
  const ref = f32File(grid.output);
  const rgb = u8File(grid.rgb8);
  let maxAbs = 0;
  for (let i = 0; i < ref.length; i++) maxAbs = Math.max(maxAbs, Math.abs(image[i]! - ref[i]!));
  const ours = rgbaToRgb(rgba);
  let maxLevel = 0;
  let differing = 0;
  for (let i = 0; i < rgb.length; i++) {
    const d = Math.abs(ours[i]! - rgb[i]!);
    maxLevel = Math.max(maxLevel, d);
    if (d) differing++;
  }
  return { maxAbs, maxLevel, differing, total: rgb.length, ours };
}

for (const c of golden.decoder) {
  describe(`Cosmos decoder golden: ${c.checkpoint}`, () => {
    let reader: TorchScriptReader;
    let spec: CosmosDecoderSpec;
    const sessions = new Map<WeightDType, Session>();
    const modelF32 = async () => {
      reader ??= await openTorchScript(new LocalFileSource(join(FIXTURES, c.file)));
      spec ??= await describeDecoderFile(reader);
      return buildDecoderGraph(spec, await collectWeights(convertDecoderWeights(reader, { spec, dtype: 'f32' })), {
        activations: 'float32',
        floatImage: true,
      });
    };
    const session = async (dtype: WeightDType) => {
      if (!sessions.has(dtype)) {
        reader ??= await openTorchScript(new LocalFileSource(join(FIXTURES, c.file)));
        spec ??= await describeDecoderFile(reader);
        const weights = await collectWeights(convertDecoderWeights(reader, { spec, dtype }));
        const model = buildDecoderGraph(spec, weights, { activations: 'float32', floatImage: true });
        sessions.set(dtype, (await ort.InferenceSession.create(model)) as unknown as Session);
      }
      return sessions.get(dtype)!;
    };

    it('reads every tensor of the archive byte-exactly', async () => {
      reader ??= await openTorchScript(new LocalFileSource(join(FIXTURES, c.file)));
      expect(reader.tensors().map((t) => t.name)).toEqual(c.jit_tensors.map((t) => t.name));
      for (const t of c.jit_tensors) {
        const raw = await reader.readAny(t.name);
        expect(raw.shape, t.name).toEqual(t.shape);
        expect(createHash('sha256').update(raw.bytes).digest('hex'), t.name).toBe(t.sha256);
      }
    });

    for (const grid of c.grids) {
      it(`f32 weights, ${grid.name} grid: output within 1e-3, RGB bytes within 1 level`, async () => {
        const { image, rgba, dims } = await decode(await session('f32'), ort.Tensor as unknown as TensorCtor, grid);
        expect(dims).toEqual([grid.grid[0] * 16, grid.grid[1] * 16, 4]);
        const r = compare(image, rgba, grid);
        console.log(`[vq golden] ${c.checkpoint} ${grid.name} f32: max abs ${r.maxAbs.toExponential(2)}, u8 max diff ${r.maxLevel} (${r.differing}/${r.total} differ)`);
        expect(r.maxAbs).toBeLessThan(1e-3);
        expect(r.maxLevel).toBeLessThanOrEqual(1);

        // PNG: ours round-trips; the reference PNG holds the reference bytes.
        const [h, w] = [dims[0]!, dims[1]!];
        expect(decodePng(encodePng({ width: w, height: h, channels: 3, data: r.ours })).data).toEqual(r.ours);
        const refPng = decodePng(u8File(grid.png));
        expect([refPng.width, refPng.height, refPng.channels]).toEqual([w, h, 3]);
        expect(refPng.data).toEqual(u8File(grid.rgb8));
      });

      it(`f16 weights, ${grid.name} grid: error measured`, async () => {
        const { image, rgba } = await decode(await session('f16'), ort.Tensor as unknown as TensorCtor, grid);
        const r = compare(image, rgba, grid);
        console.log(`[vq golden] ${c.checkpoint} ${grid.name} f16 weights: max abs ${r.maxAbs.toExponential(2)}, u8 max diff ${r.maxLevel} (${r.differing}/${r.total} differ)`);
        expect(r.maxAbs).toBeLessThan(2e-2);
        expect(r.maxLevel).toBeLessThanOrEqual(3);
      });
    }

    it('optionally fuses each 3×3 conv with its 1×1 conv, as exactly', async () => {
      reader ??= await openTorchScript(new LocalFileSource(join(FIXTURES, c.file)));
      spec ??= await describeDecoderFile(reader);
      const weights = await collectWeights(convertDecoderWeights(reader, { spec, dtype: 'f32', fuse: true }));
      expect(weights.has('decoder.conv_in.1.weight')).toBe(false);
      const model = buildDecoderGraph(spec, weights, { activations: 'float32', floatImage: true });
      const s = (await ort.InferenceSession.create(model)) as unknown as Session;
      for (const grid of c.grids) {
        const { image, rgba } = await decode(s, ort.Tensor as unknown as TensorCtor, grid);
        const r = compare(image, rgba, grid);
        console.log(`[vq golden] ${c.checkpoint} ${grid.name} fused f32: max abs ${r.maxAbs.toExponential(2)}, u8 max diff ${r.maxLevel}`);
        expect(r.maxAbs).toBeLessThan(1e-3);
        expect(r.maxLevel).toBeLessThanOrEqual(1);
      }
    });

    it('runs the same f32 graph on onnxruntime-web (wasm EP in Node)', async () => {
      const web = await import('onnxruntime-web');
      const s = (await web.InferenceSession.create(await modelF32())) as unknown as Session;
      const grid = c.grids[c.grids.length - 1]!;
      const { image, rgba } = await decode(s, web.Tensor as unknown as TensorCtor, grid);
      const r = compare(image, rgba, grid);
      expect(r.maxAbs).toBeLessThan(1e-3);
      expect(r.maxLevel).toBeLessThanOrEqual(1);
    });
  });
}
