import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openFolder, type FileFolder } from '../../src/core/formats/byte-source.ts';
import { openSafetensors, openSafetensorsFile } from '../../src/core/formats/safetensors.ts';
import { toFloat32 } from '../../src/core/formats/tensor.ts';
import { HttpError, ModelFileError } from '../../src/core/base/errors.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';
import { makeSafetensors, patternValues, type StTensor } from '../helpers/safetensors-fixture.ts';

// Values of the form k/128 with |k| ≤ 64 are exact in f32, f16 and bf16.
const A = patternValues(4 * 6, 1);
const B = patternValues(5, 2);
const C = patternValues(3 * 2 * 2, 3);
const BIG_ROWS = 512;
const BIG_COLS = 256; // 512×256 bf16 = 256 KiB
const BIG = patternValues(BIG_ROWS * BIG_COLS, 4);

const single: StTensor[] = [
  { name: 'model.a.weight', dtype: 'BF16', shape: [4, 6], values: A },
  { name: 'model.b.bias', dtype: 'F16', shape: [5], values: B },
  { name: 'model.c', dtype: 'F32', shape: [3, 2, 2], values: C },
  { name: 'model.scalar', dtype: 'F32', shape: [], values: [0.25] },
  { name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [BIG_ROWS, BIG_COLS], values: BIG },
];

let root: string;
let server: TestServer;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'safetensors-'));
  const w = async (dir: string, file: string, bytes: Uint8Array | string) => {
    await mkdir(join(root, dir), { recursive: true });
    await writeFile(join(root, dir, file), bytes);
  };
  await w('single', 'model.safetensors', makeSafetensors(single, { metadata: { format: 'pt' } }));

  // Sharded: two shards + index (HF layout).
  await w('sharded', 'model-00001-of-00002.safetensors', makeSafetensors(single.slice(0, 2)));
  await w('sharded', 'model-00002-of-00002.safetensors', makeSafetensors(single.slice(2)));
  const weightMap: Record<string, string> = {};
  single.forEach((t, i) => (weightMap[t.name] = `model-0000${i < 2 ? 1 : 2}-of-00002.safetensors`));
  await w('sharded', 'model.safetensors.index.json', JSON.stringify({ metadata: {}, weight_map: weightMap }));

  // Index naming a tensor that no shard holds.
  await w('bad-index', 'model-00001-of-00001.safetensors', makeSafetensors(single.slice(0, 2)));
  await w(
    'bad-index',
    'model.safetensors.index.json',
    JSON.stringify({ weight_map: { 'model.a.weight': 'model-00001-of-00001.safetensors', 'lm_head.weight': 'model-00001-of-00001.safetensors' } }),
  );
  await w('index-no-map', 'model.safetensors.index.json', JSON.stringify({ metadata: {} }));

  // Truncated in the middle of the big tensor.
  const full = makeSafetensors(single);
  await w('truncated', 'model.safetensors', full.subarray(0, full.byteLength - 1000));
  // Header length pointing past the end / garbage / wrong JSON.
  const bogus = new Uint8Array(64);
  new DataView(bogus.buffer).setBigUint64(0, 10_000n, true);
  await w('bad-length', 'model.safetensors', bogus);
  await w('tiny', 'model.safetensors', new Uint8Array(4));
  const notJson = new Uint8Array(8 + 8 + 4);
  new DataView(notJson.buffer).setBigUint64(0, 8n, true);
  notJson.set(new TextEncoder().encode('{"a": 1,'), 8);
  await w('not-json', 'model.safetensors', notJson);
  await w('i64', 'model.safetensors', makeSafetensors([...single.slice(0, 1), { name: 'position_ids', dtype: 'I64', shape: [3], values: [0, 1, 2] }]));
  await w(
    'shape-mismatch',
    'model.safetensors',
    makeSafetensors(single.slice(0, 1), { headerOverride: (h) => ({ ...h, 'model.a.weight': { ...(h['model.a.weight'] as object), shape: [4, 7] } }) }),
  );
  await w(
    'no-offsets',
    'model.safetensors',
    makeSafetensors(single.slice(0, 1), { headerOverride: (h) => ({ ...h, 'model.a.weight': { dtype: 'BF16', shape: [4, 6] } }) }),
  );
  await w(
    'header-array',
    'model.safetensors',
    makeSafetensors([], { headerOverride: () => [] as unknown as Record<string, unknown> }),
  );
  await w('empty-dir-marker', 'README', 'no weights here');
  server = await startTestServer(root);
});

