// The page-side bridge over the engine worker, with the worker played by a MessageChannel
// port running the worker's real bridge (exposeEngine): calls, typed errors across the boundary, abort,
// a worker that fails to load, and dispose.
import type * as Comlink from 'comlink';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { afterEach, describe, expect, test } from 'vitest';
import { PortWorker } from '../helpers/port-worker.ts';
import { exposeEngine } from '../../src/client/engine-bridge.ts';
import { EngineClient } from '../../src/client/engine-client.ts';
import { deserializeThrown, installErrorTransfer, serializeThrown } from '../../src/client/error-transfer.ts';
import type { EngineApi, SelfTestReport } from '../../src/client/protocol.ts';
import type { DeviceFacts } from '../../src/core/runtime/device.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';

const DEVICE: DeviceFacts = {
  ok: false,
  code: 'WebGPUUnavailable',
  reason: 'no-adapter',
  message: 'no adapter',
  environment: { crossOriginIsolated: true, secureContext: true, hardwareConcurrency: 4 },
};

const workers: PortWorker[] = [];
const ports: MessagePort[] = [];

/** A client whose worker exposes `api` (the real Comlink on both ends). */
function clientFor(api: Partial<EngineApi>): { client: EngineClient; started: () => PortWorker[] } {
  installErrorTransfer();
  const started: PortWorker[] = [];
  const client = new EngineClient({
    startWorker: () => {
      const { port1, port2 } = new MessageChannel();
      exposeEngine(api as EngineApi, port1 as unknown as Comlink.Endpoint);
      const worker = new PortWorker(port2);
      started.push(worker);
      workers.push(worker);
      ports.push(port1, port2);
      return worker as unknown as Worker;
    },
  });
  return { client, started: () => started };
}

afterEach(() => {
  for (const p of ports.splice(0)) p.close();
  workers.splice(0);
});

describe('EngineClient', () => {
  test('starts the worker on first use and returns its answers', async () => {
    const { client, started } = clientFor({ getDeviceInfo: async () => DEVICE });
    expect(started()).toHaveLength(0);
    expect(await client.getDeviceInfo()).toEqual(DEVICE);
    expect(await client.getDeviceInfo()).toEqual(DEVICE);
    expect(started()).toHaveLength(1);
    client.dispose();
  });

  test('a SimpleARError thrown in the worker arrives with its code and details', async () => {
    const { client } = clientFor({
      selfTest: async () => {
        throw new SimpleARError('WebGPUUnavailable', 'no GPU here', { reason: 'no-adapter' });
      },
    });
    const error = await client.selfTest().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SimpleARError);
    expect(error).toMatchObject({ code: 'WebGPUUnavailable', message: 'no GPU here', details: { reason: 'no-adapter' } });
    client.dispose();
  });

  test('abort rejects the pending call with code Aborted; an aborted signal never starts the worker', async () => {
    let finish!: (r: SelfTestReport) => void;
    const { client, started } = clientFor({ selfTest: () => new Promise<SelfTestReport>((r) => (finish = r)) });

    const pre = new AbortController();
    pre.abort();
    await expect(client.selfTest({ signal: pre.signal })).rejects.toMatchObject({ code: 'Aborted' });
    expect(started()).toHaveLength(0);

    const ac = new AbortController();
    const pending = client.selfTest({ signal: ac.signal });
    await new Promise((r) => setTimeout(r, 20));
    ac.abort('user');
    await expect(pending).rejects.toMatchObject({ code: 'Aborted' });
    finish?.({} as SelfTestReport);
    client.dispose();
  });

  test('a worker that fails to load rejects pending calls; the next call starts a new one', async () => {
    const { client, started } = clientFor({ getDeviceInfo: () => new Promise<DeviceFacts>(() => {}) });
    const pending = client.getDeviceInfo();
    await new Promise((r) => setTimeout(r, 10));
    started()[0]!.fail('SyntaxError in engine.worker.js');
    await expect(pending).rejects.toThrow(/engine worker failed: SyntaxError/);
    expect(started()[0]!.terminated).toBe(true);

    void client.getDeviceInfo().catch(() => {});
    expect(started()).toHaveLength(2);
    client.dispose();
  });

  test('dispose ends the worker; later calls reject', async () => {
    const { client, started } = clientFor({ getDeviceInfo: async () => DEVICE });
    await client.getDeviceInfo();
    client.dispose();
    expect(started()[0]!.terminated).toBe(true);
    await expect(client.getDeviceInfo()).rejects.toThrow(/disposed/);
  });
});

describe('error transfer', () => {
  test('round-trips SimpleARError, plain errors and thrown non-errors', () => {
    const typed = deserializeThrown(serializeThrown(new SimpleARError('QuotaExceeded', 'full', { need: 5 })));
    expect(typed).toBeInstanceOf(SimpleARError);
    expect(typed).toMatchObject({ code: 'QuotaExceeded', name: 'QuotaExceeded', message: 'full', details: { need: 5 } });

    const plain = deserializeThrown(serializeThrown(new TypeError('bad')));
    expect(plain).toBeInstanceOf(Error);
    expect(plain).toMatchObject({ name: 'TypeError', message: 'bad' });
    expect(plain).not.toHaveProperty('code');

    expect(deserializeThrown(serializeThrown('just a string'))).toBe('just a string');
  });
});
