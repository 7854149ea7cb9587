// The buffers a GPU-resident decode pass steps on (webgpu-loop.ts), for `images` images of two
// CFG rows each (image i = rows 2i, 2i + 1): the KV cache, one buffer per layer and K/V bound as
// both past_* and present_*; the step inputs input_ids / seqlens_k / logits_index and the logits
// output; the sampler's scratch, state and readback staging, and its bind group. The loop keeps
// one set for the single image (allocated once per engine, at the engine's capacity); a batch of
// N images gets a set of 2N rows sized for its request, for the one pass.
import type { LmSpec } from '../base/model-spec.ts';
import type { Tensor } from '../base/ort.ts';
import { seenWords } from '../sampling/repetition.ts';
import { GpuResources, gpuBufferOf, inPlaceFetches, storageUsage } from './webgpu-resources.ts';

/**
 * Where each image's sampler state lies in the state buffer (u32 words, sampler-wgsl.ts): every
 * image's step counter and codes first, one block after another, so a row readback copies one
 * short range for all images; then the draws; then the seen-code masks.
 */
export interface SamplerStateLayout {
  drawsOffset: number;
  seenOffset: number;
  strides: { logits: number; codes: number; draws: number; seen: number };
  /** Words of the whole layout. */
  words: number;
}

export function samplerStateLayout(images: number, steps: number, visualCount: number): SamplerStateLayout {
  const codes = 1 + steps;
  const drawsOffset = images * codes;
  const seenOffset = drawsOffset + images * steps;
  const seen = seenWords(visualCount);
  return { drawsOffset, seenOffset, strides: { logits: 2 * visualCount, codes, draws: steps, seen }, words: seenOffset + images * seen };
}

export class StepBuffers {
  readonly rows: number;
  readonly cache: Record<string, Tensor>;
  readonly inputIds: GPUBuffer;
  readonly seqlens: GPUBuffer;
  readonly logits: GPUBuffer;
  readonly scratch: GPUBuffer;
  readonly state: GPUBuffer;
  readonly staging: GPUBuffer;
  /** The feeds and fetches of a decode-shaped run (one token per row). */
  readonly decodeFeeds: Record<string, Tensor>;
  readonly fetches: Record<string, Tensor>;
  private bindGroup: GPUBindGroup | undefined;

  constructor(
    readonly gpu: GpuResources,
    private readonly spec: LmSpec,
    readonly images: number,
    /** KV cache slots per row. */
    readonly capacity: number,
    /** Codes each image's state has room for. */
    readonly maxSteps: number,
    activations: 'f32' | 'f16',
    label: string,
  ) {
    const STORAGE = storageUsage();
    const V = spec.visualCount;
    const rows = (this.rows = 2 * images);
    this.cache = gpu.kvCache(spec, rows, capacity, activations, label);
    this.inputIds = gpu.buffer(rows * 4, STORAGE, `${label}input_ids`);
    this.seqlens = gpu.buffer(rows * 4, STORAGE, `${label}seqlens_k`);
    const logitsIndex = gpu.buffer(rows * 4, STORAGE, `${label}logits_index`);
    gpu.write(logitsIndex, Int32Array.from({ length: rows }, (_, r) => r));
    this.logits = gpu.buffer(rows * V * 4, STORAGE, `${label}logits`);
    this.scratch = gpu.buffer(images * V * 4, STORAGE, `${label}sampler-scratch`);
    this.state = gpu.buffer(samplerStateLayout(images, maxSteps, V).words * 4, STORAGE, `${label}sampler-state`);
    this.staging = gpu.buffer(images * (1 + maxSteps) * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, `${label}codes-readback`);
    this.decodeFeeds = {
      input_ids: gpu.tensor(this.inputIds, 'int32', [rows, 1]),
      seqlens_k: gpu.tensor(this.seqlens, 'int32', [rows]),
      logits_index: gpu.tensor(logitsIndex, 'int32', [rows, 1]),
      ...this.cache,
    };
    this.fetches = inPlaceFetches(spec, this.cache, gpu.tensor(this.logits, 'float32', [rows, 1, V]));
  }

  /** The sampler's bind group over these buffers (made once the pipeline exists). */
  samplerBindGroup(device: GPUDevice, pipeline: GPUComputePipeline, params: GPUBuffer): GPUBindGroup {
    if (!this.bindGroup) {
      const bindings = [params, this.logits, this.scratch, this.state, this.inputIds, this.seqlens];
      const entries: GPUBindGroupEntry[] = bindings.map((buffer, binding) => ({ binding, resource: { buffer } }));
      this.bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    }
    return this.bindGroup;
  }

  /**
   * Every image starts where the prefilled pair `from` stands: its rows' first `slots` cache slots
   * and its last-token logits, copied into each image's pair, in one submit on the GPU.
   */
  seedFrom(device: GPUDevice, from: StepBuffers, slots: number, bytesPerValue: number): void {
    const encoder = device.createCommandEncoder({ label: 'seed-batch' });
    for (let row = 0; row < this.rows; row++) copyCacheRow(encoder, this.spec, from, row % 2, this, row, slots, bytesPerValue);
    const pairBytes = 2 * this.spec.visualCount * 4;
    for (let i = 0; i < this.images; i++) encoder.copyBufferToBuffer(from.logits, 0, this.logits, i * pairBytes, pairBytes);
    device.queue.submit([encoder.finish()]);
  }

  /**
   * Copies every image's step counter and first `count` codes back (one range, see
   * SamplerStateLayout); checks the GPU is where we think.
   */
  async readCodes(into: readonly Int32Array[], count: number, layout: SamplerStateLayout): Promise<void> {
    const stride = layout.strides.codes;
    const words = (this.images - 1) * stride + 1 + count;
    const counters = await this.gpu.readBack(this.state, this.staging, words * 4, 'read-codes', (mapped) => {
      const view = new Uint32Array(mapped);
      return into.map((codes, i) => {
        codes.set(view.subarray(i * stride + 1, i * stride + 1 + count));
        return view[i * stride]!;
      });
    });
    const off = counters.findIndex((c) => c !== count);
    if (off >= 0) throw new Error(`sampler out of step: ${counters[off]} codes of image ${off} on the GPU, expected ${count}`);
  }
}

/** A KV cache on the GPU: per layer and K/V, [rows, kvH, capacity, hd]. */
export interface GpuKvCache {
  cache: Record<string, Tensor>;
  capacity: number;
}

/**
 * Records the copy of row `fromRow`'s first `slots` cache slots of `from` into row `toRow` of
 * `to`, every layer and K/V, head by head (the two caches may differ in capacity).
 */
export function copyCacheRow(encoder: GPUCommandEncoder, spec: LmSpec, from: GpuKvCache, fromRow: number, to: GpuKvCache, toRow: number, slots: number, bytesPerValue: number): void {
  const { numKvHeads: kvH, headDim } = spec;
  const slotBytes = headDim * bytesPerValue;
  for (const [name, tensor] of Object.entries(from.cache)) {
    const src = gpuBufferOf(tensor);
    const dst = gpuBufferOf(to.cache[name]!);
    for (let h = 0; h < kvH; h++) {
      encoder.copyBufferToBuffer(src, (fromRow * kvH + h) * from.capacity * slotBytes, dst, (toRow * kvH + h) * to.capacity * slotBytes, slots * slotBytes);
    }
  }
}
