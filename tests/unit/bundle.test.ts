import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BUNDLE_VERSION,
  BundleError,
  BundleWriter,
  MemoryBundleSink,
  chunkFileName,
  memoryFolder,
  openBundle,
  parseManifest,
  writeBundle,
  type BundleManifest,
  type BundleSink,
  type WriteBundleOptions,
} from '../../src/core/bundle/index.ts';
import { createNodeBundleSink } from '../../src/core/bundle/node-sink.ts';
import { sha256, sha256Hex } from '../../src/core/base/sha256.ts';
import { openFolder } from '../../src/core/formats/byte-source.ts';
import { openSafetensors } from '../../src/core/formats/safetensors.ts';
import { toFloat32 } from '../../src/core/formats/tensor.ts';
import { loadTokenizer } from '../../src/core/formats/tokenizer.ts';
import { readModelConfig } from '../../src/core/formats/model-config.ts';
import { SimpleARError } from '../../src/core/base/errors.ts';
import type { LmSpec, NamedTensor } from '../../src/core/base/model-spec.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';

const LM: LmSpec = {
  hiddenSize: 8,
  numLayers: 1,
  numHeads: 2,
  numKvHeads: 1,
  headDim: 4,
  intermediateSize: 16,
  rmsNormEps: 1e-6,
  ropeTheta: 1e6,
  vocabSize: 64010,
  visualOffset: 10,
  visualCount: 64000,
  tieWordEmbeddings: true,
};

