// a. Node CPU (onnxruntime-node): one batch-2 CFG decode step of SimpleAR-0.5B shapes (q4) at
// context ≈ prompt + 2048, against the memory-bandwidth bound measured in the same run
// (cpu-step/bound.ts) and against a plain PyTorch step (cpu-step/torch.ts). The KV cache is the
// CPU engine's: a runner growing in KV_CACHE_CHUNK slots up to the engine's 1024 px maximum, so
// it holds what the engine's would at this context (attention reads all of it); a static cache
// of that maximum is timed too (cpu-step/kv-cache.ts). Variants: the engine's configuration
// (create-cpu.ts: a read-only KV cache, f32 activations, MatMulNBits accuracy_level 4 for q4
// weights), which the ratios, the bound's KV bytes and the profile (cpu-step/profile.ts) are
// about; the same at level 0; and the engine before the read-only cache (GroupQueryAttention's
// in-place cache, which onnxruntime-node copies whole after every run; f16 to halve that copy).
// With the cost of one speculative Jacobi verification (cpu-step/sjd-windows.ts) at the same
// context, and ORT's big kernels alone (cpu-step/kernel-floors.ts: the step's MatMulNBits and
// cache GEMMs, unprofiled), so the ratio to the bound splits into theirs and the rest of the step's.
import { availableParallelism } from 'node:os';
import { buildLmGraph, type KvCacheMode } from '../../src/core/model/lm-graph.ts';
import { KV_CACHE_CHUNK, LmRunner } from '../../src/core/runtime/lm-runner.ts';
import { MAX_LATENT_SIDE, MAX_PROMPT_TOKENS } from '../../src/core/engine/engine.ts';
import { CPU_KV_CACHE, cpuAccuracyLevel } from '../../src/core/engine/create-cpu.ts';
import type { Activations } from '../../src/core/runtime/model.ts';
import { copyBandwidth, stepWeightBytes } from './cpu-step/bound.ts';
import { kernelFloors } from './cpu-step/kernel-floors.ts';
import { growthCost, staticCacheSteps, type StaticCacheTiming } from './cpu-step/kv-cache.ts';
import { loadLm } from './cpu-step/lm.ts';
import { profileStep, type StepBreakdown } from './cpu-step/profile.ts';
import { sjdWindowRuns, type SjdWindowTiming } from './cpu-step/sjd-windows.ts';
import type { StepBench } from './cpu-step/step-bench.ts';
import { torchStep } from './cpu-step/torch.ts';
import { log } from './log.ts';
import { median, round } from './stats.ts';

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

export async function benchCpu(quick: boolean) {
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
  let staticCache: StaticCacheTiming | undefined;
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

  const { torch, note: torchNote } = torchStep({ context, steps: quick ? 5 : 10, layers: spec.numLayers, headRows: spec.visualCount, threads });

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
      note: 'the step\'s MatMulNBits (engine weights, with unit RMSNorms between) and the read-only attention\'s two cache GEMMs per layer, each chain alone in a session, unprofiled (cpu-step/kernel-floors.ts)',
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