afterAll(async () => {
  await server.close();
  await rm(root, { recursive: true, force: true });
});

/** Fast exact comparison of float arrays (vitest's toEqual walks element by element). */
const expectSame = (got: Float32Array, want: Float32Array) => {
  expect(got.length).toBe(want.length);
  expect(Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(0);
};

const expectValues = async (folder: FileFolder) => {
  const r = await openSafetensors(folder);
  expect(r.list()).toEqual([
    { name: 'model.a.weight', dtype: 'bf16', shape: [4, 6] },
    { name: 'model.b.bias', dtype: 'f16', shape: [5] },
    { name: 'model.c', dtype: 'f32', shape: [3, 2, 2] },
    { name: 'model.scalar', dtype: 'f32', shape: [] },
    { name: 'model.embed_tokens.weight', dtype: 'bf16', shape: [BIG_ROWS, BIG_COLS] },
  ]);
  expect(toFloat32(await r.read('model.a.weight'))).toEqual(A);
  expect(toFloat32(await r.read('model.b.bias'))).toEqual(B);
  expect(toFloat32(await r.read('model.c'))).toEqual(C);
  expect(toFloat32(await r.read('model.scalar'))).toEqual(new Float32Array([0.25]));
  expectSame(toFloat32(await r.read('model.embed_tokens.weight')), BIG);
  expect(r.has('model.c')).toBe(true);
  expect(r.has('nope')).toBe(false);
  return r;
};

describe.each([
  ['local directory', (d: string) => openFolder(join(root, d))],
  ['HTTP', (d: string) => openFolder(`${server.url}${d}/`, undefined, { retryDelayMs: 1 })],
])('safetensors over %s', (_kind, folder) => {
  it('reads BF16, F16 and F32 tensors of a single file exactly (metadata ignored)', async () => {
    await expectValues(folder('single'));
  });

  it('reads a sharded checkpoint through model.safetensors.index.json', async () => {
    const r = await expectValues(folder('sharded'));
    expect(r.file).toMatch(/sharded\/model\.safetensors\.index\.json$/);
  });

  it('readRows returns a slice of the first dimension', async () => {
    const r = await openSafetensors(folder('single'));
    const rows = await r.readRows('model.embed_tokens.weight', 100, 3);
    expect(rows.shape).toEqual([3, BIG_COLS]);
    expect(toFloat32(rows)).toEqual(BIG.subarray(100 * BIG_COLS, 103 * BIG_COLS));
    const last = await r.readRows('model.embed_tokens.weight', BIG_ROWS - 1, 1);
    expect(toFloat32(last)).toEqual(BIG.subarray((BIG_ROWS - 1) * BIG_COLS));
    expect((await r.readRows('model.a.weight', 2, 0)).bytes.byteLength).toBe(0);
    await expect(r.readRows('model.embed_tokens.weight', BIG_ROWS - 1, 2)).rejects.toThrow(/out of range/);
    await expect(r.readRows('model.embed_tokens.weight', -1, 1)).rejects.toThrow(ModelFileError);
  });

  it('an unknown tensor name is ModelFileMissing naming the tensor', async () => {
    const r = await openSafetensors(folder('single'));
    await expect(r.read('lm_head.weight')).rejects.toMatchObject({ code: 'ModelFileMissing', tensor: 'lm_head.weight' });
    await expect(r.readRows('lm_head.weight', 0, 1)).rejects.toMatchObject({ code: 'ModelFileMissing' });
  });

  it('a truncated file is a ModelFileError naming the file and the tensor', async () => {
    const err = await openSafetensors(folder('truncated')).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.code).toBe('ModelFileInvalid');
    expect(err.file).toMatch(/truncated\/model\.safetensors$/);
    expect(err.tensor).toBe('model.embed_tokens.weight');
    expect(err.message).toMatch(/truncated/);
  });

  it('an index entry with no tensor in its shard names the tensor', async () => {
    const err = await openSafetensors(folder('bad-index')).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.tensor).toBe('lm_head.weight');
  });

  it('an index without weight_map is a ModelFileError, not a TypeError', async () => {
    const err = await openSafetensors(folder('index-no-map')).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.message).toMatch(/weight_map/);
  });

  it.each([
    ['bad-length', /header length/],
    ['tiny', /not a safetensors file/],
    ['not-json', /header is not JSON/],
    ['header-array', /header/],
  ])('a malformed file (%s) is a ModelFileError', async (dir, msg) => {
    const err = await openSafetensors(folder(dir)).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.message).toMatch(msg);
    expect(err.message).toContain(`${dir}/model.safetensors`);
  });

  it('a header entry without data_offsets names the tensor', async () => {
    const err = await openSafetensors(folder('no-offsets')).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.tensor).toBe('model.a.weight');
  });

  it('a shape that does not match the byte count names the tensor', async () => {
    const err = await openSafetensors(folder('shape-mismatch')).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.tensor).toBe('model.a.weight');
  });

  it('an unsupported dtype is UnsupportedDType naming the tensor', async () => {
    const err = await openSafetensors(folder('i64')).catch((e) => e);
    expect(err).toMatchObject({ code: 'UnsupportedDType', tensor: 'position_ids' });
  });

  it('openSafetensorsFile opens one file directly', async () => {
    const r = await openSafetensorsFile(folder('sharded').open('model-00002-of-00002.safetensors'));
    expect(r.list().map((t) => t.name)).toEqual(['model.c', 'model.scalar', 'model.embed_tokens.weight']);
    expect(toFloat32(await r.read('model.c'))).toEqual(C);
  });
});

