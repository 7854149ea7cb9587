// Does ONNX Runtime Web's graph capture (`enableGraphCapture`) work for our LM graph? Graph
// capture would replay a decode step's ~250 recorded GPU dispatches instead of encoding them
// again through wasm on every step (on a fast GPU that encoding is likely most of a step; not
// measured here). It probes ORT Web WITHOUT the engine's workaround (ort-capture-workaround.ts),
// to see whether an ORT upgrade still needs it; README "Known limits" records what it found with
// ORT Web 1.30 on SwiftShader. Run it again after an ORT upgrade, or on a real GPU:
//
//   npx tsx tools/bench/graph-capture-probe.ts [--gpu] [--timeout 60]
//
// Each variant of the tiny fixture's q4 graph runs in a fresh headless Chromium: the cache and
// every input/output are GPU buffers bound the way the engine binds them (present_* = past_*),
// the calls are the engine's decode-style calls (one token per row per call), and the logits of
// every call are compared with onnxruntime-node's for the same calls. Variants:
//   as-built         the engine's graph (total_sequence_length is a CPU scalar input)
//   const-total      total_sequence_length folded into the graph as the cache capacity (with
//                    graph capture, every input must be a GPU buffer, and GQA reads this one on
//                    the CPU; the attention kernels follow seqlens_k, which stays on the GPU)
//   const-total, no-rotary   also GQA's fused rotary switched off: NOT the model's maths (its
//                    logits are not compared), only whether capture and replay complete
// Outcomes: refused (session creation failed), hung (no answer within --timeout; seen when the
// device had WebGPU's default limits: the page's thread spins in ORT's wasm), threw at call N,
// or ok with the largest logit difference from onnxruntime-node.
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ortNode from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { chromium, type Browser } from 'playwright-core';
import { startServer } from '../serve.ts';
import { loadFixtureModel } from '../../tests/helpers/fixture-model.ts';
import { BASE_ARGS, CHROMIUM_PATH } from '../../tests/e2e/browser.ts';
import { lmGraphBytes } from '../../src/core/runtime/model.ts';
import { LmRunner, prefillSchedule } from '../../src/core/runtime/lm-runner.ts';

const { values: args } = parseArgs({ options: { gpu: { type: 'boolean', default: false }, timeout: { type: 'string', default: '60' } } });
const ROOT = resolve(import.meta.dirname, '../..');
// ORT_WEB_DIST: another onnxruntime-web build's dist/ folder, to probe it instead of ours.
const ORT_DIST = process.env.ORT_WEB_DIST ?? join(ROOT, 'node_modules/onnxruntime-web/dist');
const CAPACITY = 64;
const GPU_ARGS = ['--enable-features=Vulkan,VulkanFromANGLE', '--use-angle=vulkan', '--use-vulkan=native', '--ignore-gpu-blocklist', '--disable-vulkan-surface', '--enable-gpu'];

interface ProtoNode { opType: string; input: string[]; attribute: { name: string; i: number }[] }
interface ProtoModel { graph: { node: ProtoNode[] } }
const { onnx } = onnxProto as unknown as {
  onnx: { ModelProto: { decode(b: Uint8Array): ProtoModel; encode(m: ProtoModel): { finish(): Uint8Array } } };
};

/** The same graph with GQA's fused rotary switched off (not the model's maths). */
function withoutRotary(bytes: Uint8Array): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  for (const n of m.graph.node.filter((n) => n.opType === 'GroupQueryAttention')) {
    n.input = n.input.slice(0, 7);
    for (const a of n.attribute) if (a.name === 'do_rotary') a.i = 0;
  }
  return onnx.ModelProto.encode(m).finish();
}

