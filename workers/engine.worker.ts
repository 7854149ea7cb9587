// The engine worker: exposes the engine API over Comlink, nothing else. All work is in
// src/core; this file wires it to the worker's globals (navigator.gpu, ORT Web).
import * as Comlink from 'comlink';
import { probeDevice } from '../src/core/device.ts';
import { SimpleARError } from '../src/core/errors.ts';
import { openFolder } from '../src/core/formats/byte-source.ts';
import { inspectCheckpoint } from '../src/core/formats/inspect-checkpoint.ts';
import { maxAbsDiff, referenceSelfTest, runSelfTest } from '../src/core/runtime/self-test-graph.ts';
import { installErrorTransfer } from '../src/client/error-transfer.ts';
import type { EngineWorkerApi, SelfTestReport } from '../src/client/protocol.ts';
import { loadOrtWeb } from './ort-web.ts';

const api: EngineWorkerApi = {
  getDeviceInfo: () => probeDevice(),

  async selfTest(): Promise<SelfTestReport> {
    const device = await probeDevice();
    if (!device.ok) throw new SimpleARError('WebGPUUnavailable', device.message, { reason: device.reason });
    const ort = await loadOrtWeb();
    const result = await runSelfTest(ort, { executionProviders: ['webgpu'], strict: true });
    const reference = referenceSelfTest();
    return {
      ...result,
      ortVersion: ort.env.versions.web ?? 'unknown',
      executionProvider: 'webgpu',
      numThreads: ort.env.wasm.numThreads ?? 1,
      maxAbsDiffFromReference: Math.max(
        maxAbsDiff(result.outputs.y.data, reference.y),
        maxAbsDiff(result.outputs.residual.data, reference.residual),
      ),
    };
  },

  inspectCheckpoint: (baseUrl, parts) => inspectCheckpoint(openFolder(baseUrl), parts ? { parts } : {}),
};

installErrorTransfer();
Comlink.expose(api);
