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
// (a queue-done fence per run, no readback), which also tells it when each step finished.
// With graph capture (the session created with enableGraphCapture and a graph whose
// total_sequence_length is fixed), every run has the same shapes and buffers: the prompts are fed
// one token per row and run, like decode steps, and ORT replays the recorded dispatches.
// Speculative Jacobi decoding is a different loop (webgpu-sjd.ts), entered when the request asks.
import type { LmSpec } from '../base/model-spec.ts';
import { pastKey, pastValue, presentKey, presentValue } from '../model/lm-graph.ts';
import { prefillSchedule } from '../runtime/lm-runner.ts';
import { SAMPLER_WGSL, packSamplerParams, SAMPLER_PARAMS_BYTES } from '../sampling/sampler-wgsl.ts';
import type { InferenceSession, OrtModule, Tensor } from '../base/ort.ts';
import { throwIfAborted, type TokenLoop, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';
import type { AllocationCounter } from './webgpu-device.ts';
import { WebGpuSjd } from './webgpu-sjd.ts';
import { holdOrtBufferRegistrations } from './ort-capture-workaround.ts';
import { CpuSampler } from '../sampling/sampler.ts';

type GpuTensorFactory = OrtModule['Tensor'] & {
  fromGpuBuffer(buffer: GPUBuffer, options: { dataType: 'float32' | 'float16' | 'int32'; dims: readonly number[] }): Tensor;
};

// Read lazily: importing this module must not need WebGPU globals (Node CLI, tests).
const storageUsage = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * Longest prefill call. ORT Web's WebGPU attention gives wrong results for calls of 32 tokens
 * or more on adapters with narrow subgroups (SwiftShader's are 4 wide): longer prompts are fed in
 * chunks (see prefillSchedule), which costs a few extra runs once per image.
 */
export const WEBGPU_PREFILL_CHUNK = 31;

/**
 * How much GPU work the CPU may queue ahead: about this long (estimated from the runs seen to
 * finish so far), at least MIN_QUEUED_RUNS and at most MAX_QUEUED_RUNS runs. A fast GPU keeps a
 * deep queue (fence latency hidden); a slow one (SwiftShader: seconds per run) keeps two, so a
 * cancel or a page reload waits for at most about two runs of GPU time.
 */
export const QUEUED_GPU_MS = 500;
export const MIN_QUEUED_RUNS = 2;
export const MAX_QUEUED_RUNS = 16;

/** Fences on queued GPU work: waits while more is queued than QUEUED_GPU_MS of it. */
class QueueFences {
  private readonly pending: Promise<void>[] = [];
  private finished = 0;
  private lastFinish = performance.now();
  /** Smoothed ms between finished runs, once one has been seen. */
  private msPerRun: number | undefined;
  constructor(private readonly queue: GPUQueue) {}

  private get limit(): number {
    if (this.msPerRun === undefined) return MIN_QUEUED_RUNS;
    return Math.max(MIN_QUEUED_RUNS, Math.min(MAX_QUEUED_RUNS, Math.floor(QUEUED_GPU_MS / Math.max(this.msPerRun, 0.01))));
  }

  /**
   * Marks the work submitted so far; resolves, once no more than the limit is pending, with the
   * number of marks completed (the runs known to have finished on the GPU).
   */
  async mark(): Promise<number> {
    this.pending.push(this.queue.onSubmittedWorkDone());
    while (this.pending.length > this.limit) await this.retire();
    return this.finished;
  }

  private async retire(): Promise<void> {
    await this.pending.shift();
    this.finished++;
    const now = performance.now();
    const ms = now - this.lastFinish;
    this.lastFinish = now;
    this.msPerRun = this.msPerRun === undefined ? ms : 0.7 * this.msPerRun + 0.3 * ms;
  }

  async drain(): Promise<void> {
    while (this.pending.length) await this.retire();
  }
}

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
  readonly supportsSjd = true;
  private sjd: WebGpuSjd | undefined;
  private sjdSession: InferenceSession | undefined;
  private sjdSampler: CpuSampler | undefined;
  private readonly buffers: GPUBuffer[] = [];
  private readonly Tensor: GpuTensorFactory;
  private readonly cache: Record<string, Tensor> = {};
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
    this.Tensor = ort.Tensor as GpuTensorFactory;
    const STORAGE = storageUsage();
    const V = spec.visualCount;
    const dataType = options.activations === 'f16' ? 'float16' : 'float32';
    const cacheDims = [2, spec.numKvHeads, options.capacity, spec.headDim];
    const cacheBytes = cacheDims.reduce((a, b) => a * b, 1) * (dataType === 'float16' ? 2 : 4);
    for (let i = 0; i < spec.numLayers; i++) {
      for (const name of [pastKey(i), pastValue(i)]) {
        this.cache[name] = this.Tensor.fromGpuBuffer(this.buffer(cacheBytes, STORAGE, name), { dataType, dims: cacheDims });
      }
    }
    this.inputIds = this.buffer(8, STORAGE, 'input_ids');
    this.seqlens = this.buffer(8, STORAGE, 'seqlens_k');
    const logitsIndex = this.buffer(8, STORAGE, 'logits_index');
    device.queue.writeBuffer(logitsIndex, 0, Int32Array.of(0, 1));
    this.logits = this.buffer(2 * V * 4, STORAGE, 'logits');
    this.scratch = this.buffer(V * 4, STORAGE, 'sampler-scratch');
    const stateBytes = (1 + 2 * options.maxSteps) * 4;
    this.state = this.buffer(stateBytes, STORAGE, 'sampler-state');
    this.staging = this.buffer(stateBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'codes-readback');
    this.params = this.buffer(SAMPLER_PARAMS_BYTES, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'sampler-params');

    this.decodeFeeds = {
      input_ids: this.Tensor.fromGpuBuffer(this.inputIds, { dataType: 'int32', dims: [2, 1] }),
      seqlens_k: this.Tensor.fromGpuBuffer(this.seqlens, { dataType: 'int32', dims: [2] }),
      logits_index: this.Tensor.fromGpuBuffer(logitsIndex, { dataType: 'int32', dims: [2, 1] }),
      ...this.cache,
    };
    this.fetches = { logits: this.Tensor.fromGpuBuffer(this.logits, { dataType: 'float32', dims: [2, 1, V] }) };
    for (let i = 0; i < spec.numLayers; i++) {
      this.fetches[presentKey(i)] = this.cache[pastKey(i)]!;
      this.fetches[presentValue(i)] = this.cache[pastValue(i)]!;
    }
  }

  private buffer(size: number, usage: number, label: string): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.ceil(size / 16) * 16, usage, label });
    this.buffers.push(b);
    return b;
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

  async run(req: TokenLoopRequest): Promise<TokenLoopResult> {
    if (req.sjd) {
      const { capacity, activations } = this.options;
      if (!this.sjd) {
        if (this.options.graphCapture) {
          if (!this.options.openSjdSession) throw new Error('a captured session needs openSjdSession for SJD');
          this.sjdSession = await this.options.openSjdSession();
        }
        const session = this.sjdSession ?? this.session;
        this.sjd = new WebGpuSjd(this.ort, this.device, session, this.spec, this.allocations, { capacity, activations, maxCall: WEBGPU_PREFILL_CHUNK });
      }
      this.sjdSampler ??= new CpuSampler(this.spec.visualCount);
      return this.sjd.run(this.sjdSampler, req, req.sjd);
    }
    const { device, spec, options } = this;
    if (req.steps > options.maxSteps) throw new Error(`${req.steps} steps > ${options.maxSteps}`);
    const P = req.cond.length;
    const N = req.uncond.length;
    if (Math.max(P, N) + req.steps > options.capacity) throw new Error('KV cache too small for this request');

    // Per generation: the sampler's settings, the step counter and draws, the streams' lengths.
    const drawsOffset = 1 + options.maxSteps;
    device.queue.writeBuffer(
      this.params,
      0,
      packSamplerParams({ ...req.sampling, vocab: spec.visualCount, visualOffset: spec.visualOffset, drawsOffset, uncondOffset: spec.visualCount, rows: 2 }),
    );
    device.queue.writeBuffer(this.state, 0, Uint32Array.of(0));
    device.queue.writeBuffer(this.state, drawsOffset * 4, Float32Array.from(req.uniforms.subarray(0, req.steps)));

    const t0 = performance.now();
    throwIfAborted(req.signal);
    const prefillRuns = await this.prefill(req.cond, req.uncond, req);
    // prefill() returns once its runs are done on the GPU (its fences drain), so prefillMs is the
    // prefill's own time rather than being counted in the first row's.
    // The sampler bumps each stream's length as it feeds a token: start one below the prompt length.
    device.queue.writeBuffer(this.seqlens, 0, Int32Array.of(P - 1, N - 1));
    let runs = 0;
    this.sample();
    req.onPrefilled?.();
    const t1 = performance.now();

    let readbacks = 0;
    let allocationsAtWarmup = -1;
    const codes = new Int32Array(req.steps);
    const longest = Math.max(P, N);
    const { Tensor } = this;
    // Fence i marks the sampling of code i + 2 (code 1 was sampled after the prefill). A row's
    // readback waits for all queued work, so fences retired after it may count fewer codes than
    // the row reported: progress only moves forward (`shown`).
    const fences = new QueueFences(device.queue);
    let shown = 0;
    const dispatchesBefore = this.allocations.dispatches;
    for (let step = 1; step <= req.steps; step++) {
      if (step % req.rowLength === 0 || step === req.steps) {
        readbacks++;
        await this.readCodes(codes, step);
        if (allocationsAtWarmup < 0) allocationsAtWarmup = this.allocations.count;
        req.onRow?.(codes, step);
        shown = step;
      }
      if (step === req.steps) break;
      throwIfAborted(req.signal);
      // Step `step` feeds code step−1 (already in input_ids); the rows then hold len + step tokens.
      const feeds = this.options.graphCapture
        ? this.decodeFeeds
        : { ...this.decodeFeeds, total_sequence_length: new Tensor('int32', Int32Array.of(longest + step), []) };
      await this.session.run(feeds, this.fetches);
      runs++;
      this.sample();
      const sampled = (await fences.mark()) + 1;
      if (sampled > shown) {
        shown = sampled;
        req.onStep?.(sampled);
      }
    }
    await fences.drain();
    const dispatches = this.allocations.dispatches - dispatchesBefore;
    const t2 = performance.now();
    return {
      codes,
      prefillMs: t1 - t0,
      decodeMs: t2 - t1,
      runs,
      prefillRuns,
      readbacks,
      steadyStateAllocations: this.allocations.count - allocationsAtWarmup,
      graphCapture: this.options.graphCapture ?? false,
      acceptedPerRun: 1,
      ...(runs > 0 ? { dispatchesPerStep: dispatches / runs } : {}),
    };
  }

  /**
   * Both prompts into the cache (in chunks, see WEBGPU_PREFILL_CHUNK); each row's last-token
   * logits end up in the logits buffer, on the GPU. Returns the number of LM runs.
   */
  private async prefill(cond: readonly number[], uncond: readonly number[], req: Pick<TokenLoopRequest, 'signal' | 'onPrefillRun'>): Promise<number> {
    const { Tensor } = this;
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
            input_ids: new Tensor('int32', f.input_ids, [2, f.seq]),
            seqlens_k: new Tensor('int32', f.seqlens_k, [2]),
            total_sequence_length: new Tensor('int32', Int32Array.of(f.total_sequence_length), []),
            logits_index: new Tensor('int32', f.logits_index, [2, f.rows]),
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
          this.copy(this.logits, row * rowBytes, this.scratch, 0, rowBytes);
        }
      });
      const finished = await fences.mark();
      if (finished > shown) {
        shown = finished;
        req.onPrefillRun?.(finished, calls.length);
      }
    }
    if (parked >= 0) this.copy(this.scratch, 0, this.logits, parked * rowBytes, rowBytes);
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

  private copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    const encoder = this.device.createCommandEncoder({ label: 'copy' });
    encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.device.queue.submit([encoder.finish()]);
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
    const bytes = (1 + count) * 4;
    const encoder = this.device.createCommandEncoder({ label: 'read-codes' });
    encoder.copyBufferToBuffer(this.state, 0, this.staging, 0, bytes);
    this.device.queue.submit([encoder.finish()]);
    await this.staging.mapAsync(GPUMapMode.READ, 0, bytes);
    const view = new Uint32Array(this.staging.getMappedRange(0, bytes));
    const sampled = view[0]!;
    into.set(view.subarray(1, 1 + count));
    this.staging.unmap();
    if (sampled !== count) throw new Error(`sampler out of step: ${sampled} codes on the GPU, expected ${count}`);
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await this.sjdSession?.release();
    for (const b of this.buffers) b.destroy();
    this.sjd?.destroy();
  }
}