// A minimal valid tokenizer.json with the three specials (len = 10).
const TOKENIZER_JSON = {
  version: '1.0',
  added_tokens: [
    { id: 7, content: '<|endoftext|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
    { id: 8, content: '<|t2i|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
    { id: 9, content: '<|soi|>', special: true, normalized: false, lstrip: false, rstrip: false, single_word: false },
  ],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
  post_processor: null,
  decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
  model: { type: 'BPE', vocab: { a: 0, b: 1, c: 2, d: 3, e: 4, ab: 5, cd: 6 }, merges: [['a', 'b'], ['c', 'd']] },
};

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const tensor = (name: string, type: NamedTensor['type'], dims: number[], seed: number): NamedTensor => {
  const size = { float32: 4, float16: 2, int64: 8, int32: 4, uint8: 1, bool: 1 }[type];
  return { name, type, dims, raw: bytes(dims.reduce((a, b) => a * b, 1) * size, seed) };
};

const TENSORS: NamedTensor[] = [
  tensor('embed', 'float16', [40, 8], 1), // 640 B: spans chunks of 256
  tensor('norm', 'float32', [8], 2), // 32 B
  tensor('q4.weight', 'uint8', [16, 1, 4], 3), // 64 B
  tensor('scales', 'float16', [16, 1], 4),
  tensor('ids', 'int64', [3], 5),
  tensor('mask', 'bool', [5], 6),
  tensor('empty', 'float32', [0, 8], 7),
  tensor('scalar', 'int32', [], 8),
  tensor('big', 'float32', [100, 3], 9), // 1200 B
];

function options(extra: Partial<WriteBundleOptions> = {}): WriteBundleOptions {
  return {
    chunkSize: 256,
    model: { lm: LM, decoder: { kind: 'cosmos-dv', channels: 16, anything: [1, 2, 3] }, generation: { eosTokenIds: [7], repetitionPenalty: 1, source: 'config.json' } },
    tokenizer: {
      files: { 'tokenizer.json': JSON.stringify(TOKENIZER_JSON), 'tokenizer_config.json': '{"clean_up_tokenization_spaces": false}' },
      specialIds: { t2i: 8, soi: 9, endOfText: 7 },
      length: 10,
    },
    weights: { mode: 'q4', blockSize: 32, activations: 'f32' },
    sources: [{ role: 'lm', url: 'https://huggingface.co/Daniel0724/SimpleAR-0.5B-RL', revision: 'abc123', etags: { 'model.safetensors': '"e1"' } }],
    createdAt: new Date('2026-01-02T03:04:05Z'),
    ...extra,
  };
}

async function* grouped(): AsyncGenerator<NamedTensor | NamedTensor[]> {
  yield TENSORS[0]!;
  yield TENSORS.slice(1, 4);
  yield* TENSORS.slice(4);
}

/** Fast equality for big byte arrays (vitest's deep equality walks element by element). */
const sameBytes = (a: ArrayBufferView, b: ArrayBufferView) =>
  Buffer.compare(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  ) === 0;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('bundle writer and reader (memory sink)', () => {
  let sink: MemoryBundleSink;
  let manifest: BundleManifest;
  beforeAll(async () => {
    sink = new MemoryBundleSink();
    manifest = await writeBundle(sink, grouped(), options());
  });

  it('writes chunk files of exactly chunkSize bytes (the last shorter) with their SHA-256', () => {
    expect(sink.state).toBe('committed');
    const { chunks, layout } = manifest;
    expect(layout).toMatchObject({ chunkSize: 256, alignment: 64 });
    expect(chunks.length).toBeGreaterThan(5);
    chunks.forEach((c, i) => {
      expect(c.file).toBe(chunkFileName(i));
      const data = sink.files.get(c.file)!;
      expect(data.byteLength).toBe(c.byteLength);
      expect(data.buffer.byteLength).toBe(c.byteLength); // exact buffers (IndexedDB stores whole buffers)
      expect(c.sha256).toBe(sha(data));
      if (i < chunks.length - 1) expect(c.byteLength).toBe(256);
    });
    expect(layout.totalBytes).toBe(chunks.reduce((a, c) => a + c.byteLength, 0));
  });

  it('records every tensor with its type, dims, chunk, aligned offset and length', () => {
    expect(manifest.tensors.map((t) => t.name)).toEqual(TENSORS.map((t) => t.name));
    for (const t of manifest.tensors) {
      expect(t.offset % 64).toBe(0);
      const src = TENSORS.find((x) => x.name === t.name)!;
      expect(t).toMatchObject({ type: src.type, dims: src.dims, byteLength: src.raw.byteLength });
    }
    expect(manifest.files.map((f) => f.name)).toEqual(['tokenizer.json', 'tokenizer_config.json']);
  });

  it('keeps the model description, weights mode, sources and creation time', () => {
    expect(manifest).toMatchObject({
      format: 'simplear-bundle',
      version: BUNDLE_VERSION,
      createdAt: '2026-01-02T03:04:05.000Z',
      model: { lm: LM, decoder: { kind: 'cosmos-dv', channels: 16, anything: [1, 2, 3] } },
      weights: { mode: 'q4', blockSize: 32 },
      tokenizer: { files: ['tokenizer.json', 'tokenizer_config.json'], specialIds: { t2i: 8, soi: 9, endOfText: 7 }, length: 10 },
    });
    expect(manifest.sources[0]!.revision).toBe('abc123');
    const stored = JSON.parse(new TextDecoder().decode(sink.files.get('manifest.json')!));
    expect(stored).toEqual(manifest);
  });

  it('reads every tensor back byte for byte (including ones spanning chunks)', async () => {
    for (const verify of ['on-read', 'none'] as const) {
      const reader = await openBundle(sink.folder(), { verify });
      expect(reader.list().map((t) => t.name)).toEqual(TENSORS.map((t) => t.name));
      for (const t of TENSORS) {
        const got = await reader.read(t.name);
        expect(got).toEqual({ name: t.name, type: t.type, dims: t.dims, raw: t.raw });
        expect(got.raw.buffer.byteLength).toBe(t.raw.byteLength); // a copy, not a view of a chunk
      }
      expect(reader.has('embed')).toBe(true);
      expect(reader.has('nope')).toBe(false);
      await expect(reader.read('nope')).rejects.toMatchObject({ code: 'ModelFileMissing', tensor: 'nope' });
    }
  });

  it('readMany reads every tensor with each chunk read and hashed once, while the tokenizer reads too', async () => {
    const reads = new Map<string, number>();
    const base = sink.folder();
    const counting = {
      ...base,
      open(file: string) {
        const source = base.open(file);
        return {
          ...source,
          name: source.name,
          size: (s?: AbortSignal) => source.size(s),
          read(offset: number, length: number, s?: AbortSignal) {
            reads.set(file, (reads.get(file) ?? 0) + 1);
            return source.read(offset, length, s);
          },
        };
      },
    };
    const reader = await openBundle(counting);
    const done: number[] = [];
    const totals = new Set<number>();
    const [all] = await Promise.all([
      reader.readMany(undefined, { parallel: 3, onChunk: (n, total) => (done.push(n), totals.add(total)) }),
      reader.tokenizer(),
    ]);
    expect([...all.keys()]).toEqual(TENSORS.map((t) => t.name));
    for (const t of TENSORS) expect(all.get(t.name)).toEqual({ name: t.name, type: t.type, dims: t.dims, raw: t.raw });
    expect(Object.fromEntries([...reads].filter(([, n]) => n !== 1))).toEqual({});
    expect(reads.size).toBe(manifest.chunks.length);
    // onChunk counts the chunks holding tensors, 0..n (the tokenizer files' own chunks are not the weights').
    const holding = new Set<number>();
    for (const e of manifest.tensors) for (let c = e.chunk; c * 256 < e.chunk * 256 + e.offset + e.byteLength; c++) holding.add(c);
    expect(done).toEqual([0, ...[...holding].map((_, i) => i + 1)]);
    expect([...totals]).toEqual([holding.size]);
    // A tensor inside one chunk is a view of it; one that spans chunks is its own copy.
    for (const e of manifest.tensors) {
      const raw = all.get(e.name)!.raw;
      const inOne = e.offset + e.byteLength <= manifest.chunks[e.chunk]!.byteLength;
      expect(raw.buffer.byteLength).toBe(inOne ? manifest.chunks[e.chunk]!.byteLength : e.byteLength);
    }
    expect(manifest.tensors.some((e) => e.offset + e.byteLength > manifest.chunks[e.chunk]!.byteLength)).toBe(true);
    // A subset, and the verify: 'none' path, give the same bytes.
    const trusting = await openBundle(sink.folder(), { verify: 'none' });
    const some = await trusting.readMany(['norm', 'big']);
    expect(some.get('big')!.raw).toEqual(TENSORS.at(-1)!.raw);
    expect([...some.keys()]).toEqual(['norm', 'big']);
  });

  it('readMany rejects with BundleInvalid naming a corrupted chunk', async () => {
    const files = new Map(sink.files);
    const victim = manifest.chunks[1]!.file;
    const copy = files.get(victim)!.slice();
    copy[3]! ^= 0x01;
    files.set(victim, copy);
    const reader = await openBundle(memoryFolder(files));
    await expect(reader.readMany()).rejects.toMatchObject({ code: 'BundleInvalid', details: { chunk: victim } });
  });

  it('embeds the tokenizer files and rebuilds the tokenizer from them', async () => {
    const reader = await openBundle(sink.folder());
    expect(await reader.readJsonFile('tokenizer.json')).toEqual(TOKENIZER_JSON);
    const tok = await reader.tokenizer();
    expect(tok.length).toBe(10);
    expect(tok.specialIds).toEqual({ t2i: 8, soi: 9, endOfText: 7 });
    expect(tok.encode('<|t2i|>abcd<|soi|>')).toEqual([8, 5, 6, 9]);
    await expect(reader.readFile('missing.txt')).rejects.toMatchObject({ code: 'ModelFileMissing' });
  });

  it('verify() checks every chunk', async () => {
    const reader = await openBundle(sink.folder());
    const seen: number[] = [];
    await reader.verify({ onProgress: (p) => seen.push(p.chunksDone) });
    expect(seen).toEqual(manifest.chunks.map((_, i) => i + 1));
  });

  it('a corrupted chunk is BundleInvalid naming the chunk, on read and in verify()', async () => {
    const files = new Map(sink.files);
    const bad = manifest.tensors.find((t) => t.name === 'big')!;
    const victim = manifest.chunks[bad.chunk]!.file;
    const copy = files.get(victim)!.slice();
    copy[10]! ^= 0xff;
    files.set(victim, copy);
    const reader = await openBundle(memoryFolder(files));
    const err = await reader.read('big').catch((e) => e);
    expect(err).toBeInstanceOf(BundleError);
    expect(err.code).toBe('BundleInvalid');
    expect(err.details.chunk).toBe(victim);
    expect(err.message).toContain(victim);
    expect(err.message).toMatch(/SHA-256/);
    // Tensors in healthy chunks still read.
    expect((await reader.read('norm')).raw).toEqual(TENSORS[1]!.raw);
    await expect(reader.verify()).rejects.toMatchObject({ code: 'BundleInvalid', details: { chunk: victim } });
    // Without hashing the corruption goes unnoticed: that is what verify: 'none' means.
    const trusting = await openBundle(memoryFolder(files), { verify: 'none' });
    expect((await trusting.read('big')).raw).not.toEqual(TENSORS.at(-1)!.raw);
  });

  it('a missing or short chunk is BundleInvalid naming the chunk', async () => {
    const files = new Map(sink.files);
    files.delete(chunkFileName(0));
    const reader = await openBundle(memoryFolder(files));
    await expect(reader.read('embed')).rejects.toMatchObject({ code: 'BundleInvalid', details: { chunk: chunkFileName(0) } });
    const files2 = new Map(sink.files);
    files2.set(chunkFileName(1), files2.get(chunkFileName(1))!.slice(0, 100));
    const r2 = await openBundle(memoryFolder(files2));
    await expect(r2.verify()).rejects.toMatchObject({ code: 'BundleInvalid', details: { chunk: chunkFileName(1) } });
  });

  it('a folder without manifest.json is not a bundle (ModelFileMissing)', async () => {
    await expect(openBundle(memoryFolder(new Map()))).rejects.toMatchObject({ code: 'ModelFileMissing' });
  });
});

describe('bundle writer input checks and failure handling', () => {
  it('rejects a tensor whose bytes do not match its dims', async () => {
    const w = new BundleWriter(new MemoryBundleSink(), { chunkSize: 256 });
    await expect(w.addTensor({ name: 'x', type: 'float32', dims: [3], raw: new Uint8Array(8) })).rejects.toMatchObject({
      code: 'BundleInvalid',
      details: { tensor: 'x' },
    });
  });

  it('rejects duplicate names and chunk sizes that are not a multiple of the alignment', async () => {
    const w = new BundleWriter(new MemoryBundleSink(), { chunkSize: 256 });
    await w.addTensor(TENSORS[1]!);
    await expect(w.addTensor(TENSORS[1]!)).rejects.toThrow(/added twice/);
    expect(() => new BundleWriter(new MemoryBundleSink(), { chunkSize: 100 })).toThrow(SimpleARError);
    expect(() => new BundleWriter(new MemoryBundleSink(), { chunkSize: 0 })).toThrow(SimpleARError);
  });

  it('aborts the sink when the tensor stream fails, and rethrows', async () => {
    const sink = new MemoryBundleSink();
    async function* failing() {
      yield TENSORS[0]!;
      throw new Error('source broke');
    }
    await expect(writeBundle(sink, failing(), options())).rejects.toThrow('source broke');
    expect(sink.state).toBe('aborted');
    expect(sink.files.size).toBe(0);
    expect(sink.stagedCount).toBe(0);
  });

  it('aborts the sink when the signal fires', async () => {
    const sink = new MemoryBundleSink();
    const ac = new AbortController();
    async function* slow() {
      yield TENSORS[0]!;
      ac.abort();
      yield TENSORS[1]!;
    }
    const err = await writeBundle(sink, slow(), options({ signal: ac.signal })).catch((e) => e);
    expect(err.name).toBe('AbortError');
    expect(sink.state).toBe('aborted');
  });

  it('aborts when the sink itself fails (e.g. quota)', async () => {
    const mem = new MemoryBundleSink();
    let aborted = false;
    const sink: BundleSink = {
      putChunk: async (i, b) => {
        if (i === 2) throw new SimpleARError('QuotaExceeded', 'full');
        await mem.putChunk(i, b);
      },
      putManifest: (j) => mem.putManifest(j),
      commit: () => mem.commit(),
      abort: async () => {
        aborted = true;
      },
    };
    await expect(writeBundle(sink, TENSORS, options())).rejects.toMatchObject({ code: 'QuotaExceeded' });
    expect(aborted).toBe(true);
  });

  it('reports progress', async () => {
    const seen: number[] = [];
    await writeBundle(new MemoryBundleSink(), TENSORS, options({ onProgress: (p) => seen.push(p.tensors) }));
    expect(seen.at(-1)).toBe(TENSORS.length);
  });

  it('handles a tensor much larger than a chunk, and the default 32 MiB chunk size', async () => {
    const huge = tensor('huge', 'uint8', [5 * 1024 * 1024 + 3], 11);
    for (const chunkSize of [1024 * 1024, undefined]) {
      const sink = new MemoryBundleSink();
      const m = await writeBundle(sink, [TENSORS[1]!, huge, TENSORS[2]!], options({ chunkSize }));
      expect(m.layout.chunkSize).toBe(chunkSize ?? 32 * 1024 * 1024);
      const r = await openBundle(sink.folder());
      expect(sameBytes((await r.read('huge')).raw, huge.raw)).toBe(true);
      expect((await r.read('q4.weight')).raw).toEqual(TENSORS[2]!.raw);
    }
  });
});

describe('SHA-256', () => {
  it('the fallback without WebCrypto matches node:crypto at every padding boundary', async () => {
    for (let n = 0; n <= 200; n++) {
      const b = bytes(n, n);
      expect(Buffer.from(await sha256(b)).toString('hex')).toBe(sha(b));
    }
    const big = bytes(1_000_003, 3).subarray(5, 1_000_001); // unaligned view
    expect(Buffer.from(await sha256(big)).toString('hex')).toBe(sha(big));
  });

  it('sha256Hex works without WebCrypto (insecure http pages have no crypto.subtle)', async () => {
    const b = bytes(5000, 1);
    expect(await sha256Hex(b)).toBe(sha(b));
    vi.stubGlobal('crypto', {});
    try {
      expect(globalThis.crypto.subtle).toBeUndefined();
      expect(await sha256Hex(b)).toBe(sha(b));
    } finally {
      vi.unstubAllGlobals();
    }
    expect(globalThis.crypto.subtle).toBeDefined();
  });
});

describe('manifest validation', () => {
  let good: BundleManifest;
  beforeAll(async () => {
    good = await writeBundle(new MemoryBundleSink(), TENSORS, options());
  });
  const mutate = (f: (m: BundleManifest) => void) => {
    const m = structuredClone(good);
    f(m);
    return () => parseManifest(m, 'x/manifest.json');
  };

  it('accepts what the writer wrote', () => {
    expect(parseManifest(structuredClone(good))).toEqual(good);
  });

  it.each<[string, (m: BundleManifest) => void, RegExp]>([
    ['another format', (m) => ((m as { format: string }).format = 'zip'), /not a simplear-bundle/],
    ['a newer version', (m) => ((m as { version: number }).version = 2), /newer version/],
    ['a tensor past the data', (m) => (m.tensors[0]!.chunk = 999), /outside/],
    ['dims that do not match', (m) => (m.tensors[1]!.dims = [9]), /byteLength/],
    ['an unknown type', (m) => ((m.tensors[1] as { type: string }).type = 'bfloat16'), /unknown type/],
    ['a short middle chunk', (m) => (m.chunks[0]!.byteLength = 200), /chunk size/],
    ['a bad hash', (m) => (m.chunks[0]!.sha256 = 'xyz'), /sha256/],
    ['a duplicate tensor', (m) => m.tensors.push(m.tensors[0]!), /twice/],
    ['a wrong total', (m) => (m.layout.totalBytes += 1), /totalBytes/],
    ['tokenizer length ≠ visual offset', (m) => (m.tokenizer.length = 11), /visualOffset/],
    ['an unlisted tokenizer file', (m) => m.tokenizer.files.push('vocab.json'), /vocab\.json/],
    ['no decoder', (m) => delete (m.model as { decoder?: unknown }).decoder, /decoder/],
  ])('rejects %s with BundleInvalid', (_what, f, msg) => {
    const run = mutate(f);
    expect(run).toThrow(BundleError);
    expect(run).toThrow(msg);
    expect(run).toThrow(/x\/manifest\.json/);
  });
});

describe('Node directory sink + reading over local dir and HTTP', () => {
  let root: string;
  let server: TestServer;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'bundle-'));
    server = await startTestServer(root);
  });
  afterAll(async () => {
    await server.close();
    await rm(root, { recursive: true, force: true });
  });

  it('writes into a partial directory and renames it to <out> on commit', async () => {
    const out = join(root, 'models', 'b1');
    const sink = await createNodeBundleSink(out);
    expect(sink.partialDir.startsWith(`${out}.partial-`)).toBe(true);
    const m = await writeBundle(sink, grouped(), options());
    const files = (await readdir(out)).sort();
    expect(files).toEqual(['manifest.json', ...m.chunks.map((c) => c.file)].sort());
    expect(await readdir(join(root, 'models'))).toEqual(['b1']); // no partial left behind
    for (const c of m.chunks) expect(sha(new Uint8Array(await readFile(join(out, c.file))))).toBe(c.sha256);
  });

  it('never leaves anything at <out> when the conversion fails', async () => {
    const out = join(root, 'models', 'b2');
    async function* failing() {
      yield* TENSORS.slice(0, 5);
      throw new Error('network gone');
    }
    await expect(writeBundle(await createNodeBundleSink(out), failing(), options())).rejects.toThrow('network gone');
    expect(existsSync(out)).toBe(false);
    expect((await readdir(join(root, 'models'))).filter((f) => f.startsWith('b2'))).toEqual([]);
  });

  it('refuses to overwrite an existing bundle unless asked, and then replaces it whole', async () => {
    const out = join(root, 'models', 'b1');
    await expect(createNodeBundleSink(out)).rejects.toThrow(/already exists/);
    const m = await writeBundle(await createNodeBundleSink(out, { overwrite: true }), [TENSORS[1]!], options());
    expect((await readdir(out)).sort()).toEqual(['manifest.json', ...m.chunks.map((c) => c.file)].sort());
    expect((await readdir(join(root, 'models'))).filter((f) => f.startsWith('b1'))).toEqual(['b1']);
    // put the full bundle back for the next tests
    await writeBundle(await createNodeBundleSink(out, { overwrite: true }), grouped(), options());
  });

  it('reads the same bundle from a local directory and over HTTP', async () => {
    for (const folder of [openFolder(join(root, 'models', 'b1')), openFolder(`${server.url}models/b1/`)]) {
      const reader = await openBundle(folder);
      for (const t of TENSORS) expect((await reader.read(t.name)).raw).toEqual(t.raw);
      await reader.verify();
      expect((await reader.tokenizer()).length).toBe(10);
    }
  });

  it('over HTTP, verified chunks are fetched once and cached; verify "none" uses small range requests', async () => {
    const base = `${server.url}models/b1/`;
    server.reset();
    const reader = await openBundle(openFolder(base));
    await reader.read('norm');
    await reader.read('q4.weight');
    await reader.read('norm');
    const m = reader.manifest;
    const chunk = m.chunks[m.tensors.find((t) => t.name === 'norm')!.chunk]!.file;
    expect(server.count(`models/b1/${chunk}`, 'GET')).toBe(1);

    server.reset();
    const ranged = await openBundle(openFolder(base), { verify: 'none' });
    await ranged.read('norm');
    const req = server.requests.find((r) => r.path === `models/b1/${chunk}`)!;
    expect(req).toMatchObject({ status: 206, bytesSent: 32 });
  });

  it('a chunk corrupted on disk / on the server is BundleInvalid naming it', async () => {
    const dir = join(root, 'models', 'b1');
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as BundleManifest;
    const victim = m.chunks[2]!.file;
    const data = await readFile(join(dir, victim));
    data[0] ^= 1;
    await writeFile(join(dir, victim), data);
    for (const folder of [openFolder(dir), openFolder(`${server.url}models/b1/`)]) {
      const err = await (await openBundle(folder)).verify().catch((e) => e);
      expect(err).toMatchObject({ code: 'BundleInvalid', details: { chunk: victim } });
    }
    data[0] ^= 1;
    await writeFile(join(dir, victim), data);
    await truncate(join(dir, m.chunks[3]!.file), 10);
    for (const folder of [openFolder(dir), openFolder(`${server.url}models/b1/`)]) {
      const err = await (await openBundle(folder)).verify().catch((e) => e);
      expect(err).toMatchObject({ code: 'BundleInvalid', details: { chunk: m.chunks[3]!.file } });
    }
  });

  it('a broken manifest.json is BundleInvalid', async () => {
    const dir = join(root, 'models', 'broken');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'manifest.json'), '{"format": "simplear-bundle", ');
    await expect(openBundle(openFolder(dir))).rejects.toMatchObject({ code: 'BundleInvalid' });
  });
});

