// The GPU-resident decode loop (DESIGN "Key decisions" 4). Allocated once per engine:
//  - the static KV cache: one GPU buffer per layer and K/V, bound as both past_* and present_*;
//  - the step inputs input_ids / seqlens_k / logits_index and the logits output, as GPU tensors;
//  - the sampler (sampler-wgsl.ts) on ORT's own GPUDevice, which reads the logits where the LM
//    left them, draws with the step's uniform, and writes the next input_ids and seqlens_k.
// Per step: one session.run and one sampler dispatch; nothing is read back and nothing allocated.
// The CPU reads the codes once per latent row (progress, preview) and at the end.
import type { LmSpec } from '../model-spec.ts';
import { pastKey, pastValue, presentKey, presentValue } from '../convert/lm/graph.ts';
import { prefillFeeds } from '../convert/lm/session-io.ts';
import { SAMPLER_WGSL, packSamplerParams, SAMPLER_PARAMS_BYTES } from '../sampling/sampler-wgsl.ts';
import type { InferenceSession, OrtModule, Tensor } from './ort.ts';
import { throwIfAborted, type TokenLoop, type TokenLoopRequest, type TokenLoopResult } from './token-loop.ts';
import type { AllocationCounter } from './webgpu-device.ts';

type GpuTensorFactory = OrtModule['Tensor'] & {
  fromGpuBuffer(buffer: GPUBuffer, options: { dataType: 'float32' | 'float16' | 'int32'; dims: readonly number[] }): Tensor;
};

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export interface WebGpuLoopOptions {
  capacity: number;
  /** Activation / KV cache dtype of the LM graph. */
  activations: 'f32' | 'f16';
  /** Largest number of codes one generation samples. */
  maxSteps: number;
}

export class WebGpuTokenLoop implements TokenLoop {
  private readonly buffers: GPUBuffer[] = [];
  private readonly cache: Record<string, Tensor> = {};
  private readonly inputIds: GPUBuffer;
  private readonly seqlens: GPUBuffer;
  private readonly tokens: GPUBuffer;
  private readonly staging: GPUBuffer;
  private readonly params: GPUBuffer;
  private readonly draws: GPUBuffer;
  private readonly decodeFeeds: Record<string, Tensor>;
  private readonly fetches: Record<string, Tensor>;
  private readonly pipeline: GPUComputePipeline;
  private readonly bindGroup: GPUBindGroup;
  private readonly Tensor: GpuTensorFactory;

  constructor(
    ort: OrtModule,
    private readonly device: GPUDevice,
    private readonly session: InferenceSession,
    private readonly spec: LmSpec,
    private readonly allocations: AllocationCounter,
    private readonly options: WebGpuLoopOptions,
  ) {
    this.Tensor = ort.Tensor as GpuTensorFactory;
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
    const logits = this.buffer(2 * V * 4, STORAGE, 'logits');
    const scratch = this.buffer(V * 4, GPUBufferUsage.STORAGE, 'sampler-scratch');
    this.draws = this.buffer(options.maxSteps * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, 'draws');
    this.tokens = this.buffer((1 + options.maxSteps) * 4, STORAGE, 'tokens');
    this.staging = this.buffer((1 + options.maxSteps) * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'tokens-readback');
    this.params = this.buffer(SAMPLER_PARAMS_BYTES, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'sampler-params');

    const logitsTensor = this.Tensor.fromGpuBuffer(logits, { dataType: 'float32', dims: [2, 1, V] });
    this.decodeFeeds = {
      input_ids: this.Tensor.fromGpuBuffer(this.inputIds, { dataType: 'int32', dims: [2, 1] }),
      seqlens_k: this.Tensor.fromGpuBuffer(this.seqlens, { dataType: 'int32', dims: [2] }),
      logits_index: this.Tensor.fromGpuBuffer(logitsIndex, { dataType: 'int32', dims: [2, 1] }),
      ...this.cache,
    };
    this.fetches = { logits: logitsTensor };
    for (let i = 0; i < spec.numLayers; i++) {
      this.fetches[presentKey(i)] = this.cache[pastKey(i)]!;
      this.fetches[presentValue(i)] = this.cache[pastValue(i)]!;
    }

    this.pipeline = device.createComputePipeline({
      label: 'sampler',
      layout: 'auto',
      compute: { module: device.createShaderModule({ label: 'sampler', code: SAMPLER_WGSL }), entryPoint: 'main' },
    });
    const entries: GPUBindGroupEntry[] = [this.params, logits, scratch, this.draws, this.tokens, this.inputIds, this.seqlens].map(
      (buffer, binding) => ({ binding, resource: { buffer } }),
    );
    this.bindGroup = device.createBindGroup({ layout: this.pipeline.getBindGroupLayout(0), entries });
  }

