// The GPU-resident decode loop (docs/architecture.md#gpu-resident-decode-loop). Allocated once per
// engine (webgpu-step-buffers.ts):
//  - the static KV cache: one GPU buffer per layer and K/V, rows = the two CFG streams
//    (conditional, negative), bound as both past_* and present_*;
//  - the step inputs input_ids / seqlens_k / logits_index and the logits output, as GPU tensors;
//  - the sampler (sampler-wgsl.ts) on ORT's own GPUDevice: it reads both streams' logits where
//    the LM left them, draws with the step's uniform, writes the next input_ids and bumps the
//    streams' lengths.
// Per step: one session.run and one sampler dispatch; nothing is read back and nothing allocated.
// The CPU reads the codes once per latent row (progress, preview) and at the end.
// N images of one request (runPlain) step as 2N rows, image i's pair at rows 2i, 2i + 1: the
// prompts are prefilled once into the static pair, whose cache rows and logits are then copied
// into every pair of a set of buffers allocated for that pass (sized for its request, released
// after it); each step is one run of 2N rows (the weights read once for all images) and one
// sampler dispatch of N work-groups, each image with its own uniforms and seen codes. A captured
// session has one shape, the pair's: batches step on the session without capture.
// A single image is the same pass with N = 1 on the static buffers.
// Runs return once their work is queued, so the CPU could queue a whole row of steps ahead of the
// GPU: on a slow adapter (SwiftShader at full size: seconds per step) that made a cancel, or a
// page reload, wait minutes for queued work. The loop keeps about QUEUED_GPU_MS of runs queued
// (webgpu-queue-fences.ts: a queue-done fence per run, no readback), which also tells it when
// each step finished.
// Prompts longer than one prefill chunk are prefilled stream by stream when that takes fewer runs
// (prefillApart): each on a batch-1 cache of its own length, in chunks, then copied into its row
// of the pair, since a batch of 2 can only take one token per run after its first chunk.
// With graph capture (the session created with enableGraphCapture and a graph whose
// total_sequence_length is fixed), every run has the same shapes and buffers: the prompts are fed
// one token per row and run, like decode steps, and ORT replays the recorded dispatches; once SJD
// or a batch has opened the session without capture, prefills run on it in chunks.
// Speculative Jacobi decoding is a different loop (webgpu-sjd.ts, runSjd), on buffers of its own.
import type { LmSpec } from '../base/model-spec.ts';
import { prefillApart, prefillSchedule, type StepFeeds } from '../runtime/lm-runner.ts';
import { SAMPLER_WGSL, packSamplerParams, SAMPLER_PARAMS_BYTES } from '../sampling/sampler-wgsl.ts';
import type { InferenceSession, OrtModule, Tensor } from '../base/ort.ts';
import { LoopProgress } from './loop-progress.ts';
import {
  firstSampledStep,
  throwIfAborted,
  type BatchLoopRequest,
  type BatchLoopResult,
  type SjdLoopOptions,
  type TokenLoop,
  type TokenLoopRequest,
  type TokenLoopResult,
} from './token-loop.ts';
import type { AllocationCounter } from './webgpu-device.ts';
import { QueueFences } from './webgpu-queue-fences.ts';
import { GpuResources, gpuBufferOf, inPlaceFetches, storageUsage } from './webgpu-resources.ts';
import { StepBuffers, copyCacheRow, samplerStateLayout } from './webgpu-step-buffers.ts';
import { WebGpuSjd } from './webgpu-sjd.ts';
import { holdOrtBufferRegistrations } from './ort-capture-workaround.ts';
import { CpuSampler } from '../sampling/sampler.ts';
import { SeenCodes } from '../sampling/repetition.ts';

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
   * The session captures its graph (see the header): the loop runs only the pair's decode-shaped
   * calls on it; speculative decoding, whose window runs have other shapes, and batches of 2N rows
   * use `openUncapturedSession()`.
   */
  graphCapture?: boolean;
  /** A session without capture for SJD windows and batches (created on the first such request, then kept). */
  openUncapturedSession?: () => Promise<InferenceSession>;
}

