// The WebGPU engine on a real GPU without a browser: Node + Dawn (npm `webgpu`, the WebGPU
// implementation inside Chromium) + ONNX Runtime Web's native WebGPU EP + our WGSL sampler —
// the worker's code path minus Chromium's process hop. For GPU machines that have no Chromium.
// Full-size SimpleAR-0.5B shapes with random weights (q4), a full-width random Cosmos decoder.
//
//   node gpu-node.mjs [--tiny] [--size 1024] [--activations f16|f32] [--steps-only]
// env: WEBGPU_MODULE = path of the `webgpu` package's index.js; ORT_WEB_DIST = onnxruntime-web/dist;
//      DECODER_SHAPES = the shapes table of the real DV8x16x16 decoder, as in
//      tests/fixtures/released-decoder-shapes.tsv.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SIMPLEAR_05B, type LmSpec, type NamedTensor } from '../../src/core/base/model-spec.ts';
import { randomCheckpoint, memoryReader } from '../../tests/helpers/random-model.ts';
import { collectLmWeights } from '../../src/core/convert/lm-weights.ts';
import { describeCosmosDecoder, convertedWeightShapes } from '../../src/core/model/decoder.ts';
import { float32ToFloat16Bytes } from '../../src/core/formats/tensor.ts';
import { requestEngineDevice } from '../../src/core/engine/webgpu-device.ts';
import { createWebGpuEngine } from '../../src/core/engine/create-webgpu.ts';
import type { EngineModel } from '../../src/core/runtime/model.ts';
import type { TextTokenizer } from '../../src/core/formats/tokenizer.ts';
import type { OrtModule } from '../../src/core/base/ort.ts';

const { values: args } = parseArgs({
  options: {
    tiny: { type: 'boolean', default: false },
    size: { type: 'string', default: '1024' },
    activations: { type: 'string' },
    runs: { type: 'string', default: '2' },
  },
});
const log = (...a: unknown[]) => console.log(...a);
const t0 = performance.now();
const since = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;

// Dawn as navigator.gpu.
const { create, globals } = await import(pathToFileURL(process.env.WEBGPU_MODULE ?? 'node_modules/webgpu/index.js').href);
Object.assign(globalThis, globals);
const gpu = create(['enable-dawn-features=allow_unsafe_apis']);
Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
// Dawn wants plain ArrayBuffers in writeBuffer, not views of wasm's shared memory.
const writeBuffer = GPUQueue.prototype.writeBuffer;
GPUQueue.prototype.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset?: number, size?: number) {
  const view = data as ArrayBufferView & { BYTES_PER_ELEMENT?: number };
  if (ArrayBuffer.isView(view) && view.buffer instanceof SharedArrayBuffer) {
    const bpe = view.BYTES_PER_ELEMENT ?? 1;
    const start = (dataOffset ?? 0) * bpe;
    const len = size !== undefined ? size * bpe : view.byteLength - start;
    const copy = new Uint8Array(len);
    copy.set(new Uint8Array(view.buffer, view.byteOffset + start, len));
    return writeBuffer.call(this, buffer, offset, copy);
  }
  return writeBuffer.call(this, buffer, offset, data as GPUAllowSharedBufferSource, dataOffset, size);
} as typeof writeBuffer;
const ortDist = process.env.ORT_WEB_DIST ?? 'node_modules/onnxruntime-web/dist';
const ort = (await import(pathToFileURL(`${ortDist}/ort.webgpu.bundle.min.mjs`).href)) as OrtModule & { env: { wasm: { numThreads: number }; logLevel: string } };
ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const device = await requestEngineDevice(gpu);
log(`adapter ${JSON.stringify(device.adapterInfo)} shader-f16 ${device.shaderF16} (${since()})`);

// The model: SimpleAR-0.5B shapes (or tiny), random weights converted to q4.
const spec: LmSpec = args.tiny
  ? { hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, rmsNormEps: 1e-6, ropeTheta: 1e6, vocabSize: 64466, visualOffset: 466, visualCount: 64000, tieWordEmbeddings: true }
  : SIMPLEAR_05B;
const lmWeights = await collectLmWeights(memoryReader(spec, randomCheckpoint(spec, 7)), spec, { weights: 'q4' });
log(`LM converted to q4 (${since()})`);

const tsv = readFileSync(process.env.DECODER_SHAPES ?? 'decoder_jit_state_dict_keys.tsv', 'utf8').trim().split('\n');
const divide = args.tiny ? 16 : 1;
const shapes = tsv.map((line) => {
  const [name, shape] = line.split('\t') as [string, string];
  const dims = shape.replace(/[()\s]/g, '').split(',').filter(Boolean).map(Number);
  // --tiny: narrow every channel width (not the 6→16 code path or the 192 Haar subbands).
  const keep = (n: number) => n === 6 || n === 16 || n === 192 || n === 1 || n === 3;
  return { name, shape: dims.map((n, i) => (i < 2 && !keep(n) ? n / divide : n)) };
});
const decoder = describeCosmosDecoder(shapes);
let seed = 3;
const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
const decoderWeights = new Map<string, NamedTensor>();
for (const [name, dims] of convertedWeightShapes(decoder, new Map(shapes.map((s) => [s.name, s.shape])))) {
  const n = dims.reduce((a, b) => a * b, 1);
  const fan = dims.length === 4 ? dims[1]! * dims[2]! * dims[3]! : 0;
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = fan ? rand() * Math.sqrt(3 / fan) : name.endsWith('weight') ? 1 + 0.2 * rand() : 0.1 * rand();
  decoderWeights.set(name, { name, type: 'float16', dims, raw: float32ToFloat16Bytes(v) });
}
// Fixed prompt ids (text ids < visualOffset): only their count matters for timing.
const tokenizer = {
  length: spec.visualOffset,
  encode: (text: string) => [spec.visualOffset - 7, ...Array.from({ length: Math.min(40, text.length) }, (_, i) => 100 + i), spec.visualOffset - 5],
} as unknown as TextTokenizer;
const model: EngineModel = { name: 'random SimpleAR-0.5B q4', lm: spec, tokenizer, lmWeights, decoder, decoderWeights };

const activations = (args.activations as 'f16' | 'f32' | undefined) ?? (device.shaderF16 ? 'f16' : 'f32');
const size = Number(args.size);
const engine = await createWebGpuEngine(ort, device, model, { activations, maxLatentSide: size / 16 });
log(`engine ready: activations ${activations} (${since()})`);
for (let r = 0; r < Number(args.runs); r++) {
  const res = await engine.generate({ prompt: 'a highly detailed photo of a red fox in the snow', size, seed: r });
  const s = (ms: number) => (ms / 1000).toFixed(3);
  log(
    JSON.stringify({
      run: r,
      size,
      activations,
      seconds: { prefill: s(res.timings.prefillMs), decode: s(res.timings.decodeMs), vqDecode: s(res.timings.vqMs), total: s(res.timings.totalMs) },
      msPerStep: (res.timings.decodeMs / (res.stats.steps - 1)).toFixed(3),
      stats: res.stats,
    }),
  );
}
await engine.dispose();
log(`done (${since()})`);
process.exit(0);
