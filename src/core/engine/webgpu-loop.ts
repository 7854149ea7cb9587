// The GPU-resident decode loop (docs/architecture.md#gpu-resident-decode-loop). Allocated once per engine:
//  - the static KV cache: one GPU buffer per layer and K/V, rows = the two CFG streams
//    (conditional, negative), bound as both past_* and present_*;
//  - the step inputs input_ids / seqlens_k / logits_index and the logits output, as GPU tensors;
//  - the sampler (sampler-wgsl.ts) on ORT's own GPUDevice: it reads both streams' logits where
//    the LM left them, draws with the step's uniform, writes the next input_ids and bumps the
//    streams' lengths.
// Per step: one session.run and one sampler dispatch; nothing is read back and nothing allocated.
// The CPU reads the codes once per latent row (progress, preview) and at the end.
// Runs return once their work is queued, so the CPU could queue a whole row of steps ahead of the
// GPU: on a slow adapter (SwiftShader at full size: seconds per step) that made a cancel, or a
// page reload, wait minutes for queued work. The loop keeps about QUEUED_GPU_MS of runs queued
// (webgpu-queue-fences.ts: a queue-done fence per run, no readback), which also tells it when
// each step finished.
// With graph capture (the session created with enableGraphCapture and a graph whose
// total_sequence_length is fixed), every run has the same shapes and buffers: the prompts are fed
// one token per row and run, like decode steps, and ORT replays the recorded dispatches.
// Speculative Jacobi decoding is a different loop (webgpu-sjd.ts, runSjd), on buffers of its own.
import type { LmSpec } from '../base/model-spec.ts';
import { prefillSchedule } from '../runtime/lm-runner.ts';
import { SAMPLER_WGSL, packSamplerParams, SAMPLER_PARAMS_BYTES } from '../sampling/sampler-wgsl.ts';
import type { InferenceSession, OrtModule, Tensor } from '../base/ort.ts';
import { LoopProgress } from './loop-progress.ts';
import { codesWithKept, firstSampledStep, throwIfAborted, type SjdLoopOptions, type TokenLoop, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';
import type { AllocationCounter } from './webgpu-device.ts';
import { QueueFences } from './webgpu-queue-fences.ts';
import { GpuResources, inPlaceFetches, storageUsage } from './webgpu-resources.ts';
import { WebGpuSjd } from './webgpu-sjd.ts';
import { holdOrtBufferRegistrations } from './ort-capture-workaround.ts';
import { CpuSampler } from '../sampling/sampler.ts';
import { SeenCodes, seenWords } from '../sampling/repetition.ts';

/**
 * Longest prefill call. ORT Web's WebGPU attention gives wrong results for calls of 32 tokens
 * or more on adapters with narrow subgroups (SwiftShader's are 4 wide): longer prompts are fed in
 * chunks (see prefillSchedule), which costs a few extra runs once per image.
 */
export const WEBGPU_PREFILL_CHUNK = 31;

export interface WebGpuLoopOptions {
  /** KV cache slots per stream: the longest prompt + the most steps. */
  capacity: number;
  /** Activation / KV cache dtype of the LM graph. */
  activations: 'f32' | 'f16';
  /** Largest number of codes one generation samples. */
  maxSteps: number;
  /**
   * The session captures its graph (see the header): the loop runs only decode-shaped calls on it,
   * and speculative decoding, whose window runs have other shapes, uses `openSjdSession()`.
   */
  graphCapture?: boolean;
  /** A session without capture for SJD windows (created on the first SJD request). */
  openSjdSession?: () => Promise<InferenceSession>;
}

export class WebGpuTokenLoop implements TokenLoop {
  /** SJD runs in webgpu-sjd.ts (window runs, logits read back, verified in JS). */
  private sjd: WebGpuSjd | undefined;
  private sjdSession: InferenceSession | undefined;
  private sjdSampler: CpuSampler | undefined;
  private readonly gpu: GpuResources;
  private readonly cache: Record<string, Tensor>;
  private readonly inputIds: GPUBuffer;
  private readonly seqlens: GPUBuffer;
  private readonly logits: GPUBuffer;
  private readonly scratch: GPUBuffer;
  private readonly state: GPUBuffer;
  private readonly staging: GPUBuffer;
  private readonly params: GPUBuffer;
  private readonly decodeFeeds: Record<string, Tensor>;
  private readonly fetches: Record<string, Tensor>;
  private pipeline!: GPUComputePipeline;
  private bindGroup!: GPUBindGroup;

  constructor(
    private readonly ort: OrtModule,
    private readonly device: GPUDevice,
    private readonly session: InferenceSession,
    private readonly spec: LmSpec,
    private readonly allocations: AllocationCounter,
    private readonly options: WebGpuLoopOptions,
  ) {
    const gpu = (this.gpu = new GpuResources(ort, device));
    const STORAGE = storageUsage();
    const V = spec.visualCount;
    this.cache = gpu.kvCache(spec, 2, options.capacity, options.activations, '');
    this.inputIds = gpu.buffer(8, STORAGE, 'input_ids');
    this.seqlens = gpu.buffer(8, STORAGE, 'seqlens_k');
    const logitsIndex = gpu.buffer(8, STORAGE, 'logits_index');
    device.queue.writeBuffer(logitsIndex, 0, Int32Array.of(0, 1));
    this.logits = gpu.buffer(2 * V * 4, STORAGE, 'logits');
    this.scratch = gpu.buffer(V * 4, STORAGE, 'sampler-scratch');
    // Step counter, codes, uniforms (sampler-wgsl.ts), then the repetition penalty's seen codes.
    const stateBytes = (1 + 2 * options.maxSteps) * 4;
    this.state = gpu.buffer(stateBytes + seenWords(V) * 4, STORAGE, 'sampler-state');
    this.staging = gpu.buffer(stateBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'codes-readback');
    this.params = gpu.buffer(SAMPLER_PARAMS_BYTES, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'sampler-params');

    this.decodeFeeds = {
      input_ids: gpu.tensor(this.inputIds, 'int32', [2, 1]),
      seqlens_k: gpu.tensor(this.seqlens, 'int32', [2]),
      logits_index: gpu.tensor(logitsIndex, 'int32', [2, 1]),
      ...this.cache,
    };
    this.fetches = inPlaceFetches(spec, this.cache, gpu.tensor(this.logits, 'float32', [2, 1, V]));
  }

  /** Compiles the sampler; shader errors reject here rather than surfacing as silent no-ops. */
  async init(): Promise<this> {
    const module = this.device.createShaderModule({ label: 'sampler', code: SAMPLER_WGSL });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length) throw new Error(`sampler shader: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`);
    this.pipeline = await this.device.createComputePipelineAsync({ label: 'sampler', layout: 'auto', compute: { module, entryPoint: 'main' } });
    const bindings = [this.params, this.logits, this.scratch, this.state, this.inputIds, this.seqlens];
    const entries: GPUBindGroupEntry[] = bindings.map((buffer, binding) => ({ binding, resource: { buffer } }));
    this.bindGroup = this.device.createBindGroup({ layout: this.pipeline.getBindGroupLayout(0), entries });
    return this;
  }

  /** SJD's buffers are allocated on its first request and kept (on a session without capture). */
  async runSjd(req: TokenLoopRequest, sjd: SjdLoopOptions): Promise<TokenLoopResult> {
    if (!this.sjd) {
      const { capacity, activations } = this.options;
      if (this.options.graphCapture) {
        if (!this.options.openSjdSession) throw new Error('a captured session needs openSjdSession for SJD');
        this.sjdSession = await this.options.openSjdSession();
      }
      const session = this.sjdSession ?? this.session;
      this.sjd = new WebGpuSjd(this.ort, this.device, session, this.spec, this.allocations, { capacity, activations, maxCall: WEBGPU_PREFILL_CHUNK });
    }
    this.sjdSampler ??= new CpuSampler(this.spec.visualCount);
    return this.sjd.run(this.sjdSampler, req, sjd);
  }

  async runPlain(req: TokenLoopRequest): Promise<TokenLoopResult> {
    const { device, spec, options } = this;
    if (req.steps > options.maxSteps) throw new Error(`${req.steps} steps > ${options.maxSteps}`);
    const P = req.cond.length;
    const N = req.uncond.length;
    // Kept codes are in the prompts (P, N count them) and are not sampled.
    const start = firstSampledStep(req);
    if (Math.max(P, N) + req.steps - start > options.capacity) throw new Error('KV cache too small for this request');

    // Per generation: the sampler's settings, the step counter and draws, the streams' lengths,
    // and the conditional prompt's seen codes (the shader adds each code it draws).
    const drawsOffset = 1 + options.maxSteps;
    const seenOffset = 1 + 2 * options.maxSteps;
    device.queue.writeBuffer(
      this.params,
      0,
      packSamplerParams({ ...req.sampling, vocab: spec.visualCount, visualOffset: spec.visualOffset, drawsOffset, uncondOffset: spec.visualCount, rows: 2, seenOffset }),
    );
    // The step counter starts at the first code to sample, after the kept ones (which the
    // row reads copy back with the rest); the draws stay keyed on the absolute step.
    device.queue.writeBuffer(this.state, 0, Uint32Array.of(start));
    if (start > 0) device.queue.writeBuffer(this.state, 4, Int32Array.from(req.kept!));
    device.queue.writeBuffer(this.state, drawsOffset * 4, Float32Array.from(req.uniforms.subarray(0, req.steps)));
    if ((req.sampling.repetitionPenalty ?? 1) !== 1) {
      device.queue.writeBuffer(this.state, seenOffset * 4, SeenCodes.ofTokens(req.cond, spec.visualOffset, spec.visualCount).words);
    }

    const progress = new LoopProgress(req);
    throwIfAborted(req.signal);
    const prefillRuns = await this.prefill(req.cond, req.uncond, req);
    // prefill() returns once its runs are done on the GPU (its fences drain), so prefillMs is the
    // prefill's own time rather than being counted in the first row's.
    // The sampler bumps each stream's length as it feeds a token: start one below the prompt length.
    device.queue.writeBuffer(this.seqlens, 0, Int32Array.of(P - 1, N - 1));
    let runs = 0;
    this.sample();
    progress.prefilled();

    let readbacks = 0;
    let allocationsAtWarmup = -1;
    const codes = codesWithKept(req);
    const longest = Math.max(P, N);
    // Fence i marks the sampling of code start + i + 2 (code start + 1 was sampled after the prefill). A row's
    // readback waits for all queued work, so fences retired after it may count fewer codes than
    // the row reported (progress.step ignores those).
    const fences = new QueueFences(device.queue);
    const dispatchesBefore = this.allocations.dispatches;
    for (let step = start + 1; step <= req.steps; step++) {
      if (progress.completesRow(step)) {
        readbacks++;
        await this.readCodes(codes, step);
        if (allocationsAtWarmup < 0) allocationsAtWarmup = this.allocations.count;
        progress.row(codes, step);
      }
      if (step === req.steps) break;
      throwIfAborted(req.signal);
      // Step `step` feeds code step−1 (already in input_ids); the rows then hold len + step − start tokens.
      const feeds = this.options.graphCapture
        ? this.decodeFeeds
        : { ...this.decodeFeeds, total_sequence_length: this.gpu.cpuTensor(Int32Array.of(longest + step - start), []) };
      await this.session.run(feeds, this.fetches);
      runs++;
      this.sample();
      progress.step(start + (await fences.mark()) + 1);
    }
    await fences.drain();
    const dispatches = this.allocations.dispatches - dispatchesBefore;
    return progress.result(codes, {
      runs,
      prefillRuns,
      readbacks,
      steadyStateAllocations: this.allocations.count - allocationsAtWarmup,
      graphCapture: this.options.graphCapture ?? false,
      ...(runs > 0 ? { dispatchesPerStep: dispatches / runs } : {}),
    });
  }

  /**
   * Both prompts into the cache (in chunks, see WEBGPU_PREFILL_CHUNK); each row's last-token
   * logits end up in the logits buffer, on the GPU. Returns the number of LM runs.
   */
  private async prefill(cond: readonly number[], uncond: readonly number[], req: Pick<TokenLoopRequest, 'signal' | 'onPrefillRun'>): Promise<number> {
    const { gpu } = this;
    const fences = new QueueFences(this.device.queue);
    let shown = 0;
    const rowBytes = this.spec.visualCount * 4;
    // A captured session only takes decode-shaped calls: one token per row and call.
    const captured = this.options.graphCapture ?? false;
    const calls = prefillSchedule([cond, uncond], captured ? 1 : WEBGPU_PREFILL_CHUNK);
    let parked = -1;
    for (const [i, { feeds: f, final }] of calls.entries()) {
      throwIfAborted(req.signal);
      if (captured) {
        this.device.queue.writeBuffer(this.inputIds, 0, Int32Array.from(f.input_ids));
        this.device.queue.writeBuffer(this.seqlens, 0, Int32Array.from(f.seqlens_k));
        await this.session.run(this.decodeFeeds, this.fetches);
      } else {
        await this.session.run(
          {
            input_ids: gpu.cpuTensor(f.input_ids, [2, f.seq]),
            seqlens_k: gpu.cpuTensor(f.seqlens_k, [2]),
            total_sequence_length: gpu.cpuTensor(Int32Array.of(f.total_sequence_length), []),
            logits_index: gpu.cpuTensor(f.logits_index, [2, f.rows]),
            ...this.cache,
          },
          this.fetches,
        );
      }
      // The shorter prompt ends before the last call, whose run overwrites its logits row: park
      // that row in the sampler's scratch (free until sampling) and put it back at the end.
      const last = i === calls.length - 1;
      final.forEach((isFinal, row) => {
        if (isFinal && !last) {
          parked = row;
          gpu.copy(this.logits, row * rowBytes, this.scratch, 0, rowBytes);
        }
      });
      const finished = await fences.mark();
      if (finished > shown) {
        shown = finished;
        req.onPrefillRun?.(finished, calls.length);
      }
    }
    if (parked >= 0) gpu.copy(this.scratch, 0, this.logits, parked * rowBytes, rowBytes);
    await fences.drain();
    req.onPrefillRun?.(calls.length, calls.length);
    return calls.length;
  }

  /**
   * The capturing run and one replay, on pad tokens at slot 0 (every prefill overwrites it), with
   * ORT's buffer registrations held (ort-capture-workaround.ts). false: capture does not work
   * here, and the caller should use a session without it.
   */
  async warmUpCapture(): Promise<boolean> {
    if (!this.options.graphCapture) return false;
    const tensors = [...Object.values(this.decodeFeeds), ...Object.values(this.fetches)];
    const buffers = tensors.map((t) => (t as Tensor & { gpuBuffer: GPUBuffer }).gpuBuffer);
    try {
      this.device.queue.writeBuffer(this.inputIds, 0, Int32Array.of(0, 0));
      this.device.queue.writeBuffer(this.seqlens, 0, Int32Array.of(0, 0));
      const release = holdOrtBufferRegistrations(buffers);
      await this.session.run(this.decodeFeeds, this.fetches);
      if (!release()) return false;
      await this.session.run(this.decodeFeeds, this.fetches);
      // Runs return once queued: the engine is not ready until this work is done (a page that
      // says "Ready" over minutes of queued warm-up runs on a slow adapter is not).
      await this.device.queue.onSubmittedWorkDone();
      return true;
    } catch {
      return false;
    }
  }

  private sample(): void {
    const encoder = this.device.createCommandEncoder({ label: 'sample' });
    const pass = encoder.beginComputePass({ label: 'sample' });
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, this.bindGroup);
    pass.dispatchWorkgroups(1);
    pass.end();
    this.device.queue.submit([encoder.finish()]);
  }

  /** Copies the step counter and the first `count` codes back; checks the GPU is where we think. */
  private async readCodes(into: Int32Array, count: number): Promise<void> {
    const sampled = await this.gpu.readBack(this.state, this.staging, (1 + count) * 4, 'read-codes', (mapped) => {
      const view = new Uint32Array(mapped);
      into.set(view.subarray(1, 1 + count));
      return view[0]!;
    });
    if (sampled !== count) throw new Error(`sampler out of step: ${sampled} codes on the GPU, expected ${count}`);
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await this.sjdSession?.release();
    this.gpu.destroy();
    this.sjd?.destroy();
  }
}