describe('safetensors specifics', () => {
  it('a missing local checkpoint is ModelFileMissing', async () => {
    await expect(openSafetensors(openFolder(join(root, 'empty-dir-marker')))).rejects.toMatchObject({
      code: 'ModelFileMissing',
    });
  });

  it('a missing remote checkpoint is ModelFileMissing naming the file, after trying both layouts', async () => {
    server.reset();
    const err = await openSafetensors(openFolder(`${server.url}empty-dir-marker/`)).catch((e) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.code).toBe('ModelFileMissing');
    expect(err.message).toContain(`${server.url}empty-dir-marker/model.safetensors: not found (nor model.safetensors.index.json)`);
    expect(server.count('empty-dir-marker/model.safetensors.index.json')).toBe(1);
  });

  it('a server error is not mistaken for a missing file', async () => {
    server.setFailures([{ path: 'tiny/model.safetensors', status: 403, times: 10 }]);
    const err = await openSafetensors(openFolder(`${server.url}tiny/`, fetch, { retries: 0 })).catch((e) => e);
    server.setFailures([]);
    expect(err).toBeInstanceOf(HttpError);
    expect(err.status).toBe(403);
  });

  it('over HTTP only the header and the requested bytes are downloaded (range requests)', async () => {
    server.reset();
    const r = await openSafetensors(openFolder(`${server.url}single/`));
    const path = 'single/model.safetensors';
    const headerBytes = server.bytesSent(path);
    expect(headerBytes).toBeLessThan(2000);
    await r.read('model.b.bias');
    expect(server.bytesSent(path) - headerBytes).toBe(10);
    await r.readRows('model.embed_tokens.weight', 7, 2);
    expect(server.bytesSent(path) - headerBytes).toBe(10 + 2 * BIG_COLS * 2);
    expect(server.fullGets(path)).toBe(0);
    expect(server.requests.filter((q) => q.path === path && q.method === 'GET').every((q) => q.status === 206)).toBe(true);
    // Reading the big tensor asks for exactly its bytes, once.
    const before = server.bytesSent(path);
    await r.read('model.embed_tokens.weight');
    expect(server.bytesSent(path) - before).toBe(BIG_ROWS * BIG_COLS * 2);
    expect(server.fullGets(path)).toBe(0);
  });

  it('a file truncated after opening fails the read with a ModelFileError naming file and tensor', async () => {
    const dir = join(root, 'shrinks');
    await mkdir(dir, { recursive: true });
    const bytes = makeSafetensors(single);
    await writeFile(join(dir, 'model.safetensors'), bytes);
    for (const folder of [openFolder(dir), openFolder(`${server.url}shrinks/`)]) {
      await writeFile(join(dir, 'model.safetensors'), bytes);
      const r = await openSafetensors(folder);
      await truncate(join(dir, 'model.safetensors'), bytes.byteLength - 100);
      const err = await r.read('model.embed_tokens.weight').catch((e) => e);
      expect(err).toBeInstanceOf(ModelFileError);
      expect(err.tensor).toBe('model.embed_tokens.weight');
      expect(err.message).toContain('shrinks/model.safetensors');
      expect(err.message).toMatch(/truncated/);
    }
  });

  it('an HTTP connection dropped while reading a tensor is retried transparently', async () => {
    const s = await startTestServer(root);
    try {
      const r = await openSafetensors(openFolder(`${s.url}single/`, undefined, { retryDelayMs: 1 }));
      s.setFailures([{ path: 'single/model.safetensors', dropAfterBytes: 1000, times: 1, method: 'GET' }]);
      s.reset();
      expectSame(toFloat32(await r.read('model.embed_tokens.weight')), BIG);
      expect(s.count('single/model.safetensors', 'GET')).toBe(2);
    } finally {
      await s.close();
    }
  });
});

