// The conversion pipeline (convert-model.ts) and the bundle loader (model-bundle.ts) on the tiny
// fixtures: what the manifest records, that the bundle holds exactly the converters' tensors in
// every weight format, that it feeds the engine (greedy tokens = the PyTorch reference), the
// live-preview fit, conversion over HTTP (range requests, ETags), and that failures and aborts
// leave no bundle behind.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { ModelFileError } from '../../src/core/base/errors.ts';
import { openFolder, type FileFolder } from '../../src/core/formats/byte-source.ts';
import { readModelConfig } from '../../src/core/formats/model-config.ts';
import { openSafetensors } from '../../src/core/formats/safetensors.ts';
import { loadTokenizer } from '../../src/core/formats/tokenizer.ts';
import { openTorchScript } from '../../src/core/formats/torchscript/index.ts';
import { MemoryBundleSink, type BundleManifest } from '../../src/core/bundle/index.ts';
import { createNodeBundleSink } from '../../src/core/bundle/node-sink.ts';
import {
  PREVIEW_GRID,
  PREVIEW_SEED,
  convertModel,
  fitPreview,
  lmTensorCount,
  previewGridCodes,
  type ConvertProgress,
} from '../../src/core/convert/convert-model.ts';
import { collectLmWeights, type LmWeightFormat } from '../../src/core/convert/lm-weights.ts';
import { collectWeights, convertDecoderWeights, decoderWeightPlan, describeDecoderFile } from '../../src/core/model/decoder.ts';
import { DECODER_PREFIX, LM_PREFIX, openModelBundle } from '../../src/core/runtime/model-bundle.ts';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
const LM = join(FIXTURES, 'tiny-simplear');
const VQ = join(FIXTURES, 'tiny-cosmos');
const CREATED = new Date('2026-01-01T00:00:00Z');
const golden = JSON.parse(readFileSync(join(FIXTURES, 'golden/golden.json'), 'utf8')) as {
  lm: { checkpoint: string; prompt: string; greedy: { steps: number; codes: number[] } }[];
};

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && Buffer.from(a).equals(Buffer.from(b));

/** A folder whose reads of `file` at offsets in [from, to) fail as a truncated file's would. */
function failingFolder(inner: FileFolder, file: string, from: number, to: number): FileFolder {
  return {
    base: inner.base,
    readOptional: (f, s) => inner.readOptional(f, s),
    open(f) {
      const src = inner.open(f);
      if (f !== file) return src;
      return {
        name: src.name,
        size: (s) => src.size(s),
        async read(offset, length, s) {
          if (offset >= from && offset < to) throw new ModelFileError(src.name, `truncated: no bytes at offset ${offset}`);
          return src.read(offset, length, s);
        },
      };
    },
  };
}