const FIXTURE = join(import.meta.dirname, '../fixtures/tiny-simplear');

describe('tiny fixture checkpoint → bundle', () => {
  it('streams the checkpoint into a bundle and reads every tensor back', async () => {
    const folder = openFolder(FIXTURE);
    const tok = await loadTokenizer(folder);
    const cfg = await readModelConfig(folder, tok.length);
    const st = await openSafetensors(folder);
    async function* tensors(): AsyncGenerator<NamedTensor> {
      for (const info of st.list()) {
        const f32 = toFloat32(await st.read(info.name));
        yield { name: info.name, type: 'float32', dims: info.shape, raw: new Uint8Array(f32.buffer) };
      }
    }
    const sink = new MemoryBundleSink();
    const manifest = await writeBundle(sink, tensors(), {
      chunkSize: 4 * 1024 * 1024,
      model: { lm: cfg.lm, decoder: {}, generation: cfg.generation },
      tokenizer: {
        files: {
          'tokenizer.json': (await folder.readOptional('tokenizer.json'))!,
          'tokenizer_config.json': (await folder.readOptional('tokenizer_config.json'))!,
        },
        specialIds: tok.specialIds,
        length: tok.length,
      },
      weights: { mode: 'f32' },
      sources: [{ role: 'lm', url: FIXTURE }],
    });
    expect(manifest.chunks.length).toBeGreaterThan(3);
    const reader = await openBundle(sink.folder());
    await reader.verify();
    for (const info of st.list()) {
      const got = await reader.read(info.name);
      expect(got.dims).toEqual(info.shape);
      expect(sameBytes(got.raw, toFloat32(await st.read(info.name))), info.name).toBe(true);
    }
    const btok = await reader.tokenizer();
    expect(btok.encode('<|t2i|>A highly realistic image of a red cat<|soi|>')).toEqual(
      tok.encode('<|t2i|>A highly realistic image of a red cat<|soi|>'),
    );
  });
});
