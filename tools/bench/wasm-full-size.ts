// The engine's LM on the wasm EP at full size (SimpleAR-0.5B shapes, random weights), in Node:
// for each weight format, the graph the wasm backend builds (create-cpu.ts → cpu-lm-session.ts:
// Gather lookups, weights as external data) on onnxruntime-web's WebGPU build, the build the page
// loads, with the engine's KV-cache capacity: session created, a prefill and decode steps run.
// Each format runs in its own process, so its peak RSS is its own.
//
//   npx tsx tools/bench/wasm-full-size.ts [--formats q4,q8,f16,f32] [--steps 3] [--layers N] [--int8]
//
// Prints one line per format and a JSON summary as the last line. --layers N cuts the model to
// N layers (a quicker look; the embedding and head stay full-size). --int8 builds q4/q8 linear
// layers as LmGraphOptions.quantizedLinear 'int8' (MatMulIntegerToFloat) instead of MatMulNBits.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SIMPLEAR_05B, type LmSpec } from '../../src/core/base/model-spec.ts';
import { convertLmWeights, type LmWeightFormat } from '../../src/core/convert/lm-weights.ts';
import { lazyRandomReader } from '../../tests/helpers/random-model.ts';
import { LmRunner, argmax, type TensorCtor } from '../../src/core/runtime/lm-runner.ts';
import { cpuLmGraphChoices, createLmSession } from '../../src/core/runtime/cpu-lm-session.ts';
import { CPU_KV_CACHE } from '../../src/core/engine/create-cpu.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS } from '../../src/core/engine/engine.ts';
import type { EngineModel } from '../../src/core/runtime/model.ts';
import type { InferenceSession, OrtModule } from '../../src/core/base/ort.ts';
import type { NamedTensor } from '../../src/core/base/model-spec.ts';

