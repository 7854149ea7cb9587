// The engine host in Node (the CLI): onnxruntime-node's CPU EP, no WebGPU, no model store (models
// are read from a bundle folder or original checkpoints as they are).
import { freemem } from 'node:os';
import type { OrtModule } from '../core/base/ort.ts';
import { probeDevice } from '../core/runtime/device.ts';
import { EngineHost, type EngineHostEnv } from '../core/host/engine-host.ts';

/** The share of the free memory (when the host starts) a batched pass's KV cache may take: the
 * rest is left for the weights, the decoder and the rest of the machine. */
export const NODE_BATCH_MEMORY_SHARE = 0.5;

export function createNodeEngineHost(cpuEngine: EngineHostEnv['cpuEngine'] = {}): EngineHost {
  return new EngineHost({
    loadOrt: async () => (await import('onnxruntime-node')) as unknown as OrtModule,
    cpuBackend: 'cpu',
    probeDevice: () => probeDevice(),
    cpuEngine: { batchMemoryBytes: Math.floor(freemem() * NODE_BATCH_MEMORY_SHARE), ...cpuEngine },
  });
}