  private buffer(size: number, usage: number, label: string): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.ceil(size / 16) * 16, usage, label });
    this.buffers.push(b);
    return b;
  }

  async run(req: TokenLoopRequest): Promise<TokenLoopResult> {
    const { device, spec } = this;
    if (req.steps > this.options.maxSteps) throw new Error(`${req.steps} steps > ${this.options.maxSteps}`);
    const P = req.cond.length;
    const N = req.uncond.length;
    if (Math.max(P, N) + req.steps > this.options.capacity) throw new Error('KV cache too small for this request');

    // Per generation: the sampler's settings and draws, the step counter, the rows' lengths.
    device.queue.writeBuffer(
      this.params,
      0,
      packSamplerParams({ ...req.sampling, vocab: spec.visualCount, visualOffset: spec.visualOffset, rows: 2, uncondOffset: spec.visualCount }),
    );
    device.queue.writeBuffer(this.draws, 0, Float32Array.from(req.uniforms.subarray(0, req.steps)));
    device.queue.writeBuffer(this.tokens, 0, Uint32Array.of(0));
    // The sampler bumps each row's length as it feeds a token: start one below the prompt length.
    device.queue.writeBuffer(this.seqlens, 0, Int32Array.of(P - 1, N - 1));

    const t0 = performance.now();
    throwIfAborted(req.signal);
    const pf = prefillFeeds([req.cond, req.uncond]);
    const { Tensor } = this;
    await this.session.run(
      {
        input_ids: new Tensor('int32', pf.input_ids, [2, pf.seq]),
        seqlens_k: new Tensor('int32', pf.seqlens_k, [2]),
        total_sequence_length: new Tensor('int32', Int32Array.of(pf.total_sequence_length), []),
        logits_index: new Tensor('int32', pf.logits_index, [2, 1]),
        ...this.cache,
      },
      this.fetches,
    );
    this.sample();
    req.onPrefilled?.();
    const t1 = performance.now();

    let runs = 1;
    let readbacks = 0;
    let allocationsAtWarmup = -1;
    const codes = new Int32Array(req.steps);
    const longest = Math.max(P, N);
    for (let step = 1; step <= req.steps; step++) {
      const rowDone = step % req.rowLength === 0 || step === req.steps;
      if (rowDone) {
        readbacks++;
        await this.readCodes(codes, step);
        if (allocationsAtWarmup < 0) allocationsAtWarmup = this.allocations.count;
        req.onRow?.(codes, step);
      }
      if (step === req.steps) break;
      throwIfAborted(req.signal);
      // Step `step` feeds code step−1 (already in input_ids); the rows hold longest+step−1 tokens.
      await this.session.run(
        { ...this.decodeFeeds, total_sequence_length: new Tensor('int32', Int32Array.of(longest + step), []) },
        this.fetches,
      );
      runs++;
      this.sample();
    }
    const t2 = performance.now();
    return {
      codes,
      prefillMs: t1 - t0,
      decodeMs: t2 - t1,
      runs,
      readbacks,
      steadyStateAllocations: this.allocations.count - allocationsAtWarmup,
      graphCapture: false,
      acceptedPerRun: 1,
    };
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
    encoder.copyBufferToBuffer(this.tokens, 0, this.staging, 0, bytes);
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
    for (const b of this.buffers) b.destroy();
  }
}