describe('convertModel → model bundle', () => {
  let manifest: BundleManifest;
  let sink: MemoryBundleSink;
  const progress: ConvertProgress[] = [];

  beforeAll(async () => {
    sink = new MemoryBundleSink();
    manifest = await convertModel({
      model: openFolder(LM),
      decoder: openFolder(VQ),
      sink,
      weights: 'f32',
      ort,
      createdAt: CREATED,
      chunkSize: 1 << 20,
      onProgress: (p) => progress.push(p),
    });
  });

  it('records the LM and decoder descriptions, tokenizer, weights, generation config and sources', async () => {
    const tok = await loadTokenizer(openFolder(LM));
    const cfg = await readModelConfig(openFolder(LM), tok.length);
    const spec = await describeDecoderFile(await openTorchScript(openFolder(VQ).open('decoder.jit')));
    expect(sink.state).toBe('committed');
    expect(manifest.createdAt).toBe(CREATED.toISOString());
    expect(manifest.model.lm).toEqual(cfg.lm);
    expect(manifest.model.decoder).toEqual(spec);
    expect(manifest.model.generation).toEqual(cfg.generation);
    expect(manifest.tokenizer).toEqual({ files: ['tokenizer.json', 'tokenizer_config.json'], specialIds: tok.specialIds, length: 466 });
    expect(manifest.weights).toEqual({ mode: 'f32', lm: 'f32', blockSize: 32, decoder: 'f32', decoderFused: false });
    expect(manifest.sources).toEqual([
      { role: 'lm', url: LM },
      { role: 'decoder', url: VQ },
    ]);
    expect(manifest.chunks.length).toBeGreaterThan(3);
  });

  it('reports progress per phase, ending at the totals', () => {
    expect([...new Set(progress.map((p) => p.phase))]).toEqual(['open', 'decoder', 'preview', 'lm', 'finish']);
    for (const phase of ['decoder', 'lm'] as const) {
      const ps = progress.filter((p) => p.phase === phase);
      const last = ps.at(-1)!;
      expect(last.tensors).toBe(last.tensorsTotal);
      expect(last.bytes).toBe(last.bytesTotal);
      expect(last.bytesTotal).toBeGreaterThan(0);
      for (let i = 1; i < ps.length; i++) expect(ps[i]!.bytes).toBeGreaterThanOrEqual(ps[i - 1]!.bytes);
    }
  });

  it('opens as a model bundle: specs, tokenizer and weights come back', async () => {
    const bundle = await openModelBundle(sink.folder());
    expect(bundle.lm).toEqual(manifest.model.lm);
    expect(bundle.weights.lm).toBe('f32');
    const tok = await bundle.tokenizer();
    expect(tok.encode('<|t2i|>a red cat<|soi|>')).toEqual((await loadTokenizer(openFolder(LM))).encode('<|t2i|>a red cat<|soi|>'));
    const lm = await bundle.loadLmWeights();
    expect([...lm.keys()].length).toBe(lmTensorCount(bundle.lm, 'f32', false));
    const dec = await bundle.loadDecoderWeights();
    expect([...dec.keys()]).toEqual(decoderWeightPlan(bundle.decoder).map((e) => e.name));
    expect(manifest.tensors.every((t) => t.name.startsWith(LM_PREFIX) || t.name.startsWith(DECODER_PREFIX))).toBe(true);
  });

  it('stores the live-preview map fitted by the converted decoder on the seeded 16×16 grid', async () => {
    const preview = manifest.model.preview!;
    expect(preview.grid).toEqual(PREVIEW_GRID);
    expect(preview.seed).toBe(PREVIEW_SEED);
    expect(preview.map).toHaveLength(21);
    expect(preview.map.every(Number.isFinite)).toBe(true);
    const codes = previewGridCodes(64000);
    expect(codes).toHaveLength(256);
    expect(new Set(codes).size).toBeGreaterThan(250);
    const bundle = await openModelBundle(sink.folder());
    const refit = await fitPreview(ort, bundle.decoder, await bundle.loadDecoderWeights());
    expect(refit).toEqual(preview);
  });

  it('feeds the engine: greedy CFG tokens equal the PyTorch reference', async () => {
    const bundle = await openModelBundle(sink.folder());
    const model = await bundle.loadModel();
    expect(model.preview).toEqual(manifest.model.preview!.map);
    const ref = golden.lm.find((c) => c.checkpoint === 'tiny-simplear')!;
    const engine = await createCpuEngine(ort, model, { maxLatentSide: 4 });
    const side = Math.sqrt(ref.greedy.steps);
    const result = await engine.generate({ prompt: ref.prompt, size: side * 16, temperature: 0, seed: 1 });
    expect(Array.from(result.codes)).toEqual(ref.greedy.codes);
    await engine.dispose();
  });

  for (const weights of ['q4', 'q8', 'f16', 'f32'] as LmWeightFormat[]) {
    it(`${weights}: the bundle holds exactly the converters' tensors`, async () => {
      const s = new MemoryBundleSink();
      const m = await convertModel({ model: openFolder(LM), decoder: openFolder(VQ), sink: s, weights, fuseDecoder: weights === 'q4' });
      expect(m.model.preview).toBeUndefined(); // no ORT given
      expect(m.weights).toMatchObject({ lm: weights, decoder: weights === 'f32' ? 'f32' : 'f16', decoderFused: weights === 'q4' });
      const bundle = await openModelBundle(s.folder());
      const folder = openFolder(LM);
      const spec = (await readModelConfig(folder, 466)).lm;
      const expected = await collectLmWeights(await openSafetensors(folder), spec, { weights });
      const got = await bundle.loadLmWeights();
      expect(got.size).toBe(lmTensorCount(spec, weights, false));
      expect([...got.keys()]).toEqual([...expected.keys()]);
      for (const [name, t] of expected) {
        const b = got.get(name)!;
        expect([b.type, b.dims], name).toEqual([t.type, t.dims]);
        expect(sameBytes(b.raw, t.raw), name).toBe(true);
      }
      const jit = await openTorchScript(openFolder(VQ).open('decoder.jit'));
      const dec = await collectWeights(convertDecoderWeights(jit, { dtype: m.weights.decoder as 'f16' | 'f32', fuse: weights === 'q4' }));
      const gotDec = await bundle.loadDecoderWeights();
      expect([...gotDec.keys()]).toEqual([...dec.keys()]);
      for (const [name, t] of dec) expect(sameBytes(gotDec.get(name)!.raw, t.raw), name).toBe(true);
    });
  }
});

