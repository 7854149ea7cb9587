// The engine API scenario (tests/helpers/engine-scenario.ts) against EngineHost in Node
// (onnxruntime-node): directly, and through the worker's bridge and EngineClient over a
// MessageChannel. tests/e2e/engine-host-worker.test.ts runs the same scenario through the real
// worker in Chromium.
import type * as Comlink from 'comlink';
import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { createNodeEngineHost } from '../../src/cli/node-host.ts';
import { EngineClient } from '../../src/client/engine-client.ts';
import { exposeEngine } from '../../src/client/engine-bridge.ts';
import { installErrorTransfer } from '../../src/client/error-transfer.ts';
import type { ModelSource } from '../../src/core/store/types.ts';
import { FIXTURES, goldenGreedy } from '../helpers/fixture-model.ts';
import { PortWorker } from '../helpers/port-worker.ts';
import { expectScenario, runEngineScenario } from '../helpers/engine-scenario.ts';

const SOURCE: ModelSource = { kind: 'original', model: join(FIXTURES, 'tiny-simplear-b'), vq: join(FIXTURES, 'tiny-cosmos-b') };
const golden = goldenGreedy('tiny-simplear-b');

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('EngineHost', () => {
  it('runs the scenario in Node on the CPU EP', async () => {
    const host = createNodeEngineHost();
    cleanups.push(() => host.dispose());
    const outcome = await runEngineScenario(host, SOURCE, golden.prompt);
    expect(outcome.backend).toBe('cpu');
    expectScenario(outcome, golden.greedy.codes);
  });

  it('runs the same scenario through the worker bridge and EngineClient', async () => {
    installErrorTransfer();
    const host = createNodeEngineHost();
    const { port1, port2 } = new MessageChannel();
    exposeEngine(host, port1 as unknown as Comlink.Endpoint);
    const client = new EngineClient({ startWorker: () => new PortWorker(port2) as unknown as Worker });
    cleanups.push(() => host.dispose(), () => port1.close(), () => client.dispose());
    const outcome = await runEngineScenario(client, SOURCE, golden.prompt);
    expect(outcome.backend).toBe('cpu');
    expectScenario(outcome, golden.greedy.codes);
  });

  it('without a model store, prepareModel rejects and says what to use', async () => {
    const host = createNodeEngineHost();
    await expect(host.prepareModel({ kind: 'bundle', url: 'https://models.test/tiny/' })).rejects.toMatchObject({ code: 'InvalidSettings' });
  });
});
