// inspectCheckpoint: per-tensor SHA-256 of the original files, equal to the reference digests in
// golden.json (computed by Python), from a local folder and over HTTP with range requests only.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { inspectCheckpoint } from '../../src/core/formats/inspect-checkpoint.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
interface Golden {
  lm: { checkpoint: string; safetensors: { tensors: { name: string; shape: number[]; sha256: string }[] }[] }[];
  decoder: { checkpoint: string; jit_tensors: { name: string; shape: number[]; sha256: string }[] }[];
}
const golden = JSON.parse(readFileSync(join(FIXTURES, 'golden/golden.json'), 'utf8')) as Golden;

const expected = (checkpoint: string) => {
  const lm = golden.lm.find((c) => c.checkpoint === checkpoint);
  const dec = golden.decoder.find((c) => c.checkpoint === checkpoint);
  const tensors = lm ? lm.safetensors.flatMap((s) => s.tensors) : dec!.jit_tensors;
  return new Map(tensors.map((t) => [t.name, { shape: t.shape, sha256: t.sha256 }]));
};

const digests = (tensors: { name: string; shape: number[]; sha256: string }[]) =>
  new Map(tensors.map((t) => [t.name, { shape: t.shape, sha256: t.sha256 }]));

describe('inspectCheckpoint', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(FIXTURES);
  });
  afterAll(() => server?.close());

  for (const checkpoint of ['tiny-simplear', 'tiny-simplear-b', 'tiny-cosmos', 'tiny-cosmos-b']) {
    it(`${checkpoint}: local digests equal the reference`, async () => {
      const got = await inspectCheckpoint(openFolder(join(FIXTURES, checkpoint)));
      expect(digests(got.tensors)).toEqual(expected(checkpoint));
    });
  }

  it('over HTTP: the same digests, with range requests and no full download of a weight file', async () => {
    server.reset();
    const got = await inspectCheckpoint(openFolder(`${server.url}tiny-simplear-b/`));
    expect(digests(got.tensors)).toEqual(expected('tiny-simplear-b'));
    for (const shard of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      const path = `tiny-simplear-b/${shard}`;
      expect(server.requests.filter((r) => r.path === path && r.range).length).toBeGreaterThan(0);
      expect(server.fullGets(path)).toBe(0);
    }
    const dec = await inspectCheckpoint(openFolder(`${server.url}tiny-cosmos/`));
    expect(digests(dec.tensors)).toEqual(expected('tiny-cosmos'));
    expect(server.fullGets('tiny-cosmos/decoder.jit')).toBe(0);
  });

  it('told which part the folder holds, asks only for files that exist', async () => {
    server.reset();
    const got = await inspectCheckpoint(openFolder(`${server.url}tiny-cosmos-b/`), { parts: ['decoder'] });
    expect(digests(got.tensors)).toEqual(expected('tiny-cosmos-b'));
    expect(server.requests.length).toBeGreaterThan(0);
    expect(server.requests.filter((r) => r.status >= 400)).toEqual([]);
    expect(new Set(server.requests.map((r) => r.path))).toEqual(new Set(['tiny-cosmos-b/decoder.jit']));
  });

  it('a folder with no checkpoint is a typed error naming it', async () => {
    await expect(inspectCheckpoint(openFolder(join(FIXTURES, 'golden')))).rejects.toMatchObject({ code: 'ModelFileMissing' });
  });
});