// The page side: one variant, `calls` decode-style calls, logits read back after each.
const PAGE = `
export async function probe({ graph, withTotal, capture, calls, V, spec }) {
  const ort = await import('/ort.webgpu.bundle.min.mjs');
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = '/';
  const adapter = await navigator.gpu.requestAdapter();
  const l = adapter.limits;
  // The limits the engine asks for (webgpu-device.ts); ORT's fused kernels need more than the defaults.
  const names = ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxStorageBuffersPerShaderStage'];
  const device = await adapter.requestDevice({ requiredLimits: Object.fromEntries(names.map((n) => [n, l[n]])) });
  const model = new Uint8Array(await (await fetch('/' + graph)).arrayBuffer());
  let session;
  try {
    session = await ort.InferenceSession.create(model, { executionProviders: [{ name: 'webgpu', device }], enableGraphCapture: capture, preferredOutputLocation: 'gpu-buffer', logSeverityLevel: 3 });
  } catch (e) { return { outcome: 'refused', message: String(e.message ?? e) }; }
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buffer = (n) => device.createBuffer({ size: Math.ceil(n / 16) * 16, usage });
  const gpu = (b, dataType, dims) => ort.Tensor.fromGpuBuffer(b, { dataType, dims });
  const feeds = {}, fetches = {};
  const dims = [2, spec.numKvHeads, ${CAPACITY}, spec.headDim];
  for (let i = 0; i < spec.numLayers; i++) for (const kv of ['key', 'value']) {
    const t = gpu(buffer(dims.reduce((a, b) => a * b) * 4), 'float32', dims);
    feeds['past_' + kv + '.' + i] = t;
    fetches['present_' + kv + '.' + i] = t;
  }
  const ids = buffer(8), seqlens = buffer(8), index = buffer(8), logits = buffer(2 * V * 4);
  const staging = device.createBuffer({ size: 2 * V * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(index, 0, Int32Array.of(0, 1));
  feeds.input_ids = gpu(ids, 'int32', [2, 1]);
  feeds.seqlens_k = gpu(seqlens, 'int32', [2]);
  feeds.logits_index = gpu(index, 'int32', [2, 1]);
  fetches.logits = gpu(logits, 'float32', [2, 1, V]);
  const out = [];
  for (let k = 0; k < calls.length; k++) {
    device.queue.writeBuffer(ids, 0, Int32Array.from(calls[k].ids));
    device.queue.writeBuffer(seqlens, 0, Int32Array.from(calls[k].seqlens));
    const run = withTotal ? { ...feeds, total_sequence_length: new ort.Tensor('int32', Int32Array.of(calls[k].total), []) } : feeds;
    try { await session.run(run, fetches); } catch (e) { return { outcome: 'threw at call ' + k, message: String(e.message ?? e) }; }
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(logits, 0, staging, 0, 2 * V * 4);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    out.push(Array.from(new Float32Array(staging.getMappedRange().slice(0))));
    staging.unmap();
  }
  return { outcome: 'ok', logits: out };
}`;

interface Call { ids: number[]; seqlens: number[]; total: number }
type PageResult = { outcome: string; message?: string; logits?: number[][] };

const model = await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'q4');
const spec = model.lm;
const V = spec.visualCount;
const built = lmGraphBytes(model, 'f32', CAPACITY);
// total_sequence_length folded in as the capacity: the engine's graph for a captured session.
const constTotal = lmGraphBytes(model, 'f32', CAPACITY, { graphCapture: true });

// The engine's calls for a CFG pair of unequal prompts (one token per row and call, as a graph
// that must keep one shape), then decode steps; onnxruntime-node's logits for each.
const prompts = [[5, 9, 11, 3, 8, 20, 21], [5, 9, 4]];
const calls: Call[] = prefillSchedule(prompts, 1).map((c) => ({ ids: Array.from(c.feeds.input_ids), seqlens: Array.from(c.feeds.seqlens_k), total: c.feeds.total_sequence_length }));
let lengths = prompts.map((p) => p.length);
for (const code of [3, 7, 1, 12]) {
  calls.push({ ids: [spec.visualOffset + code, spec.visualOffset + code], seqlens: [...lengths], total: Math.max(...lengths) + 1 });
  lengths = lengths.map((n) => n + 1);
}
const session = await ortNode.InferenceSession.create(built, { logSeverityLevel: 3 });
const runner = new LmRunner(ortNode, session, spec, { capacity: CAPACITY, growBy: 0 });
const expected: Float32Array[] = [];
for (const c of calls) {
  const f = { input_ids: Int32Array.from(c.ids), seqlens_k: Int32Array.from(c.seqlens), total_sequence_length: c.total, logits_index: Int32Array.of(0, 1), seq: 1, rows: 1 };
  expected.push((await runner.run(f)).slice());
}
await session.release();

