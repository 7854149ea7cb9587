// `simplear bench` (`npm run bench`): the measurements of docs/testing.md#performance-model.
//  a. Node CPU (onnxruntime-node): one batch-2 CFG decode step of SimpleAR-0.5B shapes (q4) at
//     context ≈ prompt + 2048, against the memory-bandwidth bound measured in the same run and
//     against a plain PyTorch step (tools/bench/torch_decode_step.py). The KV cache is the CPU
//     engine's: a runner growing in KV_CACHE_CHUNK slots up to the engine's 1024 px maximum, so
//     it holds what the engine's would at this context (attention reads all of it); a static
//     cache of that maximum is timed too. Variants: the engine's configuration (create-cpu.ts:
//     a read-only KV cache, f32 activations, MatMulNBits accuracy_level 4 for q4 weights), which
//     the ratios, the bound's KV bytes and the profile are about; the same at level 0; and the
//     engine before the read-only cache (GroupQueryAttention's in-place cache, which
//     onnxruntime-node copies whole after every run; f16 to halve that copy).
//     With the cost of one speculative Jacobi verification (window runs) at the same context,
//     and ORT's big kernels alone (bench-floors.ts: the step's MatMulNBits and cache GEMMs,
//     unprofiled), so the ratio to the bound splits into theirs and the rest of the step's.
//  b. Chromium WebGPU (SwiftShader without a GPU; bench/gpu.sh runs it on a real GPU): the app's
//     worker engine loads a checkpoint over HTTP and generates; stats and ms per step.
//  c. SJD end to end on the tiny fixture engine (with a): accepted tokens per run, ms per token.
// Prints a readable table on stderr-free stdout followed by one JSON object (last line).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { CommandModule, OptionValues } from './command.ts';
import { UsageError } from './command.ts';
import { SIMPLEAR_05B, type LmSpec, type NamedTensor } from '../core/base/model-spec.ts';
import { buildLmGraph, type KvCacheMode } from '../core/model/lm-graph.ts';
import { KV_CACHE_CHUNK, LmRunner, createKvCache, resizeKvCache } from '../core/runtime/lm-runner.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS } from '../core/engine/engine.ts';
import { CPU_KV_CACHE, cpuAccuracyLevel } from '../core/engine/create-cpu.ts';
import type { Activations } from '../core/runtime/model.ts';
import { collectLmWeights } from '../core/convert/lm-weights.ts';
import { memoryReader, randomCheckpoint } from '../../tests/helpers/random-model.ts';
import { openFolder } from '../core/formats/byte-source.ts';
import { openSafetensors } from '../core/formats/safetensors.ts';
import { readModelConfig } from '../core/formats/model-config.ts';
import { loadTokenizer } from '../core/formats/tokenizer.ts';
import { encodePrompt } from '../core/model/prompt.ts';
import { kernelFloors } from './bench-floors.ts';
import { median, round } from './bench-stats.ts';

const ROOT = resolve(import.meta.dirname, '../..');
/** A full-size random checkpoint (`npm run fixtures:full -- --out DIR`), used when present. */
const FULL_CHECKPOINT = process.env.SIMPLEAR_FULL ?? join(tmpdir(), 'simplear-full');
const TORCH_PYTHON = '/usr/bin/python3';
/** A typical prompt for the context length (its token count, both streams, sets P). */
const SAMPLE_PROMPT = 'a red fox sitting in a snowy forest at dawn, soft light, highly detailed';

const log = (s: string) => process.stderr.write(`${s}\n`);

// ── a. Node CPU ────────────────────────────────────────────────────────────────────────────

/** Copy bandwidth: best of `reps` copies of `mib` MiB; GB/s of traffic (bytes read + written). */
export function copyBandwidth(mib: number, reps = 5): { gbPerS: number; mib: number } {
  const n = mib * 2 ** 20;
  const src = new Float64Array(n / 8).fill(1.5);
  const dst = new Float64Array(n / 8);
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    dst.set(src);
    best = Math.min(best, performance.now() - t);
  }
  return { gbPerS: round((2 * n) / (best / 1000) / 1e9), mib };
}

/** Bytes one decode step reads: every converted tensor but the text-embedding table, as stored;
 * `scales`: the bytes of the q4/q8 scales among them (stored f16; an f32 graph holds them in f32). */
export function stepWeightBytes(weights: ReadonlyMap<string, NamedTensor>): { layers: number; head: number; scales: number } {
  let layers = 0;
  let head = 0;
  let scales = 0;
  for (const [name, t] of weights) {
    const read = name.startsWith('layers.') || name.startsWith('head') || name.startsWith('final_norm');
    if (name.startsWith('layers.')) layers += t.raw.byteLength;
    else if (read) head += t.raw.byteLength;
    if (read && name.endsWith('.scales')) scales += t.raw.byteLength;
  }
  return { layers, head, scales };
}

