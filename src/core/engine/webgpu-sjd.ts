// Speculative Jacobi decoding on the WebGPU EP (sjd-loop.ts does the drafting and verifying).
// Unlike the plain GPU-resident loop, every window run's logits rows are read back and the
// acceptance test runs in JS (CpuSampler.probabilities, the same targets as on the CPU): the
// verification is sequential and data-dependent, and one readback per window is the price of
// verifying up to window + 1 tokens per run.
//
// Buffers, allocated on the first SJD generation and kept: a batch-1 KV cache per CFG stream
// (the plain loop's batch-2 cache cannot take multi-token calls after a prefix, see sjd-loop.ts),
// a logits buffer of window + 1 rows per stream, the runs' inputs (ids, seqlens_k, logits_index:
// GPU-resident, so ORT uploads nothing), and one staging buffer for the readback.
// Windows stay ≤ 31 tokens (WEBGPU_PREFILL_CHUNK): longer calls give wrong attention on adapters
// with narrow subgroups.
import type { LmSpec } from '../base/model-spec.ts';
import { pastKey, pastValue, presentKey, presentValue } from '../model/lm-graph.ts';
import { prefillSchedule } from '../runtime/lm-runner.ts';
import type { CpuSampler } from '../sampling/sampler.ts';
import { SJD_WINDOW_LIMITS } from './settings.ts';
import type { InferenceSession, OrtModule, Tensor } from '../base/ort.ts';
import { runSjdLoop, separateStreams, type StreamRunner } from './sjd-loop.ts';
import type { SjdLoopOptions, TokenLoopRequest, TokenLoopResult } from './token-loop.ts';
import type { AllocationCounter } from './webgpu-device.ts';

type GpuTensorFactory = OrtModule['Tensor'] & {
  fromGpuBuffer(buffer: GPUBuffer, options: { dataType: 'float32' | 'float16' | 'int32'; dims: readonly number[] }): Tensor;
};

export interface WebGpuSjdOptions {
  capacity: number;
  activations: 'f32' | 'f16';
  /** Longest call (tokens) that the EP computes right. */
  maxCall: number;
}

/** Counters shared by the two streams of one generation. */
interface Counters {
  prefillRuns: number;
  sessionRuns: number;
  readbacks: number;
}

/** GPU-resident feeds of a window run, so a run uploads nothing through ORT (no allocations). */
interface WindowInputs {
  ids: GPUBuffer;
  seqlen: GPUBuffer;
  /** 0, 1, 2, …: every position of the window gets logits. */
  index: GPUBuffer;
}

class GpuStream implements StreamRunner {
  private length = 0;
  /** Feeds and fetches over the stream's buffers, one set per window length. */
  private readonly bySize = new Map<number, { feeds: Record<string, Tensor>; fetches: Record<string, Tensor> }>();

  constructor(
    private readonly owner: WebGpuSjd,
    private readonly cache: Record<string, Tensor>,
    private readonly logits: GPUBuffer,
    private readonly inputs: WindowInputs,
    private readonly counters: () => Counters,
  ) {}

  /** Chunks of ≤ maxCall tokens; the logits of the last one's last token. */
  async prefill(prompt: readonly number[]): Promise<Float32Array> {
    const calls = prefillSchedule([prompt], this.owner.options.maxCall);
    let out: Float32Array | undefined;
    for (const { feeds: f, final } of calls) {
      // A chunk's logits: only its last token's row, index S − 1.
      await this.run(f.input_ids, f.seqlens_k[0]!, f.total_sequence_length, f.logits_index[0]!);
      this.counters().prefillRuns++;
      if (final[0]) out = await this.read(1);
    }
    this.length = prompt.length;
    return out!;
  }

  async runWindow(ids: readonly number[]): Promise<Float32Array> {
    const S = ids.length;
    const L = this.length;
    await this.run(Int32Array.from(ids), L + S - 1, L + S);
    this.counters().sessionRuns++;
    return this.read(S);
  }

  advance(count: number): void {
    this.length += count;
  }

  /** One run over `ids` (all rows of logits, or the single row `onlyRow`). */
  private async run(ids: Int32Array, seqlen: number, total: number, onlyRow?: number): Promise<void> {
    const { queue } = this.owner.device;
    queue.writeBuffer(this.inputs.ids, 0, new Int32Array(ids)); // a plain ArrayBuffer copy (Dawn wants one)
    queue.writeBuffer(this.inputs.seqlen, 0, Int32Array.of(seqlen));
    const rows = onlyRow === undefined ? ids.length : 1;
    const io = this.io(ids.length, rows, onlyRow);
    const totalLength = new this.owner.Tensor('int32', Int32Array.of(total), []);
    await this.owner.session.run({ ...io.feeds, total_sequence_length: totalLength }, io.fetches);
  }