const dir = await mkdtemp(join(tmpdir(), 'simplear-capture-probe-'));
const timeoutMs = Number(args.timeout) * 1000;
try {
  for (const f of ['ort.webgpu.bundle.min.mjs', 'ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm']) await copyFile(join(ORT_DIST, f), join(dir, f));
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>graph capture probe</title>');
  await writeFile(join(dir, 'probe.mjs'), PAGE);
  const variants = [
    { name: 'as-built', file: 'as-built.onnx', bytes: built, withTotal: true, compare: true },
    { name: 'const-total', file: 'const-total.onnx', bytes: constTotal, withTotal: false, compare: true },
    { name: 'const-total, no-rotary', file: 'no-rotary.onnx', bytes: withoutRotary(constTotal), withTotal: false, compare: false },
  ];
  for (const v of variants) await writeFile(join(dir, v.file), v.bytes);
  const server = await startServer({ root: dir, port: 0 });
  const rows: string[] = [];
  try {
    for (const v of variants) {
      for (const capture of [false, true]) {
        if (!capture && !v.compare) continue;
        const result = await probeOnce({ graph: v.file, withTotal: v.withTotal, capture }, server.url);
        let outcome = result.outcome;
        if (result.logits && v.compare) {
          let maxDiff = 0;
          result.logits.forEach((row, k) => row.forEach((x, j) => (maxDiff = Math.max(maxDiff, Math.abs(x - expected[k]![j]!)))));
          outcome += ` (max |Δ| vs onnxruntime-node ${maxDiff.toExponential(1)} over ${calls.length} calls)`;
        }
        rows.push(`${v.name.padEnd(24)} ${capture ? 'capture   ' : 'no capture'}  ${outcome}${result.message ? `: ${result.message.replace(/\s+/g, ' ').replace(/^.*?ERROR_MESSAGE: /, '').slice(0, 300)}` : ''}`);
        console.log(rows.at(-1));
      }
    }
  } finally {
    await server.close();
  }
  const ortWeb = JSON.parse(await readFile(join(ORT_DIST, '../package.json'), 'utf8')) as { version: string };
  console.log(`\nonnxruntime-web ${ortWeb.version}, ${args.gpu ? 'GPU flags' : 'SwiftShader'}\n${rows.join('\n')}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}

/** One variant in a fresh browser: a hang spins the page's thread, so the browser is killed. */
async function probeOnce(o: { graph: string; withTotal: boolean; capture: boolean }, url: string): Promise<PageResult> {
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: [...BASE_ARGS, '--enable-unsafe-webgpu', ...(args.gpu ? GPU_ARGS : [])] });
  try {
    const page = await browser.newPage();
    await page.goto(`${url}index.html`);
    const run = page.evaluate(async ({ module, ...p }) => ((await import(module)) as { probe(p: object): Promise<PageResult> }).probe(p), {
      module: '/probe.mjs',
      ...o,
      calls,
      V,
      spec,
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<PageResult>((done) => (timer = setTimeout(() => done({ outcome: `hung (no answer in ${args.timeout} s)` }), timeoutMs)));
    return await Promise.race([run.catch((e: Error) => ({ outcome: 'failed', message: e.message })), timeout]).finally(() => clearTimeout(timer));
  } finally {
    await browser.close().catch(() => {});
  }
}