// The tiny fixture checkpoints (single file and sharded), checked against the per-tensor SHA-256
// that the Python generator recorded in golden.json.
const FIXTURES = join(import.meta.dirname, '../fixtures');
const GOLDEN = join(FIXTURES, 'golden/golden.json');

describe('safetensors of the tiny fixture checkpoints', () => {
  let fixtureServer: TestServer;
  beforeAll(async () => {
    fixtureServer = await startTestServer(FIXTURES);
  });
  afterAll(async () => {
    await fixtureServer.close();
  });

  it('every tensor has the golden dtype, shape and SHA-256, locally and over HTTP', async () => {
    const golden = JSON.parse(readFileSync(GOLDEN, 'utf8'));
    for (const lm of golden.lm as { checkpoint: string; safetensors: { file: string; tensors: { name: string; dtype: string; shape: number[]; sha256: string }[] }[] }[]) {
      const expected = lm.safetensors.flatMap((f) => f.tensors);
      for (const folder of [openFolder(join(FIXTURES, lm.checkpoint)), openFolder(`${fixtureServer.url}${lm.checkpoint}/`)]) {
        const r = await openSafetensors(folder);
        expect(r.list().length).toBe(expected.length);
        for (const t of expected) {
          const got = await r.read(t.name);
          expect(got.dtype).toBe(t.dtype.toLowerCase());
          expect(got.shape).toEqual(t.shape);
          expect(createHash('sha256').update(got.bytes).digest('hex'), t.name).toBe(t.sha256);
        }
      }
    }
  });

  it('reading one layer norm over HTTP does not download the embedding', async () => {
    fixtureServer.reset();
    const r = await openSafetensors(openFolder(`${fixtureServer.url}tiny-simplear/`));
    await r.read('model.norm.weight');
    expect(fixtureServer.bytesSent('tiny-simplear/model.safetensors')).toBeLessThan(20_000);
    expect(fixtureServer.fullGets('tiny-simplear/model.safetensors')).toBe(0);
  });
});
