// The engine host in Node (the CLI): onnxruntime-node's CPU EP, no WebGPU, no model store (models
// are read from a bundle folder or original checkpoints as they are).
import type { OrtModule } from '../core/base/ort.ts';
import { probeDevice } from '../core/runtime/device.ts';
import { EngineHost, type EngineHostEnv } from '../core/host/engine-host.ts';

export function createNodeEngineHost(cpuEngine: EngineHostEnv['cpuEngine'] = {}): EngineHost {
  return new EngineHost({
    loadOrt: async () => (await import('onnxruntime-node')) as unknown as OrtModule,
    cpuBackend: 'cpu',
    probeDevice: () => probeDevice(),
    cpuEngine,
  });
}