async function loadLm(quick: boolean): Promise<{ spec: LmSpec; weights: Map<string, NamedTensor>; source: string; prompt: [number, number] }> {
  if (!quick && existsSync(join(FULL_CHECKPOINT, 'model.safetensors'))) {
    const folder = openFolder(FULL_CHECKPOINT);
    const tokenizer = await loadTokenizer(folder);
    const { lm } = await readModelConfig(folder, tokenizer.length);
    const t = performance.now();
    const weights = await collectLmWeights(await openSafetensors(folder), lm, { weights: 'q4' });
    const ids = encodePrompt(tokenizer, SAMPLE_PROMPT);
    log(`  q4 conversion of ${FULL_CHECKPOINT}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
    return { spec: lm, weights, source: `${FULL_CHECKPOINT} (random weights, converted to q4)`, prompt: [ids.cond.length, ids.uncond.length] };
  }
  // Full widths; --quick: 2 layers and a small text vocabulary (the head keeps its 64,000 rows).
  const spec: LmSpec = quick ? { ...SIMPLEAR_05B, numLayers: 2, visualOffset: 1000, vocabSize: 65000 } : SIMPLEAR_05B;
  const t = performance.now();
  const weights = await collectLmWeights(memoryReader(spec, randomCheckpoint(spec, 7)), spec, { weights: 'q4' });
  log(`  random checkpoint (random-model.ts) → q4: ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return { spec, weights, source: quick ? 'random-model.ts, full widths, 2 layers (--quick)' : 'random-model.ts (SimpleAR-0.5B shapes)', prompt: [24, 96] };
}

interface CpuConfig {
  accuracyLevel: 0 | 4;
  /** Activations and KV cache. */
  activations: Activations;
  kvCache: KvCacheMode;
}

interface CpuVariant extends CpuConfig {
  /** The configuration the CPU engine runs (createCpuEngine's defaults). */
  engine: boolean;
  /** Logits of the same state against the first variant's (read-only, level 0, f32). */
  vsLevel0: { maxAbs: number; argmaxAgree: boolean } | null;
  msPerStep: number;
  steps: number[];
  /** One SJD verification of window + 1 tokens, run as cpu-sjd.ts runs it (sjdWindowRuns). */
  sjdWindows: SjdWindowTiming[];
}

const SJD_BENCH_WINDOWS = [4, 8] as const;

interface SjdWindowTiming {
  window: number;
  msPerIteration: number;
  /** Plain steps timed in turn with the windows (a shared machine drifts; the ratio holds). */
  msPerStepAlongside: number;
  /** Accepted tokens per run above which SJD is faster: msPerIteration / msPerStepAlongside. */
  breakEvenTokensPerRun: number;
}

/** One variant's session and the plain step the extra timings are measured alongside. */
interface StepBench {
  ort: typeof import('onnxruntime-node');
  session: import('onnxruntime-node').InferenceSession;
  spec: LmSpec;
  /** The engine's largest cache (slots per row). */
  capacity: number;
  /** The context of every measured step (cond, uncond). */
  lengths: number[];
  token: number;
  plainStep: () => Promise<unknown>;
  quick: boolean;
  dtype: 'float32' | 'float16';
  kvCache: KvCacheMode;
}

/**
 * The cost of one SJD verification at the same context as the plain step, run as cpu-sjd.ts does
 * it: window + 1 tokens after each CFG stream's prefix, in one batch-2 run on a read-only cache,
 * else in two batch-1 runs; timed alternately with plain batch-2 steps. SJD only pays where the
 * accepted tokens per run exceed the ratio.
 */
async function sjdWindowRuns({ ort, session, spec, capacity, lengths, token, plainStep, quick, dtype, kvCache }: StepBench): Promise<SjdWindowTiming[]> {
  const out: SjdWindowTiming[] = [];
  // Each runner's rows take lengths[offset + row] as their prefix.
  const runners =
    kvCache === 'read-only'
      ? [{ runner: new LmRunner(ort, session, spec, { batch: 2, capacity, dtype, kvCache }), offset: 0 }]
      : lengths.map((_, b) => ({ runner: new LmRunner(ort, session, spec, { batch: 1, capacity, dtype, kvCache }), offset: b }));
  for (const window of SJD_BENCH_WINDOWS) {
    const ids = new Array<number>(window + 1).fill(token);
    const windows: number[] = [];
    const steps: number[] = [];
    for (let i = 0; i < (quick ? 4 : 6); i++) {
      // nothing committed: the same context every time
      for (const { runner, offset } of runners) runner.lengths.forEach((_, row) => (runner.lengths[row] = lengths[offset + row]!));
      let t = performance.now();
      for (const { runner } of runners) await runner.runWindow(ids);
      const w = performance.now() - t;
      t = performance.now();
      await plainStep();
      const st = performance.now() - t;
      if (i > 0) {
        // the first call of a new shape warms up
        windows.push(w);
        steps.push(st);
      }
    }
    const msPerIteration = median(windows);
    const msPerStep = median(steps);
    out.push({ window, msPerIteration: round(msPerIteration), msPerStepAlongside: round(msPerStep), breakEvenTokensPerRun: round(msPerIteration / msPerStep) });
  }
  return out;
}

/**
 * Steps through a static cache of the engine's maximum (what createCpuEngine allocated before the
 * cache grew with the context), in pairs with the growing runner's steps at the same context
 * (order swapped every pair); the ratio is the median of the pairs' ratios, which a shared
 * machine's drift affects least.
 */
async function staticCacheSteps({ ort, session, spec, capacity, lengths, token, plainStep, quick, dtype, kvCache }: StepBench): Promise<{ msPerStep: number; grownMsPerStepAlongside: number; staticOverGrown: number }> {
  const fixed = new LmRunner(ort, session, spec, { capacity, growBy: 0, dtype, kvCache });
  const staticStep = () => {
    fixed.lengths[0] = lengths[0]!;
    fixed.lengths[1] = lengths[1]!;
    return fixed.step([token, token]);
  };
  const timed = async (f: () => Promise<unknown>) => {
    const t = performance.now();
    await f();
    return performance.now() - t;
  };
  await staticStep(); // the first step of the new shape warms up
  const still: number[] = [];
  const grown: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < (quick ? 4 : 10); i++) {
    let a: number;
    let b: number;
    if (i % 2) {
      b = await timed(plainStep);
      a = await timed(staticStep);
    } else {
      a = await timed(staticStep);
      b = await timed(plainStep);
    }
    still.push(a);
    grown.push(b);
    ratios.push(a / b);
  }
  const s = median(still);
  const g = median(grown);
  log(`  static ${capacity}-slot cache: ${round(s)} ms/step vs ${round(g)} ms/step grown, in pairs: ×${round(median(ratios))}`);
  return { msPerStep: round(s), grownMsPerStepAlongside: round(g), staticOverGrown: round(median(ratios)) };
}

/** One growth of a batch-2 cache of `slots` slots by a chunk (allocation + copy): best of 3, ms. */
function growthCost(ort: typeof import('onnxruntime-node'), spec: LmSpec, slots: number, dtype: 'float32' | 'float16', kvCache: KvCacheMode): number {
  const cache = createKvCache(ort.Tensor, spec, 2, slots, dtype, kvCache === 'read-only');
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    resizeKvCache(ort.Tensor, cache, slots + KV_CACHE_CHUNK);
    best = Math.min(best, performance.now() - t);
  }
  return round(best);
}

