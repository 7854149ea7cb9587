// Issue #3 item 10: the engine worker in a real Chromium reads the tiny fixture checkpoints in
// their original formats over HTTP from another origin, with range requests only, and every
// tensor's SHA-256 equals Node's reading of the same files (and the Python reference digests).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineClient } from '../../src/client/engine-client.ts';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { inspectCheckpoint, type CheckpointInspection } from '../../src/core/formats/inspect-checkpoint.ts';
import type { TestServer } from '../helpers/http-server.ts';
import { openFixtureApp, type AppSession, type FixtureApp } from './browser.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const golden = JSON.parse(readFileSync(join(FIXTURES, 'golden/golden.json'), 'utf8')) as {
  lm: { checkpoint: string; safetensors: { tensors: { name: string; sha256: string }[] }[] }[];
  decoder: { checkpoint: string; jit_tensors: { name: string; sha256: string }[] }[];
};

declare const simplear: { client: EngineClient };

let fixture: FixtureApp;
let files: TestServer;
let session: AppSession;

beforeAll(async () => {
  fixture = await openFixtureApp();
  ({ files, session } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

/** name, dtype, shape and digest of each tensor (the file names differ: URL vs local path). */
const digests = (r: CheckpointInspection) => r.tensors.map(({ name, dtype, shape, sha256 }) => ({ name, dtype, shape, sha256 }));

describe('the worker reads original checkpoints over HTTP', () => {
  for (const [checkpoint, part, weightFiles] of [
    ['tiny-simplear-b', 'lm', ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']],
    ['tiny-cosmos', 'decoder', ['decoder.jit']],
  ] as const) {
    it(`${checkpoint}: per-tensor SHA-256 equal Node's, read with range requests only`, async () => {
      files.reset();
      const base = new URL(`${checkpoint}/`, files.url).href;
      // Told which part the folder holds, the worker asks only for files that exist (no 404s).
      const inWorker = await session.page.evaluate(([url, p]) => simplear.client.inspectCheckpoint(url, { parts: [p] }), [base, part] as const);
      const inNode = await inspectCheckpoint(openFolder(join(FIXTURES, checkpoint)));

      expect(inWorker.tensors.length).toBeGreaterThan(20);
      // The only miss allowed is the layout probe: the single-file name is tried first (the
      // released 0.5B layout), so a sharded checkpoint answers one HEAD with 404.
      const misses = files.requests.filter((r) => r.status >= 400);
      expect(misses.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual(
        part === 'lm' && weightFiles.length > 1 ? [`HEAD ${checkpoint}/model.safetensors 404`] : [],
      );
      expect(digests(inWorker)).toEqual(digests(inNode));
      const reference = golden.lm.find((c) => c.checkpoint === checkpoint)?.safetensors.flatMap((s) => s.tensors) ??
        golden.decoder.find((c) => c.checkpoint === checkpoint)!.jit_tensors;
      expect(new Map(inWorker.tensors.map((t) => [t.name, t.sha256]))).toEqual(new Map(reference.map((t) => [t.name, t.sha256])));

      for (const file of weightFiles) {
        const path = `${checkpoint}/${file}`;
        const ranged = files.requests.filter((r) => r.path === path && r.method === 'GET' && r.range);
        expect(ranged.length, path).toBeGreaterThan(0);
        expect(ranged.every((r) => r.status === 206), path).toBe(true);
        expect(files.fullGets(path), `${path}: no full download`).toBe(0);
      }
      session.console.assertClean([/404.*\/tiny-simplear-b\/model\.safetensors\)?$/]);
    });
  }
});
