// The GPUDevice the engine shares with ONNX Runtime: requested here with the adapter's largest
// buffer limits and shader-f16 where offered, then handed to ORT before its first session.
// createBuffer is counted, so tests can show that the decode loop allocates nothing.
import { SimpleARError } from '../base/errors.ts';

export interface AllocationCounter {
  /** createBuffer calls so far. */
  readonly count: number;
  /** Buffers created and not yet destroyed, and their bytes. */
  readonly liveBuffers: number;
  readonly liveBytes: number;
  /** Compute dispatches encoded on the device so far (ORT's kernels and ours). */
  readonly dispatches: number;
}

export interface EngineDevice {
  device: GPUDevice;
  adapterInfo: { vendor: string; architecture: string; isFallbackAdapter: boolean };
  shaderF16: boolean;
  allocations: AllocationCounter;
}

export async function requestEngineDevice(gpu: GPU = navigator.gpu): Promise<EngineDevice> {
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('No WebGPU adapter');
  const shaderF16 = adapter.features.has('shader-f16');
  const requiredFeatures: GPUFeatureName[] = [];
  if (shaderF16) requiredFeatures.push('shader-f16');
  for (const f of ['subgroups', 'timestamp-query'] as GPUFeatureName[]) if (adapter.features.has(f)) requiredFeatures.push(f);
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    label: 'simplear',
    requiredFeatures,
    requiredLimits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  const counter = { count: 0, liveBuffers: 0, liveBytes: 0, dispatches: 0 };
  countDispatches(device, counter);
  const create = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor) => {
    const buffer = create(descriptor);
    counter.count++;
    counter.liveBuffers++;
    counter.liveBytes += buffer.size;
    const destroy = buffer.destroy.bind(buffer);
    let destroyed = false;
    buffer.destroy = () => {
      if (!destroyed) {
        destroyed = true;
        counter.liveBuffers--;
        counter.liveBytes -= buffer.size;
      }
      destroy();
    };
    return buffer;
  };
  const info = adapter.info;
  return {
    device,
    adapterInfo: { vendor: info.vendor, architecture: info.architecture, isFallbackAdapter: info.isFallbackAdapter ?? false },
    shaderF16,
    allocations: counter,
  };
}

/**
 * Counts the compute dispatches encoded on `device`: its command encoders' compute passes count
 * each dispatchWorkgroups (direct or indirect) into `counter.dispatches`. ONNX Runtime encodes
 * through the same JS objects, so its kernels are counted too, replays of a captured graph included.
 */
function countDispatches(device: GPUDevice, counter: { dispatches: number }): void {
  const createEncoder = device.createCommandEncoder.bind(device);
  device.createCommandEncoder = (descriptor?: GPUCommandEncoderDescriptor) => {
    const encoder = createEncoder(descriptor);
    const beginPass = encoder.beginComputePass.bind(encoder);
    encoder.beginComputePass = (passDescriptor?: GPUComputePassDescriptor) => {
      const pass = beginPass(passDescriptor);
      const dispatch = pass.dispatchWorkgroups.bind(pass);
      const dispatchIndirect = pass.dispatchWorkgroupsIndirect.bind(pass);
      pass.dispatchWorkgroups = (x: number, y?: number, z?: number) => {
        counter.dispatches++;
        dispatch(x, y, z);
      };
      pass.dispatchWorkgroupsIndirect = (buffer: GPUBuffer, offset: number) => {
        counter.dispatches++;
        dispatchIndirect(buffer, offset);
      };
      return pass;
    };
    return encoder;
  };
}

/**
 * Resolves, once, with the error to report when the device stops being usable: lost (driver
 * reset, GPU removed, `destroy()`), or out of memory outside any error scope (what ONNX Runtime's
 * allocations hit). The message says what to do; the caller disposes the engine.
 */
export function watchDeviceFailures(device: GPUDevice): Promise<SimpleARError> {
  return new Promise((resolve) => {
    void device.lost.then((info) => resolve(deviceLostError(info.reason, info.message)));
    device.addEventListener('uncapturederror', (event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      if (typeof GPUOutOfMemoryError !== 'undefined' && error instanceof GPUOutOfMemoryError) resolve(gpuOutOfMemoryError(error.message));
    });
  });
}

export function deviceLostError(reason: string, message: string): SimpleARError {
  return new SimpleARError(
    'DeviceLost',
    `The GPU stopped working for this page (device lost${reason && reason !== 'unknown' ? `: ${reason}` : ''}${message ? `, “${message}”` : ''}). ` +
      'The engine was shut down; generate again and it restarts from the stored model, with no download. ' +
      'If it keeps happening, close other tabs or apps that use the GPU, or choose a smaller image size.',
    { reason, gpuMessage: message },
  );
}

export function gpuOutOfMemoryError(message: string): SimpleARError {
  return new SimpleARError(
    'GpuOutOfMemory',
    `The GPU ran out of memory${message ? ` (“${message}”)` : ''}. ` +
      'Choose a smaller image size, or close other tabs or apps that use the GPU, then generate again: the engine restarts from the stored model.',
    { gpuMessage: message },
  );
}

/** A GPU failure recognised in an error thrown by ONNX Runtime or WebGPU, or null. */
export function classifyGpuError(e: unknown): SimpleARError | null {
  if (e instanceof SimpleARError) return e.code === 'DeviceLost' || e.code === 'GpuOutOfMemory' ? e : null;
  const message = e instanceof Error ? e.message : String(e);
  if (/out of memory|failed to allocate|allocation failed|not enough memory|\bOOM\b/i.test(message)) return gpuOutOfMemoryError(message);
  if (/device (was |is )?lost|lost device|destroyed device|device is destroyed/i.test(message)) return deviceLostError('unknown', message);
  return null;
}