/** Where a decode step's time goes: ORT's own profiler over a few steps of a fresh session. */
interface StepBreakdown {
  /** Wall time of runner.step() as the caller sees it. */
  wallMsPerStep: number;
  /** ORT's model_run span: graph execution inside the native session. */
  modelRunMsPerStep: number;
  /** Sum of kernel times, and the largest op types. */
  kernelMsPerStep: number;
  byOp: { op: string; msPerStep: number; nodes: number }[];
  /** wall − model_run: the binding's marshalling (onnxruntime-node copies every output into a
   * fresh ArrayBuffer: with a read-only cache, only each step's new entries) and the runner's
   * writes of the new entries into its cache. */
  outsideOrtMsPerStep: number;
}

interface ProfileEvent {
  cat?: string;
  name: string;
  dur: number;
  ts: number;
  args?: { op_name?: string };
}

async function profileStep(
  ort: typeof import('onnxruntime-node'),
  graph: Uint8Array,
  options: Record<string, unknown>,
  spec: LmSpec,
  capacity: number,
  lengths: number[],
  token: number,
  steps: number,
  dtype: 'float32' | 'float16',
  kvCache: KvCacheMode,
): Promise<StepBreakdown> {
  const dir = await mkdtemp(join(tmpdir(), 'simplear-profile-'));
  try {
    const session = await ort.InferenceSession.create(graph, { ...options, enableProfiling: true, profileFilePrefix: join(dir, 'ort') });
    const runner = new LmRunner(ort, session, spec, { capacity, dtype, kvCache });
    const wall: number[] = [];
    for (let i = 0; i < steps + 1; i++) {
      runner.lengths[0] = lengths[0]!;
      runner.lengths[1] = lengths[1]!;
      const t = performance.now();
      await runner.step([token, token]);
      if (i > 0) wall.push(performance.now() - t); // the first run warms up
    }
    session.endProfiling();
    await session.release();
    const file = (await readdir(dir)).find((f) => f.endsWith('.json'));
    if (!file) throw new Error('ORT wrote no profile');
    const events = JSON.parse(await readFile(join(dir, file), 'utf8')) as ProfileEvent[];
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').slice(1);
    const from = runs[0]?.ts ?? Infinity;
    const byOp = new Map<string, { us: number; nodes: number }>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < from) continue;
      const op = e.args?.op_name ?? '?';
      const o = byOp.get(op) ?? { us: 0, nodes: 0 };
      o.us += e.dur;
      o.nodes += 1;
      byOp.set(op, o);
    }
    const n = runs.length;
    const kernelUs = [...byOp.values()].reduce((a, o) => a + o.us, 0);
    const modelRunMs = median(runs.map((r) => r.dur / 1000));
    const wallMs = median(wall);
    return {
      wallMsPerStep: round(wallMs),
      modelRunMsPerStep: round(modelRunMs),
      kernelMsPerStep: round(kernelUs / n / 1000),
      byOp: [...byOp]
        .sort((a, b) => b[1].us - a[1].us)
        .slice(0, 4)
        .map(([op, o]) => ({ op, msPerStep: round(o.us / n / 1000), nodes: Math.round(o.nodes / n) })),
      outsideOrtMsPerStep: round(wallMs - modelRunMs),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function benchCpu(quick: boolean) {
  const ort = await import('onnxruntime-node');
  log('a. Node CPU decode step');
  const { spec, weights, source, prompt } = await loadLm(quick);
  const generated = quick ? 256 : 2048;
  const lengths = prompt.map((p) => p + generated);
  const context = Math.max(...lengths);
  const warmup = quick ? 1 : 2;
  const measured = quick ? 5 : 15; // a shared machine drifts: a median of many
  // The engine's cache: at most a 512-token prompt + 1024 px (createCpuEngine), grown in chunks
  // (LmRunner's default growBy) as the context needs: the runners below hold what the engine's
  // would at this context. The graph's rotary tables are the engine's length too.
  const capacity = MAX_PROMPT_TOKENS + MAX_LATENT_SIDE ** 2;
  const threads = availableParallelism();
  const sessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all' as const,
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    logSeverityLevel: 3 as const,
  };
  const token = spec.visualOffset + 1234;
  const variants: CpuVariant[] = [];
  // The engine's configuration (create-cpu.ts for these q4 weights on onnxruntime-node), the
  // same at level 0 (first: the others' logits are compared with its), and the engine before the
  // read-only cache.
  const ENGINE: CpuConfig = { accuracyLevel: cpuAccuracyLevel(weights, 'cpu'), activations: 'f32', kvCache: CPU_KV_CACHE };
  const configs: CpuConfig[] = [{ ...ENGINE, accuracyLevel: 0 }, ENGINE, { accuracyLevel: 4, activations: 'f16', kvCache: 'in-place' }];
  const isEngine = (c: CpuConfig) => c.accuracyLevel === ENGINE.accuracyLevel && c.activations === ENGINE.activations && c.kvCache === ENGINE.kvCache;
  let firstLogits: Float32Array | undefined;
  let breakdown: StepBreakdown | undefined;
  let kvSlots = 0;
  let staticCache: { msPerStep: number; grownMsPerStepAlongside: number; staticOverGrown: number } | undefined;
  /** Same state (zero cache of the same lengths, same token): max |Δ| and argmax vs the first. */
  const vsFirst = (logits: Float32Array) => {
    let maxAbs = 0;
    let a = 0;
    let b = 0;
    for (let i = 0; i < spec.visualCount; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(logits[i]! - firstLogits![i]!));
      if (logits[i]! > logits[b]!) b = i;
      if (firstLogits![i]! > firstLogits![a]!) a = i;
    }
    return { maxAbs: round(maxAbs, 4), argmaxAgree: a === b };
  };
  for (const config of configs) {
    const { accuracyLevel, activations, kvCache } = config;
    const engine = isEngine(config);
    const dtype = activations === 'f16' ? 'float16' : 'float32';
    const graph = buildLmGraph(spec, (n) => weights.get(n), { activations, maxSeqLen: capacity, accuracyLevel, kvCache });
    const session = await ort.InferenceSession.create(graph, sessionOptions);
    const runner = new LmRunner(ort, session, spec, { capacity, dtype, kvCache });
    // The cache lengths are set directly: contents do not matter for the timing.
    runner.lengths[0] = lengths[0]!;
    runner.lengths[1] = lengths[1]!;
    const first = await runner.step([token, token]);
    const vsLevel0 = firstLogits ? vsFirst(first) : null;
    firstLogits ??= first.slice();
    const plainStep = () => {
      runner.lengths[0] = lengths[0]!; // the same context (and cache size) every step
      runner.lengths[1] = lengths[1]!;
      return runner.step([token, token]);
    };
    for (let i = 1; i < warmup; i++) await plainStep();
    const steps: number[] = [];
    for (let i = 0; i < measured; i++) {
      const t = performance.now();
      await plainStep();
      steps.push(performance.now() - t);
    }
    const bench: StepBench = { ort, session, spec, capacity, lengths, token, plainStep, quick, dtype, kvCache };
    if (engine) {
      kvSlots = runner.capacity;
      staticCache = await staticCacheSteps(bench);
    }
    const sjdWindows = await sjdWindowRuns(bench);
    await session.release();
    if (engine) {
      breakdown = await profileStep(ort, graph, sessionOptions, spec, capacity, lengths, token, quick ? 3 : 5, dtype, kvCache);
      log(`  the engine's step profiled: ${breakdown.wallMsPerStep} ms/step wall, ${breakdown.modelRunMsPerStep} ms in ORT's model_run ` +
        `(kernels ${breakdown.kernelMsPerStep} ms: ${breakdown.byOp.map((o) => `${o.op} ${o.msPerStep}`).join(', ')})`);
    }
    variants.push({ ...config, engine, vsLevel0, msPerStep: round(median(steps)), steps: steps.map((s) => round(s, 1)), sjdWindows });
    log(`  ${kvCache} cache, accuracy_level ${accuracyLevel}, ${activations}${engine ? ' (the engine\'s)' : ''}: ${round(median(steps))} ms/step (median of ${measured}), KV cache ${runner.capacity} slots; ` +
      sjdWindows.map((w) => `SJD window ${w.window}: ${w.msPerIteration} ms/verification vs ${w.msPerStepAlongside} ms/step`).join(', '));
  }
  const best = variants.reduce((a, b) => (b.msPerStep < a.msPerStep ? b : a));
  const ours = variants.find((v) => v.engine)!;

  const w = stepWeightBytes(weights);
  const engineKvBytesPerToken = spec.numLayers * 2 * spec.numKvHeads * spec.headDim * (ENGINE.activations === 'f16' ? 2 : 4);
  const growth = growthCost(ort, spec, kvSlots, ENGINE.activations === 'f16' ? 'float16' : 'float32', ENGINE.kvCache);
  log(`  one growth of the cache (${kvSlots} → ${kvSlots + KV_CACHE_CHUNK} slots): ${growth} ms, once per ${KV_CACHE_CHUNK} steps`);
  // The bound is for the engine's step: its cache dtype.
  const kv = (lengths[0]! + lengths[1]!) * engineKvBytesPerToken;
  const bytesRead = w.layers + w.head + kv;
  const bw = copyBandwidth(quick ? 128 : 512);
  const boundMs = (bytesRead / (bw.gbPerS * 1e9)) * 1000;
  const floors = await kernelFloors(ort, spec, (n) => weights.get(n), ENGINE.accuracyLevel, kvSlots, sessionOptions, measured);
  log(`  ORT's kernels alone: MatMulNBits ${floors.matMulNBits.msPerStep} ms (${floors.matMulNBits.gbPerS} GB/s), attention GEMMs ${floors.attentionGemms.msPerStep} ms (${floors.attentionGemms.gbPerS} GB/s)`);

  let torch: { msPerStep: number; version: string; threads: number } | 'unavailable' = 'unavailable';
  let torchNote = '';
  const probe = spawnSync(TORCH_PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status === 0) {
    const args = [join(ROOT, 'tools/bench/torch_decode_step.py'), '--context', String(context), '--steps', String(quick ? 5 : 10),
      '--layers', String(spec.numLayers), '--head-rows', String(spec.visualCount), '--threads', String(threads)];
    const r = spawnSync(TORCH_PYTHON, args, { encoding: 'utf8', timeout: 600_000 });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    try {
      const j = JSON.parse(line) as { ms_per_step: number; torch: string; threads: number };
      torch = { msPerStep: j.ms_per_step, version: j.torch, threads: j.threads };
    } catch {
      torchNote = `torch_decode_step.py failed: ${(r.stderr || line).trim().split('\n').at(-1)}`;
    }
  } else torchNote = `${TORCH_PYTHON} has no torch`;
  log(`  torch: ${torch === 'unavailable' ? `unavailable (${torchNote})` : `${torch.msPerStep} ms/step`}`);

  return {
    model: source,
    shapes: { hidden: spec.hiddenSize, layers: spec.numLayers, heads: `${spec.numHeads}/${spec.numKvHeads}`, intermediate: spec.intermediateSize, vocab: spec.vocabSize },
    weights: 'q4 (MatMulNBits, block 32); activations and KV cache per variant',
    context: { cond: lengths[0], uncond: lengths[1], promptTokens: prompt, generated },
    kvCache: {
      note: `as the CPU engine's at this context: ${ENGINE.kvCache}, ${ENGINE.activations}, grown in chunks of ${KV_CACHE_CHUNK} slots (LmRunner), at most ${capacity} (a ${MAX_PROMPT_TOKENS}-token prompt + ${MAX_LATENT_SIDE}² codes)`,
      slotsPerRow: kvSlots,
      growBy: KV_CACHE_CHUNK,
      maxSlotsPerRow: capacity,
      mode: ENGINE.kvCache,
      activations: ENGINE.activations,
      bytes: 2 * kvSlots * engineKvBytesPerToken,
      growthMs: growth,
      growthMsPerStep: round(growth / KV_CACHE_CHUNK, 3),
      staticMax: staticCache ?? null,
    },
    session: { intraOpThreads: threads, graphOptimizationLevel: 'all' },
    variants,
    best: { accuracyLevel: best.accuracyLevel, activations: best.activations, kvCache: best.kvCache, msPerStep: best.msPerStep },
    engine: { ...ENGINE, msPerStep: ours.msPerStep },
    bytesPerStep: { layers: w.layers, visualHeadAndNorm: w.head, kvCache: kv, total: bytesRead, f32ScalesExtra: w.scales },
    copyBandwidthGBps: bw.gbPerS,
    copyBandwidthNote: `best of 5 copies of ${bw.mib} MiB (TypedArray.set), GB/s of read+write traffic`,
    boundMsPerStep: round(boundMs),
    breakdown,
    modelRunOverBound: breakdown ? round(breakdown.modelRunMsPerStep / boundMs) : null,
    kernelFloors: {
      ...floors,
      note: 'the step\'s MatMulNBits (engine weights, with unit RMSNorms between) and the read-only attention\'s two cache GEMMs per layer, each chain alone in a session, unprofiled (bench-floors.ts)',
      overBound: round(floors.msPerStep / boundMs),
      restOfStepMs: round(ours.msPerStep - floors.msPerStep),
    },
    torch: torch === 'unavailable' ? { status: 'unavailable', note: torchNote } : torch,
    ratios: {
      oursOverBound: round(ours.msPerStep / boundMs),
      oursOverBoundWithF32Scales: round(ours.msPerStep / (boundMs * (1 + w.scales / bytesRead))),
      torchOverOurs: torch === 'unavailable' ? null : round(torch.msPerStep / ours.msPerStep),
    },
    targets: { oursOverBound: '<= 2', torchOverOurs: '>= 3' },
  };
}