const { values: args } = parseArgs({
  options: {
    formats: { type: 'string', default: 'q4,q8,f16,f32' },
    steps: { type: 'string', default: '3' },
    layers: { type: 'string' },
    int8: { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});

type Held = ReturnType<typeof heldMB>;

interface Result {
  format: LmWeightFormat;
  ok: boolean;
  error?: string;
  weightsMB?: number;
  modelMB?: number;
  externalFiles?: number;
  externalMB?: number;
  convertS?: number;
  sessionS?: number;
  prefillMs?: number;
  stepMs?: number[];
  peakRssMB: number;
  /** RSS after a GC: converted weights held, then with the session, then after the runs. */
  heldMB?: { weights: Held; session: Held; running: Held };
}

const mb = (n: number) => Math.round(n / 2 ** 20);
const peakRssMB = () => Math.round(process.resourceUsage().maxRSS / 1024);
/**
 * After a full GC (the child runs with --expose-gc), what is really held: RSS, and the bytes of
 * JS ArrayBuffers (our converted weights). The wasm EP's WebAssembly memory is not among them
 * (measured): the RSS growth at session creation is its heap, the weights as ORT holds them.
 */
const heldMB = () => {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rss: mb(m.rss), arrayBuffers: mb(m.arrayBuffers) };
};

async function runOne(format: LmWeightFormat): Promise<Result> {
  const spec: LmSpec = args.layers ? { ...SIMPLEAR_05B, numLayers: Number(args.layers) } : SIMPLEAR_05B;
  const t0 = performance.now();
  const lmWeights = new Map<string, NamedTensor>();
  for await (const t of convertLmWeights(lazyRandomReader(spec, 7), spec, { weights: format })) lmWeights.set(t.name, t);
  const convertS = (performance.now() - t0) / 1000;
  let weightsBytes = 0;
  for (const t of lmWeights.values()) weightsBytes += t.raw.byteLength;

  const heldWeights = heldMB();
  const web = await import('onnxruntime-web/webgpu');
  web.env.wasm.numThreads = 1;
  const model = { name: `random ${format}`, lm: spec, lmWeights } as unknown as EngineModel;
  const capacity = MAX_PROMPT_TOKENS + MAX_LATENT_SIDE * MAX_LATENT_SIDE;
  const choices = { accuracyLevel: 0 as const, kvCache: CPU_KV_CACHE, ...cpuLmGraphChoices('wasm'), ...(args.int8 ? { quantizedLinear: 'int8' as const } : {}) };
  // What the engine's code hands to ORT: the model and its external data files.
  let sizes = { modelMB: 0, externalFiles: 0, externalMB: 0 };
  const recording = {
    Tensor: web.Tensor,
    InferenceSession: {
      create(m: Uint8Array, options?: InferenceSession.SessionOptions) {
        const files = (options?.externalData ?? []) as readonly { data: Uint8Array }[];
        sizes = { modelMB: m.byteLength / 2 ** 20, externalFiles: files.length, externalMB: mb(files.reduce((a, f) => a + f.data.byteLength, 0)) };
        return web.InferenceSession.create(m, options);
      },
    },
  } as unknown as OrtModule;
  const t1 = performance.now();
  const session = await createLmSession(recording, model, 'f32', capacity, choices, { executionProviders: ['wasm'], graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  const sessionS = (performance.now() - t1) / 1000;
  const heldSession = heldMB();

  const runner = new LmRunner(web as unknown as { Tensor: TensorCtor }, session, spec, { capacity, kvCache: CPU_KV_CACHE, preallocateOutputs: false });
  const V = spec.visualCount;
  const prompt = Array.from({ length: 40 }, (_, i) => (i * 977) % spec.visualOffset);
  const t2 = performance.now();
  let logits = await runner.prefill([prompt, prompt.slice(0, 12)]);
  const prefillMs = performance.now() - t2;
  const stepMs: number[] = [];
  for (let s = 0; s < Number(args.steps); s++) {
    if (!logits.every(Number.isFinite)) throw new Error('non-finite logits');
    const next = [argmax(logits.subarray(0, V)), argmax(logits.subarray(V, 2 * V))].map((c) => spec.visualOffset + c);
    const t = performance.now();
    logits = await runner.step(next);
    stepMs.push(Math.round(performance.now() - t));
  }
  const heldRunning = heldMB();
  await session.release();
  return {
    format,
    ok: true,
    weightsMB: mb(weightsBytes),
    modelMB: Math.round(sizes.modelMB * 10) / 10,
    externalFiles: sizes.externalFiles,
    externalMB: sizes.externalMB,
    convertS: Math.round(convertS * 10) / 10,
    sessionS: Math.round(sessionS * 10) / 10,
    prefillMs: Math.round(prefillMs),
    stepMs,
    peakRssMB: peakRssMB(),
    heldMB: { weights: heldWeights, session: heldSession, running: heldRunning },
  };
}

if (args.child) {
  const format = args.child as LmWeightFormat;
  let result: Result;
  try {
    result = await runOne(format);
  } catch (e) {
    result = { format, ok: false, error: String(e).slice(0, 400), peakRssMB: peakRssMB() };
  }
  console.log(JSON.stringify(result));
  process.exit(0);
}

const fmtHeld = (h: Held) => `${h.rss} / ${h.arrayBuffers}`;
const results: Result[] = [];
for (const format of args.formats.split(',') as LmWeightFormat[]) {
  const child = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, fileURLToPath(import.meta.url), '--child', format, '--steps', args.steps, ...(args.layers ? ['--layers', args.layers] : []), ...(args.int8 ? ['--int8'] : [])], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const line = child.stdout.trim().split('\n').at(-1) ?? '';
  let r: Result;
  try {
    r = JSON.parse(line) as Result;
  } catch {
    r = { format, ok: false, error: `exit ${child.status ?? child.signal}: ${child.stderr.slice(-400)}`, peakRssMB: 0 };
  }
  results.push(r);
  console.log(
    r.ok
      ? `${format}: weights ${r.weightsMB} MB (model ${r.modelMB} MB + ${r.externalFiles} external files, ${r.externalMB} MB); convert ${r.convertS} s, session ${r.sessionS} s, prefill ${r.prefillMs} ms, steps ${r.stepMs!.join('/')} ms; peak RSS ${r.peakRssMB} MB; held after GC (RSS / JS ArrayBuffers): converted weights ${fmtHeld(r.heldMB!.weights)}, + session ${fmtHeld(r.heldMB!.session)}, after the runs ${fmtHeld(r.heldMB!.running)} MB`
      : `${format}: FAILED ${r.error} (peak RSS ${r.peakRssMB} MB)`,
  );
}
console.log(JSON.stringify({ wasmFullSize: results }));
process.exitCode = results.every((r) => r.ok) ? 0 : 1;
