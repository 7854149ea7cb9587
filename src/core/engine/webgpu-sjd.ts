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
import { prefillSchedule } from '../runtime/lm-runner.ts';
import type { CpuSampler } from '../sampling/sampler.ts';
import { SJD_WINDOW_LIMITS } from './settings.ts';
import type { InferenceSession, OrtModule, Tensor } from '../base/ort.ts';
import { runSjdLoop, separateStreams, type StreamRunner } from './sjd-loop.ts';
import type { SjdLoopOptions, TokenLoopRequest, TokenLoopResult } from './token-loop.ts';
import type { AllocationCounter } from './webgpu-device.ts';
import { GpuResources, inPlaceFetches, storageUsage } from './webgpu-resources.ts';

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
    const totalLength = this.owner.gpu.cpuTensor(Int32Array.of(total), []);
    await this.owner.session.run({ ...io.feeds, total_sequence_length: totalLength }, io.fetches);
  }

  private io(S: number, rows: number, onlyRow?: number) {
    // Window runs (all rows) and prefill chunks (one row) of the same length need different
    // index tensors: keyed apart.
    const key = onlyRow === undefined ? S : -S;
    let io = this.bySize.get(key);
    if (!io) {
      const { gpu, spec } = this.owner;
      const index = onlyRow === undefined ? this.inputs.index : this.owner.indexBuffer(onlyRow);
      const feeds: Record<string, Tensor> = {
        input_ids: gpu.tensor(this.inputs.ids, 'int32', [1, S]),
        seqlens_k: gpu.tensor(this.inputs.seqlen, 'int32', [1]),
        logits_index: gpu.tensor(index, 'int32', [1, rows]),
        ...this.cache,
      };
      io = { feeds, fetches: inPlaceFetches(spec, this.cache, gpu.tensor(this.logits, 'float32', [1, rows, spec.visualCount])) };
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
  readonly gpu: GpuResources;
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
    const gpu = (this.gpu = new GpuResources(ort, device));
    const usage = storageUsage();
    const maxTokens = Math.max(SJD_WINDOW_LIMITS.max + 1, options.maxCall);
    const logitsBytes = maxTokens * spec.visualCount * 4;
    const positions = gpu.buffer(maxTokens * 4, usage, 'sjd-logits_index');
    device.queue.writeBuffer(positions, 0, Int32Array.from({ length: maxTokens }, (_, i) => i));
    this.staging = gpu.buffer(logitsBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, 'sjd-readback');
    const stream = (name: string) => {
      const cache = gpu.kvCache(spec, 1, options.capacity, options.activations, `sjd-${name}-`);
      const inputs: WindowInputs = {
        ids: gpu.buffer(maxTokens * 4, usage, `sjd-${name}-input_ids`),
        seqlen: gpu.buffer(4, usage, `sjd-${name}-seqlens_k`),
        index: positions,
      };
      return new GpuStream(this, cache, gpu.buffer(logitsBytes, usage, `sjd-${name}-logits`), inputs, () => this.counters);
    };
    this.streams = [stream('cond'), stream('uncond')];
  }

  /** A one-entry logits_index buffer holding `row` (prefill chunks: their last token). */
  indexBuffer(row: number): GPUBuffer {
    let b = this.indexBuffers.get(row);
    if (!b) {
      b = this.gpu.buffer(4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, `sjd-logits_index-${row}`);
      this.device.queue.writeBuffer(b, 0, Int32Array.of(row));
      this.indexBuffers.set(row, b);
    }
    return b;
  }

  /** The first `bytes` of `src`, copied out (the staging buffer is shared by both streams). */
  readBack(src: GPUBuffer, bytes: number): Promise<Float32Array> {
    return this.gpu.readBack(src, this.staging, bytes, 'sjd-read-logits', (mapped) => new Float32Array(mapped.slice(0)));
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
    this.gpu.destroy();
  }
}