// ── c. SJD on the CPU engine (tiny fixture) ─────────────────────────────────────────────────

/**
 * Speculative Jacobi decoding end to end on the tiny fixture (the engine the CLI uses): accepted
 * tokens per run and decode ms per token, against plain decoding with the same seed. The
 * fixture's weights are random, so its acceptance says nothing about a trained checkpoint; the
 * break-even acceptance of the 0.5B shapes is in section a.
 */
async function benchSjdTiny(quick: boolean) {
  const ort = await import('onnxruntime-node');
  const { createCpuEngine } = await import('../core/engine/create-cpu.ts');
  const { loadOriginalModel } = await import('../core/engine/load-original.ts');
  log('c. SJD on the CPU engine (tiny fixture)');
  const fixtures = join(ROOT, 'tests/fixtures');
  const model = await loadOriginalModel(openFolder(join(fixtures, 'tiny-simplear')), openFolder(join(fixtures, 'tiny-cosmos')), {
    weights: 'f32',
    decoderDtype: 'f32',
    name: 'tiny-simplear (random weights)',
  });
  const size = quick ? 64 : 128;
  const engine = await createCpuEngine(ort, model, { maxLatentSide: size / 16 });
  const rows: { mode: string; window: number | null; temperature: number; acceptedPerRun: number; runs: number; msPerToken: number }[] = [];
  try {
    for (const temperature of [1, 0]) {
      for (const window of [null, 4, 8]) {
        const r = await engine.generate({ prompt: SAMPLE_PROMPT, size, seed: 1, temperature, ...(window ? { sjd: { window } } : {}) });
        rows.push({
          mode: window ? 'sjd' : 'plain',
          window,
          temperature,
          acceptedPerRun: round(r.stats.acceptedPerRun),
          runs: r.stats.runs,
          msPerToken: round(r.timings.decodeMs / r.stats.steps),
        });
        log(`  T=${temperature} ${window ? `SJD window ${window}` : 'plain'}: ${round(r.stats.acceptedPerRun)} tokens/run, ${round(r.timings.decodeMs / r.stats.steps)} ms/token`);
      }
    }
  } finally {
    await engine.dispose();
  }
  return { model: 'tests/fixtures/tiny-simplear (random weights: acceptance is not indicative)', size, seed: 1, rows };
}

