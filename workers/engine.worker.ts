// The engine worker: a thin bridge. The engine is an EngineHost (src/core/host); this file builds
// its environment from the worker's globals (navigator.gpu, ORT Web, IndexedDB) and exposes it
// over Comlink (src/client/engine-bridge.ts). After a GPU failure the host rejects GPU calls with
// DeviceLost / GpuOutOfMemory; the client then starts a fresh worker and loads the model again.
import { probeDevice } from '../src/core/runtime/device.ts';
import { requestEngineDevice } from '../src/core/engine/webgpu-device.ts';
import { EngineHost } from '../src/core/host/engine-host.ts';
import { ModelStore } from '../src/core/store/model-store.ts';
import { openBrowserStores } from '../src/core/store/kv-idb.ts';
import { installErrorTransfer } from '../src/client/error-transfer.ts';
import { exposeEngine } from '../src/client/engine-bridge.ts';
import { loadOrtWeb } from './ort-web.ts';

const host = new EngineHost({
  loadOrt: loadOrtWeb,
  cpuBackend: 'wasm',
  probeDevice: () => probeDevice(),
  webgpu: { loadOrt: loadOrtWeb, requestDevice: () => requestEngineDevice() },
  modelStore: () =>
    new ModelStore({
      ...openBrowserStores(),
      ...(navigator.storage?.estimate ? { estimate: () => navigator.storage.estimate() } : {}),
    }),
});

installErrorTransfer();
exposeEngine(host);
