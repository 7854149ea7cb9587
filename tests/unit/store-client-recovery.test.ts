// The client's answer to a GPU failure: a generate that rejects with DeviceLost/GpuOutOfMemory
// ends that worker; the next generate starts a fresh worker, prepares the same model again (from
// storage, in the real worker) and then generates. The worker side is the worker's real bridge
// (exposeEngine) over a MessageChannel; each started worker gets its own fresh API object, as a new worker would.
import type * as Comlink from 'comlink';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { afterEach, describe, expect, test } from 'vitest';
import { PortWorker } from '../helpers/port-worker.ts';
import { exposeEngine } from '../../src/client/engine-bridge.ts';
import { EngineClient } from '../../src/client/engine-client.ts';
import { installErrorTransfer } from '../../src/client/error-transfer.ts';
import type { EngineApi, GenerationResult, ModelSource, PreparedModelInfo } from '../../src/client/protocol.ts';
import { deviceLostError, gpuOutOfMemoryError, classifyGpuError } from '../../src/core/engine/webgpu-device.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';

const ports: MessagePort[] = [];
afterEach(() => {
  for (const p of ports.splice(0)) p.close();
});

const SOURCE: ModelSource = { kind: 'bundle', url: 'https://models.test/tiny/' };
const INFO: PreparedModelInfo = { name: 'tiny', backend: 'webgpu', activations: 'f32', hiddenSize: 64, numLayers: 2, visualOffset: 458, modelId: 'abc', fromCache: true };
const RESULT = { codes: new Int32Array([1, 2, 3, 4]) } as unknown as GenerationResult;

/** A client whose n-th worker runs makeApi(n, log). */
function clientWith(makeApi: (n: number, log: string[]) => Partial<EngineApi>) {
  installErrorTransfer();
  const log: string[] = [];
  const workers: PortWorker[] = [];
  const client = new EngineClient({
    startWorker: () => {
      const { port1, port2 } = new MessageChannel();
      exposeEngine(makeApi(workers.length, log) as EngineApi, port1 as unknown as Comlink.Endpoint);
      const w = new PortWorker(port2);
      workers.push(w);
      ports.push(port1, port2);
      log.push(`worker ${workers.length - 1} started`);
      return w as unknown as Worker;
    },
  });
  return { client, log, workers };
}

describe.each([
  ['DeviceLost', () => deviceLostError('unknown', 'the driver was reset')],
  ['GpuOutOfMemory', () => gpuOutOfMemoryError('Failed to allocate a buffer of size 2079238052')],
])('after %s', (code, error) => {
  test('the failing generate rejects with the code; the next one restarts the worker, reloads the model, and generates', async () => {
    const { client, log, workers } = clientWith((n, log) => ({
      prepareModel: async (source, options = {}) => {
        // The bridge adds the call's own signal (and progress callback) to the options.
        const { signal: _signal, onProgress: _onProgress, ...loadOptions } = options;
        log.push(`worker ${n} prepareModel ${source.kind === 'bundle' ? source.url : ''} ${JSON.stringify(loadOptions)}`);
        return INFO;
      },
      generate: async (request) => {
        log.push(`worker ${n} generate ${request.prompt}`);
        if (n === 0) throw error();
        return RESULT;
      },
    }));
    await client.prepareModel(SOURCE, { weights: 'f32', maxLatentSide: 8, onProgress: () => {} });
    const failed = await client.generate({ prompt: 'one' }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(SimpleARError);
    expect((failed as SimpleARError).code).toBe(code);
    expect(workers[0]!.terminated).toBe(true);
    const again = await client.generate({ prompt: 'two' });
    expect(Array.from(again.codes)).toEqual([1, 2, 3, 4]);
    expect(log).toEqual([
      'worker 0 started',
      'worker 0 prepareModel https://models.test/tiny/ {"weights":"f32","maxLatentSide":8}',
      'worker 0 generate one',
      'worker 1 started',
      'worker 1 prepareModel https://models.test/tiny/ {"weights":"f32","maxLatentSide":8}',
      'worker 1 generate two',
    ]);
    client.dispose();
  });
});

describe('GPU errors', () => {
  test('prepareModel on a worker whose device is lost runs again in a fresh worker; out of memory is not retried', async () => {
    const { client, log } = clientWith((n, log) => ({
      prepareModel: async () => {
        log.push(`worker ${n} prepareModel`);
        if (n === 0) throw deviceLostError('unknown', '');
        return INFO;
      },
    }));
    expect(await client.prepareModel(SOURCE)).toEqual(INFO);
    expect(log).toEqual(['worker 0 started', 'worker 0 prepareModel', 'worker 1 started', 'worker 1 prepareModel']);
    client.dispose();
    const second = clientWith((n, log) => ({
      prepareModel: async () => {
        log.push(`worker ${n} prepareModel`);
        throw gpuOutOfMemoryError('Failed to allocate');
      },
    }));
    await expect(second.client.prepareModel(SOURCE)).rejects.toMatchObject({ code: 'GpuOutOfMemory' });
    expect(second.log).toEqual(['worker 0 started', 'worker 0 prepareModel']);
    second.client.dispose();
  });

  test('other errors leave the worker alone', async () => {
    const { client, workers } = clientWith(() => ({
      prepareModel: async () => INFO,
      generate: async () => {
        throw new SimpleARError('InvalidSettings', 'size must be a multiple of 16');
      },
    }));
    await client.prepareModel(SOURCE);
    await expect(client.generate({ prompt: 'x' })).rejects.toMatchObject({ code: 'InvalidSettings' });
    expect(workers[0]!.terminated).toBe(false);
    client.dispose();
  });

  test('allocation and device-loss messages from ONNX Runtime are recognised; the messages say what to do', () => {
    expect(classifyGpuError(new Error('Failed to allocate a buffer of size 2079238052'))?.code).toBe('GpuOutOfMemory');
    expect(classifyGpuError(new Error('[WebGPU] Device is lost'))?.code).toBe('DeviceLost');
    expect(classifyGpuError(new Error('shape mismatch'))).toBeNull();
    expect(gpuOutOfMemoryError('x').message).toMatch(/smaller image size/);
    expect(deviceLostError('unknown', '').message).toMatch(/generate again/);
  });
});