/** Where one decode pass steps: the buffers, the session, and whether that session replays a captured graph. */
interface DecodePass {
  buffers: StepBuffers;
  session: InferenceSession;
  graphCapture: boolean;
}

export class WebGpuTokenLoop implements TokenLoop {
  /** SJD runs in webgpu-sjd.ts (window runs, logits read back, verified in JS). */
  private sjd: WebGpuSjd | undefined;
  /** The session without capture of a capturing loop (SJD windows, batches). */
  private uncaptured: InferenceSession | undefined;
  private sjdSampler: CpuSampler | undefined;
  private readonly gpu: GpuResources;
  /** The CFG pair's buffers: every prefill, and every single image's decode. */
  private readonly pair: StepBuffers;
  private readonly params: GPUBuffer;
  private pipeline!: GPUComputePipeline;

  constructor(
    private readonly ort: OrtModule,
    private readonly device: GPUDevice,
    private readonly session: InferenceSession,
    private readonly spec: LmSpec,
    private readonly allocations: AllocationCounter,
    private readonly options: WebGpuLoopOptions,
  ) {
    const gpu = (this.gpu = new GpuResources(ort, device));
    this.pair = new StepBuffers(gpu, spec, 1, options.capacity, options.maxSteps, options.activations, '');
    this.params = gpu.buffer(SAMPLER_PARAMS_BYTES, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'sampler-params');
  }

