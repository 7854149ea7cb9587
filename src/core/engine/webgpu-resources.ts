// The GPU resources of the WebGPU token loops (webgpu-loop.ts plain, webgpu-sjd.ts speculative):
// buffers created on ORT's device and destroyed together, ORT tensors over them, a KV cache that
// runs update in place (bound as both past_* and present_*), copies and readbacks.
import type { LmSpec } from '../base/model-spec.ts';
import type { OrtModule, Tensor } from '../base/ort.ts';
import { pastKey, pastValue, presentKey, presentValue } from '../model/lm-graph.ts';

type GpuDataType = 'float32' | 'float16' | 'int32';

/** onnxruntime-web/webgpu's Tensor, which wraps GPU buffers. */
type GpuTensorFactory = OrtModule['Tensor'] & {
  fromGpuBuffer(buffer: GPUBuffer, options: { dataType: GpuDataType; dims: readonly number[] }): Tensor;
};

/** Storage, copyable both ways. Read lazily: importing this module must not need WebGPU globals (Node CLI, tests). */
export const storageUsage = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export class GpuResources {
  private readonly Tensor: GpuTensorFactory;
  private readonly buffers: GPUBuffer[] = [];

  constructor(
    ort: OrtModule,
    private readonly device: GPUDevice,
  ) {
    this.Tensor = ort.Tensor as GpuTensorFactory;
  }

  /** A buffer of at least `size` bytes (rounded up to 16), destroyed by destroy(). */
  buffer(size: number, usage: number, label: string): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.ceil(size / 16) * 16, usage, label });
    this.buffers.push(b);
    return b;
  }

  /** Queues a write of `data` at the start of `buffer`. */
  write(buffer: GPUBuffer, data: BufferSource): void {
    this.device.queue.writeBuffer(buffer, 0, data);
  }

  /** An ORT tensor over a GPU buffer. */
  tensor(buffer: GPUBuffer, dataType: GpuDataType, dims: readonly number[]): Tensor {
    return this.Tensor.fromGpuBuffer(buffer, { dataType, dims });
  }

  /** An ORT tensor on the CPU (the inputs ORT reads there, such as total_sequence_length). */
  cpuTensor(data: Int32Array, dims: readonly number[]): Tensor {
    return new this.Tensor('int32', data, dims);
  }

  /** The KV cache: per layer, past key and value buffers of `batch` rows × `capacity` slots; labels start with `labelPrefix`. */
  kvCache(spec: LmSpec, batch: number, capacity: number, activations: 'f32' | 'f16', labelPrefix: string): Record<string, Tensor> {
    const dataType = activations === 'f16' ? 'float16' : 'float32';
    const dims = [batch, spec.numKvHeads, capacity, spec.headDim];
    const bytes = dims.reduce((a, b) => a * b, 1) * (dataType === 'float16' ? 2 : 4);
    const cache: Record<string, Tensor> = {};
    for (let i = 0; i < spec.numLayers; i++) {
      for (const name of [pastKey(i), pastValue(i)]) cache[name] = this.tensor(this.buffer(bytes, storageUsage(), `${labelPrefix}${name}`), dataType, dims);
    }
    return cache;
  }

  /** One command: `bytes` of `src` at `srcOffset` to `dst` at `dstOffset`. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number, label = 'copy'): void {
    const encoder = this.device.createCommandEncoder({ label });
    encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.device.queue.submit([encoder.finish()]);
  }

  /** The first `bytes` of `src`, through `staging` (MAP_READ): `read` sees them while mapped. */
  async readBack<T>(src: GPUBuffer, staging: GPUBuffer, bytes: number, label: string, read: (mapped: ArrayBuffer) => T): Promise<T> {
    this.copy(src, 0, staging, 0, bytes, label);
    await staging.mapAsync(GPUMapMode.READ, 0, bytes);
    try {
      return read(staging.getMappedRange(0, bytes));
    } finally {
      staging.unmap();
    }
  }

  destroy(): void {
    for (const b of this.buffers) b.destroy();
  }
}

/** The GPU buffer under an ORT tensor made by GpuResources.tensor. */
export function gpuBufferOf(tensor: Tensor): GPUBuffer {
  return (tensor as Tensor & { gpuBuffer: GPUBuffer }).gpuBuffer;
}

/** The fetches of a run that writes `logits` and updates `cache` in place (each present_* is its past_*). */
export function inPlaceFetches(spec: LmSpec, cache: Record<string, Tensor>, logits: Tensor): Record<string, Tensor> {
  const fetches: Record<string, Tensor> = { logits };
  for (let i = 0; i < spec.numLayers; i++) {
    fetches[presentKey(i)] = cache[pastKey(i)]!;
    fetches[presentValue(i)] = cache[pastValue(i)]!;
  }
  return fetches;
}