  private io(S: number, rows: number, onlyRow?: number) {
    // Window runs (all rows) and prefill chunks (one row) of the same length need different
    // index tensors: keyed apart.
    const key = onlyRow === undefined ? S : -S;
    let io = this.bySize.get(key);
    if (!io) {
      const { Tensor, spec } = this.owner;
      const index = onlyRow === undefined ? this.inputs.index : this.owner.indexBuffer(onlyRow);
      const feeds: Record<string, Tensor> = {
        input_ids: Tensor.fromGpuBuffer(this.inputs.ids, { dataType: 'int32', dims: [1, S] }),
        seqlens_k: Tensor.fromGpuBuffer(this.inputs.seqlen, { dataType: 'int32', dims: [1] }),
        logits_index: Tensor.fromGpuBuffer(index, { dataType: 'int32', dims: [1, rows] }),
        ...this.cache,
      };
      const fetches: Record<string, Tensor> = { logits: Tensor.fromGpuBuffer(this.logits, { dataType: 'float32', dims: [1, rows, spec.visualCount] }) };
      for (let i = 0; i < spec.numLayers; i++) {
        fetches[presentKey(i)] = this.cache[pastKey(i)]!;
        fetches[presentValue(i)] = this.cache[pastValue(i)]!;
      }
      io = { feeds, fetches };
      this.bySize.set(key, io);
    }
    return io;
  }

  /** The first `rows` logits rows, copied out of the staging buffer. */
  private async read(rows: number): Promise<Float32Array> {
    this.counters().readbacks++;
    return this.owner.readBack(this.logits, rows * this.owner.spec.visualCount * 4);
  }
}

export class WebGpuSjd {
  readonly Tensor: GpuTensorFactory;
  private readonly buffers: GPUBuffer[] = [];
  private readonly staging: GPUBuffer;
  private readonly streams: [GpuStream, GpuStream];
  private counters: Counters = { prefillRuns: 0, sessionRuns: 0, readbacks: 0 };

  /** Single-entry index buffers (value → buffer) for prefill chunks. */
  private readonly indexBuffers = new Map<number, GPUBuffer>();

  constructor(
    ort: OrtModule,
    readonly device: GPUDevice,
    readonly session: InferenceSession,
    readonly spec: LmSpec,
    private readonly allocations: AllocationCounter,
    readonly options: WebGpuSjdOptions,
  ) {
    this.Tensor = ort.Tensor as GpuTensorFactory;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const dataType = options.activations === 'f16' ? 'float16' : 'float32';
    const cacheDims = [1, spec.numKvHeads, options.capacity, spec.headDim];
    const cacheBytes = cacheDims.reduce((a, b) => a * b, 1) * (dataType === 'float16' ? 2 : 4);
    const maxTokens = Math.max(SJD_WINDOW_LIMITS.max + 1, options.maxCall);
    const logitsBytes = maxTokens * spec.visualCount * 4;
    const positions = this.buffer(maxTokens * 4, usage, 'sjd-logits_index');
    device.queue.writeBuffer(positions, 0, Int32Array.from({ length: maxTokens }, (_, i) => i));
    this.staging = this.buffer(logitsBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'sjd-readback');
    const stream = (name: string) => {
      const cache: Record<string, Tensor> = {};
      for (let i = 0; i < spec.numLayers; i++) {
        for (const key of [pastKey(i), pastValue(i)]) {
          cache[key] = this.Tensor.fromGpuBuffer(this.buffer(cacheBytes, usage, `sjd-${name}-${key}`), { dataType, dims: cacheDims });
        }
      }
      const inputs: WindowInputs = {
        ids: this.buffer(maxTokens * 4, usage, `sjd-${name}-input_ids`),
        seqlen: this.buffer(4, usage, `sjd-${name}-seqlens_k`),
        index: positions,
      };
      return new GpuStream(this, cache, this.buffer(logitsBytes, usage, `sjd-${name}-logits`), inputs, () => this.counters);
    };
    this.streams = [stream('cond'), stream('uncond')];
  }

  private buffer(size: number, usage: number, label: string): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.ceil(size / 16) * 16, usage, label });
    this.buffers.push(b);
    return b;
  }

  /** A one-entry logits_index buffer holding `row` (prefill chunks: their last token). */
  indexBuffer(row: number): GPUBuffer {
    let b = this.indexBuffers.get(row);
    if (!b) {
      b = this.buffer(4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, `sjd-logits_index-${row}`);
      this.device.queue.writeBuffer(b, 0, Int32Array.of(row));
      this.indexBuffers.set(row, b);
    }
    return b;
  }

  async readBack(src: GPUBuffer, bytes: number): Promise<Float32Array> {
    const encoder = this.device.createCommandEncoder({ label: 'sjd-read-logits' });
    encoder.copyBufferToBuffer(src, 0, this.staging, 0, bytes);
    this.device.queue.submit([encoder.finish()]);
    await this.staging.mapAsync(GPUMapMode.READ, 0, bytes);
    const out = new Float32Array(this.staging.getMappedRange(0, bytes).slice(0));
    this.staging.unmap();
    return out;
  }

  async run(sampler: CpuSampler, req: TokenLoopRequest, sjd: SjdLoopOptions): Promise<TokenLoopResult> {
    this.counters = { prefillRuns: 0, sessionRuns: 0, readbacks: 0 };
    let allocationsWhenWarm = -1;
    const [cond, uncond] = this.streams;
    return runSjdLoop(
      {
        runner: separateStreams(cond, uncond),
        onWarm: () => (allocationsWhenWarm = this.allocations.count),
        stats: () => ({
          ...this.counters,
          steadyStateAllocations: allocationsWhenWarm < 0 ? 0 : this.allocations.count - allocationsWhenWarm,
        }),
      },
      this.spec,
      sampler,
      req,
      sjd,
    );
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}