// ── b. Chromium WebGPU ─────────────────────────────────────────────────────────────────────

export interface BrowserBenchOptions {
  /** Original checkpoint folders (HF SimpleAR; Cosmos decoder.jit), served over HTTP. */
  model: string;
  vq: string;
  size: number;
  /** Real GPU flags (Vulkan) instead of SwiftShader. */
  gpu: boolean;
  weights: 'q4' | 'q8' | 'f16' | 'f32';
  decoderDtype: 'f16' | 'f32';
  chromium: string;
}

export async function benchBrowser(o: BrowserBenchOptions) {
  log(`b. Chromium WebGPU (${o.gpu ? 'GPU flags' : 'SwiftShader'}): ${o.model}, ${o.size}²`);
  const dist = join(ROOT, 'dist');
  if (!existsSync(join(dist, 'index.html'))) {
    log('  dist/ is missing: building (vite build)…');
    const r = spawnSync('npx', ['vite', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new Error('vite build failed');
  }
  if (!existsSync(o.chromium)) throw new Error(`no Chromium at ${o.chromium} (set CHROMIUM_PATH / CHROMIUM)`);
  const { chromium } = await import('playwright-core');
  const { startServer } = await import('../../tools/serve.ts');
  // The checkpoint files: the e2e tests' server (CORS on every answer, 404s included, ranges).
  const { startTestServer } = await import('../../tests/helpers/http-server.ts');
  const args = [
    '--no-sandbox', '--disable-gpu-sandbox', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic', '--enable-unsafe-webgpu',
    ...(o.gpu ? ['--enable-features=Vulkan,VulkanFromANGLE', '--use-angle=vulkan', '--use-vulkan=native', '--ignore-gpu-blocklist', '--disable-vulkan-surface', '--enable-gpu'] : []),
  ];
  const browser = await chromium.launch({ executablePath: o.chromium, headless: true, args });
  const app = await startServer({ root: dist, port: 0 });
  const modelServer = await startTestServer(o.model);
  const vqServer = o.vq === o.model ? modelServer : await startTestServer(o.vq);
  try {
    const page = await (await browser.newContext()).newPage();
    const consoleLines: string[] = [];
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    await page.goto(app.url);
    await page.locator('#status[data-tone]').waitFor({ timeout: 120_000 });
    const adapter = await page.evaluate(async () => {
      const a = await (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info?: Record<string, string> } | null> } }).gpu?.requestAdapter();
      return a?.info ? { vendor: a.info.vendor, architecture: a.info.architecture, device: a.info.device, description: a.info.description } : null;
    });
    log(`  adapter: ${JSON.stringify(adapter)}`);
    if (!adapter) throw new Error('no WebGPU adapter in this Chromium (check the GPU flags, drivers and chrome://gpu)');
    if (o.gpu && adapter.architecture === 'swiftshader') log('  WARNING: --gpu asked for, but the adapter is SwiftShader (CPU): no real GPU was picked up');
    const t0 = performance.now();
    type Client = { loadModel(...a: unknown[]): Promise<unknown>; generate(...a: unknown[]): Promise<{ timings: unknown; stats: unknown; width: number }> };
    const info = await page.evaluate(
      ([model, vq, opts]) => (globalThis as unknown as { simplear: { client: Client } }).simplear.client.loadModel({ kind: 'original', model, vq }, opts),
      [modelServer.url, vqServer.url, { weights: o.weights, decoderDtype: o.decoderDtype, backend: 'webgpu', maxLatentSide: o.size / 16 }] as const,
    );
    const loadMs = performance.now() - t0;
    log(`  loaded in ${(loadMs / 1000).toFixed(1)} s: ${JSON.stringify(info)}`);
    const run = () =>
      page.evaluate(
        (size) =>
          (globalThis as unknown as { simplear: { client: Client } }).simplear.client.generate({ prompt: 'a red fox in a snowy forest', size, seed: 1 }).then((r) => ({
            timings: r.timings,
            stats: r.stats,
            width: r.width,
          })),
        o.size,
      );
    const first = await run();
    const r = o.size <= 64 ? await run() : first; // tiny images: a second, warm run (the first compiles shaders)
    const t = r.timings as { prefillMs: number; decodeMs: number; vqMs: number; totalMs: number };
    const stats = r.stats as { runs: number; steps: number };
    return {
      chromium: o.chromium,
      mode: o.gpu ? 'gpu' : 'swiftshader',
      adapter,
      model: o.model,
      loaded: info,
      loadSeconds: round(loadMs / 1000),
      size: o.size,
      seconds: { prefill: round(t.prefillMs / 1000, 3), decode: round(t.decodeMs / 1000, 3), vqDecode: round(t.vqMs / 1000, 3), total: round(t.totalMs / 1000, 3) },
      msPerStep: round(t.decodeMs / Math.max(1, stats.runs)),
      stats: r.stats,
      ...(r !== first ? { firstRun: first.timings } : {}),
      consoleProblems: consoleLines.filter((l) => l.startsWith('[error]') || l.startsWith('[warning]')).slice(0, 20),
    };
  } finally {
    await browser.close();
    await Promise.all([app.close(), modelServer.close(), vqServer !== modelServer ? vqServer.close() : undefined]);
  }
}

