// The GPUDevice the engine shares with ONNX Runtime: requested here with the adapter's largest
// buffer limits and shader-f16 where offered, then handed to ORT before its first session.
// createBuffer is counted, so tests can show that the decode loop allocates nothing.

export interface AllocationCounter {
  /** createBuffer calls so far. */
  readonly count: number;
  /** Buffers created and not yet destroyed, and their bytes. */
  readonly liveBuffers: number;
  readonly liveBytes: number;
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
  const counter = { count: 0, liveBuffers: 0, liveBytes: 0 };
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