describe('convertModel over HTTP', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(FIXTURES);
  });
  afterAll(() => server?.close());

  it('gives the same chunks as from local files, records ETags, reads weights only by range', async () => {
    const local = await convertModel({ model: openFolder(LM), decoder: openFolder(VQ), sink: new MemoryBundleSink(), weights: 'q4', createdAt: CREATED });
    server.reset();
    const remote = await convertModel({
      model: openFolder(`${server.url}tiny-simplear/`),
      decoder: openFolder(`${server.url}tiny-cosmos/`),
      sink: new MemoryBundleSink(),
      weights: 'q4',
      createdAt: CREATED,
    });
    expect(remote.chunks).toEqual(local.chunks);
    expect(remote.tensors).toEqual(local.tensors);
    const [lmSource, decSource] = remote.sources;
    expect(lmSource!.url).toBe(`${server.url}tiny-simplear/`);
    expect(Object.keys(lmSource!.etags ?? {}).sort()).toEqual(
      ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].sort(),
    );
    expect(decSource!.etags?.['decoder.jit']).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(server.fullGets('tiny-simplear/model.safetensors')).toBe(0);
    expect(server.fullGets('tiny-cosmos/decoder.jit')).toBe(0);
    expect(server.requests.filter((r) => r.path === 'tiny-simplear/model.safetensors' && r.range).length).toBeGreaterThan(10);
  });

  it('an HTTP error is a typed error naming the URL, and nothing is committed', async () => {
    server.setFailures([{ path: 'tiny-cosmos/decoder.jit', status: 403 }]);
    const sink = new MemoryBundleSink();
    const err = await convertModel({ model: openFolder(LM), decoder: openFolder(`${server.url}tiny-cosmos/`, fetch, { retries: 0 }), sink }).catch((e) => e);
    server.setFailures([]);
    expect(err).toMatchObject({ code: 'HttpError', status: 403 });
    expect(err.message).toContain('tiny-cosmos/decoder.jit');
    expect(sink.state).toBe('aborted');
    expect(sink.files.size).toBe(0);
  });
});

describe('convertModel failures leave no bundle', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'convert-model-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('a read failure mid-stream: typed error naming file and tensor; no bundle, no partial directory', async () => {
    const out = join(dir, 'bundle');
    // The header reads fine; the embedding (first in the file, converted last) fails 1 MB in,
    // after the decoder and every layer are written.
    const model = failingFolder(openFolder(LM), 'model.safetensors', 1 << 20, 4 << 20);
    const progress: ConvertProgress[] = [];
    const err = await convertModel({
      model,
      decoder: openFolder(VQ),
      sink: await createNodeBundleSink(out),
      onProgress: (p) => progress.push(p),
      chunkSize: 64 * 1024,
    }).catch((e) => e);
    expect(progress.some((p) => p.phase === 'lm' && p.tensors > 0)).toBe(true);
    expect(err).toBeInstanceOf(ModelFileError);
    expect(err.code).toBe('ModelFileInvalid');
    expect(err.file).toBe(join(LM, 'model.safetensors'));
    expect(err.tensor).toBe('model.embed_tokens.weight');
    expect(await readdir(dir)).toEqual([]);
  });

  it('a missing decoder.jit fails before anything is written', async () => {
    const sink = new MemoryBundleSink();
    const err = await convertModel({ model: openFolder(LM), decoder: openFolder(FIXTURES), sink }).catch((e) => e);
    expect(err).toMatchObject({ code: 'ModelFileMissing' });
    expect(err.message).toContain('decoder.jit');
    expect(sink.state).toBe('aborted');
  });

  it('an abort mid-conversion: Aborted, and the sink is aborted', async () => {
    const out = join(dir, 'aborted');
    const controller = new AbortController();
    const err = await convertModel({
      model: openFolder(LM),
      decoder: openFolder(VQ),
      sink: await createNodeBundleSink(out),
      signal: controller.signal,
      onProgress: (p) => p.phase === 'lm' && p.tensors === 3 && controller.abort(),
    }).catch((e) => e);
    expect(err).toMatchObject({ code: 'Aborted' });
    expect(await readdir(dir)).toEqual([]);
  });
});