// ── the command ────────────────────────────────────────────────────────────────────────────

function table(report: Record<string, unknown>): string {
  const lines: string[] = [];
  const cpu = report.cpu as Awaited<ReturnType<typeof benchCpu>> | { error: string } | undefined;
  if (cpu && 'error' in cpu) lines.push(`a. Node CPU: FAILED: ${cpu.error}`);
  else if (cpu) {
    const t = cpu.torch as { msPerStep?: number; status?: string };
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    const ours = cpu.variants.find((v) => v.engine)!;
    lines.push(
      `a. Node CPU decode step, batch 2 (CFG), ${cpu.model}`,
      `   context cond/uncond            ${cpu.context.cond}/${cpu.context.uncond} tokens; ${cpu.session.intraOpThreads} intra-op threads`,
      `   KV cache, as the engine's      ${cpu.kvCache.slotsPerRow} slots per row, ${cpu.kvCache.mode}, ${cpu.kvCache.activations} (${mb(cpu.kvCache.bytes)}): ` +
        `grown in chunks of ${cpu.kvCache.growBy}, at most ${cpu.kvCache.maxSlotsPerRow}`,
      ...cpu.variants.map(
        (v) =>
          `   ${`${v.kvCache} cache, level ${v.accuracyLevel}, ${v.activations}`.padEnd(31)}${v.msPerStep.toFixed(1)} ms/step   (${v.steps.join(', ')})` +
          `${v.vsLevel0 ? `   logits vs the first: max |Δ| ${v.vsLevel0.maxAbs}, argmax ${v.vsLevel0.argmaxAgree ? 'same' : 'DIFFERS'}` : ''}${v.engine ? '   ← the engine\'s' : ''}`,
      ),
      ...(cpu.kvCache.staticMax
        ? [
            `   ${`static ${cpu.kvCache.maxSlotsPerRow}-slot cache`.padEnd(31)}${cpu.kvCache.staticMax.msPerStep.toFixed(1)} ms/step vs ${cpu.kvCache.staticMax.grownMsPerStepAlongside.toFixed(1)} grown, alongside ` +
              `(the engine's configuration): ×${cpu.kvCache.staticMax.staticOverGrown} (median of pairs)`,
          ]
        : []),
      `   ${`one growth (+${cpu.kvCache.growBy} slots)`.padEnd(31)}${cpu.kvCache.growthMs.toFixed(1)} ms, once per ${cpu.kvCache.growBy} steps: ${cpu.kvCache.growthMsPerStep} ms/step`,
      ...ours.sjdWindows.map(
        (w) =>
          `   SJD window ${String(w.window).padEnd(2)} verification    ${w.msPerIteration.toFixed(1)} ms (${ours.kvCache === 'read-only' ? 'one batch-2 run' : 'two batch-1 runs'} of ${w.window + 1} tokens) vs ` +
          `${w.msPerStepAlongside.toFixed(1)} ms/step alongside: pays off above ${w.breakEvenTokensPerRun} accepted tokens per run`,
      ),
      `   bytes read per step            ${mb(cpu.bytesPerStep.total)} (layers ${mb(cpu.bytesPerStep.layers)}, head ${mb(cpu.bytesPerStep.visualHeadAndNorm)}, KV ${mb(cpu.bytesPerStep.kvCache)}); ` +
        `q4 scales counted as stored (f16): the f32 session holds them in f32, ${mb(cpu.bytesPerStep.f32ScalesExtra)} more`,
      `   copy bandwidth                 ${cpu.copyBandwidthGBps} GB/s`,
      `   bandwidth bound                ${cpu.boundMsPerStep.toFixed(1)} ms/step`,
      `   PyTorch f32 step               ${t.msPerStep !== undefined ? `${t.msPerStep.toFixed(1)} ms/step` : 'unavailable'}`,
      ...(cpu.breakdown
        ? [
            `   where the engine's step goes   ${cpu.breakdown.wallMsPerStep.toFixed(1)} ms wall (profiled) = ${cpu.breakdown.modelRunMsPerStep.toFixed(1)} ms ORT model_run ` +
              `+ ${cpu.breakdown.outsideOrtMsPerStep.toFixed(1)} ms outside ORT (the binding, the new entries' writes)`,
            `   kernels                        ${cpu.breakdown.kernelMsPerStep.toFixed(1)} ms: ${cpu.breakdown.byOp.map((o) => `${o.op} ${o.msPerStep} (${o.nodes})`).join(', ')}`,
            `   model_run / bound              ${cpu.modelRunOverBound}`,
          ]
        : []),
      `   ORT's kernels alone            MatMulNBits ×${cpu.kernelFloors.matMulNBits.nodes}: ${cpu.kernelFloors.matMulNBits.msPerStep.toFixed(1)} ms (${cpu.kernelFloors.matMulNBits.gbPerS} GB/s of ${mb(cpu.kernelFloors.matMulNBits.bytes)}); ` +
        `attention GEMMs ×${cpu.kernelFloors.attentionGemms.nodes}: ${cpu.kernelFloors.attentionGemms.msPerStep.toFixed(1)} ms (${cpu.kernelFloors.attentionGemms.gbPerS} GB/s of ${mb(cpu.kernelFloors.attentionGemms.bytes)})`,
      `   kernels alone / bound          ${cpu.kernelFloors.overBound}   (${cpu.kernelFloors.msPerStep.toFixed(1)} ms; the rest of the engine's step: ${cpu.kernelFloors.restOfStepMs.toFixed(1)} ms of softmax, masks, small ops, binding)`,
      `   ours (the engine's) / bound    ${cpu.ratios.oursOverBound}   (target ≤ 2; ${cpu.ratios.oursOverBoundWithF32Scales} with the f32 scales' bytes counted)`,
      `   torch / ours (the engine's)    ${cpu.ratios.torchOverOurs ?? 'n/a'}   (target ≥ 3)`,
    );
  }
  const sjd = report.sjd as Awaited<ReturnType<typeof benchSjdTiny>> | { error: string } | undefined;
  if (sjd && 'error' in sjd) lines.push(`c. SJD on the CPU engine: FAILED: ${sjd.error}`);
  else if (sjd) {
    lines.push(
      `c. SJD on the CPU engine, ${sjd.model}, ${sjd.size}², seed ${sjd.seed}`,
      ...sjd.rows.map(
        (r) =>
          `   T=${r.temperature} ${(r.window ? `SJD window ${r.window}` : 'plain').padEnd(27)}${r.acceptedPerRun.toFixed(2)} tokens/run, ` +
          `${r.runs} runs, ${r.msPerToken.toFixed(2)} ms/token`,
      ),
    );
  }
  const b = report.browser as Awaited<ReturnType<typeof benchBrowser>> | { error: string } | undefined;
  if (b && 'error' in b) lines.push(`b. Chromium WebGPU: FAILED: ${b.error}`);
  else if (b) {
    lines.push(
      `b. Chromium WebGPU (${b.mode}${b.adapter ? `, ${[b.adapter.vendor, b.adapter.architecture, b.adapter.description].filter(Boolean).join(' ')}` : ''}), ${b.size}², ${b.model}`,
      `   seconds                        prefill ${b.seconds.prefill}, decode ${b.seconds.decode}, VQ decode ${b.seconds.vqDecode}, total ${b.seconds.total}`,
      `   per step                       ${b.msPerStep} ms`,
      `   stats                          ${JSON.stringify(b.stats)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

const command: CommandModule = {
  usage: '[--quick] [--cpu-only | --browser-only] [--gpu] [--model <dir> --vq <dir>] [--size <px>] [--json <file>]',
  description: [
    'Measures a. the Node CPU decode step of SimpleAR-0.5B shapes (q4) against the memory-bandwidth',
    'bound and PyTorch, and b. generation in headless Chromium on WebGPU (SwiftShader unless --gpu).',
    'Prints a table, then the JSON report as the last line.',
  ].join('\n'),
  options: {
    quick: { type: 'boolean', description: 'CI-sized: 2 layers, context prompt+256, 64 px in the browser' },
    'cpu-only': { type: 'boolean', description: 'only section a' },
    'browser-only': { type: 'boolean', description: 'only section b' },
    gpu: { type: 'boolean', description: 'Chromium with real-GPU flags (Vulkan) instead of SwiftShader' },
    model: { type: 'string', arg: '<dir>', description: 'original SimpleAR checkpoint folder for b (default: the tiny fixture)' },
    vq: { type: 'string', arg: '<dir>', description: 'folder with the Cosmos decoder.jit for b (default: --model if it has one, else tiny-cosmos)' },
    size: { type: 'string', arg: '<px>', description: 'image size for b (default 128; 64 with --quick)' },
    weights: { type: 'string', arg: 'q4|q8|f16|f32', description: 'LM weights in b (default f32 for the tiny fixture, else q4)', choices: ['q4', 'q8', 'f16', 'f32'] },
    json: { type: 'string', arg: '<file>', description: 'also write the JSON report to a file' },
  },
  async run(values: OptionValues, io) {
    const quick = values.quick === true;
    const report: Record<string, unknown> = { date: new Date().toISOString(), node: process.version, cpus: availableParallelism(), quick };
    if (!values['browser-only']) {
      try {
        report.cpu = await benchCpu(quick);
      } catch (e) {
        report.cpu = { error: (e as Error).stack ?? String(e) };
      }
      try {
        report.sjd = await benchSjdTiny(quick);
      } catch (e) {
        report.sjd = { error: (e as Error).stack ?? String(e) };
      }
    }
    if (!values['cpu-only']) {
      const fixtures = join(ROOT, 'tests/fixtures');
      const model = resolve((values.model as string | undefined) ?? join(fixtures, 'tiny-simplear'));
      const vq = resolve((values.vq as string | undefined) ?? (existsSync(join(model, 'decoder.jit')) ? model : join(fixtures, 'tiny-cosmos')));
      const tiny = model.startsWith(fixtures);
      const size = Number(values.size ?? (quick ? 64 : 128));
      if (!Number.isInteger(size) || size % 16 !== 0 || size < 16 || size > 1024) throw new UsageError(`--size must be a multiple of 16 up to 1024, got ${values.size}`);
      try {
        report.browser = await benchBrowser({
          model,
          vq,
          size,
          gpu: values.gpu === true,
          weights: (values.weights as BrowserBenchOptions['weights'] | undefined) ?? (tiny ? 'f32' : 'q4'),
          decoderDtype: tiny ? 'f32' : 'f16',
          chromium: process.env.CHROMIUM_PATH ?? process.env.CHROMIUM ?? '/usr/bin/chromium',
        });
      } catch (e) {
        report.browser = { error: (e as Error).stack ?? String(e) };
      }
    }
    io.stdout.write(table(report));
    io.stdout.write(`${JSON.stringify(report)}\n`);
    if (values.json) await writeFile(values.json as string, `${JSON.stringify(report, null, 2)}\n`);
    if ((report.cpu as { error?: string } | undefined)?.error || (report.sjd as { error?: string } | undefined)?.error || (report.browser as { error?: string } | undefined)?.error) process.exitCode = 1;
  },
};

export default command;