  /** Compiles the sampler; shader errors reject here rather than surfacing as silent no-ops. */
  async init(): Promise<this> {
    const module = this.device.createShaderModule({ label: 'sampler', code: SAMPLER_WGSL });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length) throw new Error(`sampler shader: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`);
    this.pipeline = await this.device.createComputePipelineAsync({ label: 'sampler', layout: 'auto', compute: { module, entryPoint: 'main' } });
    this.pair.samplerBindGroup(this.device, this.pipeline, this.params);
    return this;
  }

  /** Whether its session replays a captured graph (and so opens a second one for SJD and batches). */
  get captured(): boolean {
    return this.options.graphCapture === true;
  }

  /** A session the loop may run any shape on: its own, or (capturing) the one without capture, opened once. */
  private async anyShapeSession(): Promise<InferenceSession> {
    if (!this.options.graphCapture) return this.session;
    if (!this.options.openUncapturedSession) throw new Error('a captured session needs openUncapturedSession for SJD and batches');
    this.uncaptured ??= await this.options.openUncapturedSession();
    return this.uncaptured;
  }

  /** SJD's buffers are allocated on its first request and kept (on a session without capture). */
  async runSjd(req: TokenLoopRequest, sjd: SjdLoopOptions): Promise<TokenLoopResult> {
    if (!this.sjd) {
      const { capacity, activations } = this.options;
      const session = await this.anyShapeSession();
      this.sjd = new WebGpuSjd(this.ort, this.device, session, this.spec, this.allocations, { capacity, activations, maxCall: WEBGPU_PREFILL_CHUNK });
    }
    this.sjdSampler ??= new CpuSampler(this.spec.visualCount);
    return this.sjd.run(this.sjdSampler, req, sjd);
  }

  /**
   * N images in one pass of 2N rows (see the header). One image steps on the pair's buffers (and
   * a captured graph where there is one); N > 1 allocates the pass's buffers (KV cache of 2N rows
   * × the request's slots) and releases them when the pass ends, however it ends.
   */
  async runPlain(req: BatchLoopRequest): Promise<BatchLoopResult> {
    const { options } = this;
    const n = req.uniforms.length;
    if (req.steps > options.maxSteps) throw new Error(`${req.steps} steps > ${options.maxSteps}`);
    // Kept codes are in the prompts and are not sampled: the cache holds the longer prompt and
    // one slot per sampled code.
    const slots = Math.max(req.cond.length, req.uncond.length) + req.steps - firstSampledStep(req);
    if (slots > options.capacity) throw new Error('KV cache too small for this request');
    if (n === 1) return this.decode(req, { buffers: this.pair, session: this.session, graphCapture: options.graphCapture ?? false });
    const session = await this.anyShapeSession();
    const gpu = new GpuResources(this.ort, this.device);
    try {
      const buffers = new StepBuffers(gpu, this.spec, n, slots, req.steps, options.activations, 'batch-');
      buffers.samplerBindGroup(this.device, this.pipeline, this.params);
      return await this.decode(req, { buffers, session, graphCapture: false });
    } finally {
      // Runs return once queued: the pass's buffers go once the GPU is done with them.
      await this.device.queue.onSubmittedWorkDone();
      gpu.destroy();
    }
  }

  private async decode(req: BatchLoopRequest, pass: DecodePass): Promise<BatchLoopResult> {
    const { device, spec } = this;
    const { buffers } = pass;
    const n = buffers.images;
    const P = req.cond.length;
    const N = req.uncond.length;
    const start = firstSampledStep(req);

    // Per generation: the sampler's settings, each image's step counter (starting after the kept
    // codes, which the row reads copy back with the rest), draws (keyed on the absolute step) and
    // the conditional prompt's seen codes (the shader adds each code it draws), in one write.
    const layout = samplerStateLayout(n, req.steps, spec.visualCount);
    device.queue.writeBuffer(
      this.params,
      0,
      packSamplerParams({ ...req.sampling, vocab: spec.visualCount, visualOffset: spec.visualOffset, uncondOffset: spec.visualCount, rows: 2, ...layout }),
    );
    const state = new Uint32Array(layout.words);
    const seen = (req.sampling.repetitionPenalty ?? 1) !== 1 ? SeenCodes.ofTokens(req.cond, spec.visualOffset, spec.visualCount).words : undefined;
    for (const [i, uniforms] of req.uniforms.entries()) {
      const at = i * layout.strides.codes;
      state[at] = start;
      if (req.kept) state.set(req.kept, at + 1);
      state.set(new Uint32Array(Float32Array.from(uniforms.subarray(0, req.steps)).buffer), layout.drawsOffset + i * layout.strides.draws);
      if (seen) state.set(seen, layout.seenOffset + i * layout.strides.seen);
    }
    device.queue.writeBuffer(buffers.state, 0, state);

    const { progress, codes } = LoopProgress.ofImages(req);
    throwIfAborted(req.signal);
    const prefillRuns = await this.prefill(req.cond, req.uncond, req);
    // prefill() returns once its runs are done on the GPU (its fences drain), so prefillMs is the
    // prefill's own time rather than being counted in the first row's.
    const longest = Math.max(P, N);
    if (buffers !== this.pair) buffers.seedFrom(device, this.pair, longest, this.options.activations === 'f16' ? 2 : 4);
    // The sampler bumps each stream's length as it feeds a token: start one below the prompt length.
    device.queue.writeBuffer(buffers.seqlens, 0, Int32Array.from({ length: 2 * n }, (_, r) => (r % 2 === 0 ? P : N) - 1));
    let runs = 0;
    this.sample(buffers);
    progress.prefilled();

    let readbacks = 0;
    let allocationsAtWarmup = -1;
    // Fence i marks the sampling of code start + i + 2 (code start + 1 was sampled after the prefill). A row's
    // readback waits for all queued work, so fences retired after it may count fewer codes than
    // the row reported (progress.step ignores those).
    const fences = new QueueFences(device.queue);
    const dispatchesBefore = this.allocations.dispatches;
    for (let step = start + 1; step <= req.steps; step++) {
      if (progress.completesRow(step)) {
        readbacks++;
        await buffers.readCodes(codes, step, layout);
        if (allocationsAtWarmup < 0) allocationsAtWarmup = this.allocations.count;
        progress.row(codes[0]!, step);
      }
      if (step === req.steps) break;
      throwIfAborted(req.signal);
      // Step `step` feeds code step−1 (already in input_ids); the rows then hold len + step − start tokens.
      const feeds = pass.graphCapture
        ? buffers.decodeFeeds
        : { ...buffers.decodeFeeds, total_sequence_length: this.gpu.cpuTensor(Int32Array.of(longest + step - start), []) };
      await pass.session.run(feeds, buffers.fetches);
      runs++;
      this.sample(buffers);
      progress.step(start + (await fences.mark()) + 1);
    }
    await fences.drain();
    const dispatches = this.allocations.dispatches - dispatchesBefore;
    return progress.imagesResult(codes, {
      runs,
      prefillRuns,
      readbacks,
      steadyStateAllocations: this.allocations.count - allocationsAtWarmup,
      graphCapture: pass.graphCapture,
      ...(runs > 0 ? { dispatchesPerStep: dispatches / runs } : {}),
    });
  }

  /**
   * Both prompts into the cache (in chunks, see WEBGPU_PREFILL_CHUNK); each row's last-token
   * logits end up in the logits buffer, on the GPU. Returns the number of LM runs.
   */
  private async prefill(cond: readonly number[], uncond: readonly number[], req: Pick<TokenLoopRequest, 'signal' | 'onPrefillRun'>): Promise<number> {
    const { gpu, pair } = this;
    // A captured session only takes decode-shaped calls, one token per row and call; a session
    // without capture (the loop's own, or a capturing loop's once SJD or a batch opened it) takes
    // chunks.
    const anyShape = this.options.graphCapture ? this.uncaptured : this.session;
    if (anyShape && prefillApart([cond, uncond], WEBGPU_PREFILL_CHUNK)) return this.prefillApart(anyShape, [cond, uncond], req);
    const rowBytes = this.spec.visualCount * 4;
    const calls = prefillSchedule([cond, uncond], anyShape ? WEBGPU_PREFILL_CHUNK : 1);
    const fences = new QueueFences(this.device.queue);
    const ran = prefillRunReporter(fences, calls.length, req);
    let parked = -1;
    for (const [i, { feeds: f, final }] of calls.entries()) {
      throwIfAborted(req.signal);
      if (!anyShape) {
        this.device.queue.writeBuffer(pair.inputIds, 0, Int32Array.from(f.input_ids));
        this.device.queue.writeBuffer(pair.seqlens, 0, Int32Array.from(f.seqlens_k));
        await this.session.run(pair.decodeFeeds, pair.fetches);
      } else {
        await anyShape.run(this.chunkFeeds(f, 2, pair.cache), pair.fetches);
      }
      // The shorter prompt ends before the last call, whose run overwrites its logits row: park
      // that row in the sampler's scratch (free until sampling) and put it back at the end.
      const last = i === calls.length - 1;
      final.forEach((isFinal, row) => {
        if (isFinal && !last) {
          parked = row;
          gpu.copy(pair.logits, row * rowBytes, pair.scratch, 0, rowBytes);
        }
      });
      await ran();
    }
    if (parked >= 0) gpu.copy(pair.scratch, 0, pair.logits, parked * rowBytes, rowBytes);
    await fences.drain();
    req.onPrefillRun?.(calls.length, calls.length);
    return calls.length;
  }

  /**
   * Each prompt on its own: chunks on a batch-1 cache as long as the longer prompt (allocated for
   * this prefill), then its slots and last-token logits copied into its row of the pair. The
   * queue orders each copy before the next prompt's runs reuse the cache.
   */
  private async prefillApart(session: InferenceSession, prompts: readonly (readonly number[])[], req: Pick<TokenLoopRequest, 'signal' | 'onPrefillRun'>): Promise<number> {
    const { device, pair, spec, options } = this;
    const schedules = prompts.map((p) => prefillSchedule([p], WEBGPU_PREFILL_CHUNK));
    const total = schedules.reduce((n, s) => n + s.length, 0);
    const slots = Math.max(...prompts.map((p) => p.length));
    const bytesPerValue = options.activations === 'f16' ? 2 : 4;
    const rowBytes = spec.visualCount * 4;
    const gpu = new GpuResources(this.ort, device);
    const fences = new QueueFences(device.queue);
    const ran = prefillRunReporter(fences, total, req);
    try {
      const cache = gpu.kvCache(spec, 1, slots, options.activations, 'prefill-');
      const logits = gpu.buffer(rowBytes, storageUsage(), 'prefill-logits');
      const fetches = inPlaceFetches(spec, cache, gpu.tensor(logits, 'float32', [1, 1, spec.visualCount]));
      for (const [row, calls] of schedules.entries()) {
        for (const { feeds: f } of calls) {
          throwIfAborted(req.signal);
          await session.run(this.chunkFeeds(f, 1, cache), fetches);
          await ran();
        }
        const encoder = device.createCommandEncoder({ label: 'prefill-to-pair' });
        copyCacheRow(encoder, spec, { cache, capacity: slots }, 0, pair, row, prompts[row]!.length, bytesPerValue);
        encoder.copyBufferToBuffer(logits, 0, pair.logits, row * rowBytes, rowBytes);
        device.queue.submit([encoder.finish()]);
      }
      await fences.drain();
    } finally {
      // Runs return once queued: the prefill's buffers go once the GPU is done with them.
      await device.queue.onSubmittedWorkDone();
      gpu.destroy();
    }
    req.onPrefillRun?.(total, total);
    return total;
  }

  /** One prefill call's feeds, `batch` rows over `cache`; the ids and lengths as CPU tensors (ORT uploads them). */
  private chunkFeeds(f: StepFeeds, batch: number, cache: Record<string, Tensor>): Record<string, Tensor> {
    const { gpu } = this;
    return {
      input_ids: gpu.cpuTensor(f.input_ids, [batch, f.seq]),
      seqlens_k: gpu.cpuTensor(f.seqlens_k, [batch]),
      total_sequence_length: gpu.cpuTensor(Int32Array.of(f.total_sequence_length), []),
      logits_index: gpu.cpuTensor(f.logits_index, [batch, f.rows]),
      ...cache,
    };
  }

  /**
   * The capturing run and one replay, on pad tokens at slot 0 (every prefill overwrites it), with
   * ORT's buffer registrations held (ort-capture-workaround.ts). false: capture does not work
   * here, and the caller should use a session without it.
   */
  async warmUpCapture(): Promise<boolean> {
    if (!this.options.graphCapture) return false;
    const { pair } = this;
    const buffers = [...Object.values(pair.decodeFeeds), ...Object.values(pair.fetches)].map(gpuBufferOf);
    try {
      this.device.queue.writeBuffer(pair.inputIds, 0, Int32Array.of(0, 0));
      this.device.queue.writeBuffer(pair.seqlens, 0, Int32Array.of(0, 0));
      const release = holdOrtBufferRegistrations(buffers);
      await this.session.run(pair.decodeFeeds, pair.fetches);
      if (!release()) return false;
      await this.session.run(pair.decodeFeeds, pair.fetches);
      // Runs return once queued: the engine is not ready until this work is done (a page that
      // says "Ready" over minutes of queued warm-up runs on a slow adapter is not).
      await this.device.queue.onSubmittedWorkDone();
      return true;
    } catch {
      return false;
    }
  }

  /** One sampler dispatch: a work-group per image. */
  private sample(buffers: StepBuffers): void {
    const encoder = this.device.createCommandEncoder({ label: 'sample' });
    const pass = encoder.beginComputePass({ label: 'sample' });
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, buffers.samplerBindGroup(this.device, this.pipeline, this.params));
    pass.dispatchWorkgroups(buffers.images);
    pass.end();
    this.device.queue.submit([encoder.finish()]);
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await this.uncaptured?.release();
    this.gpu.destroy();
    this.sjd?.destroy();
  }
}

/**
 * After each queued prefill run: waits on the fences (webgpu-queue-fences.ts) and reports the
 * runs the GPU has finished out of `total`, never going backwards.
 */
function prefillRunReporter(fences: QueueFences, total: number, req: Pick<TokenLoopRequest, 'onPrefillRun'>): () => Promise<void> {
  let shown = 0;
  return async () => {
    const finished = await fences.mark();
    if (finished > shown) {
      shown = finished;
      req.onPrefillRun?.(finished, total);
    }
  };
}
