// The TorchScript archive reader (src/core/formats/torchscript/): synthetic archives built here
// (a tiny pickle writer + zip writer, STORED/DEFLATE, ZIP64) pin the format details; the traced
// tiny Cosmos decoder (tests/fixtures/tiny-cosmos/decoder.jit, made by PyTorch) pins the real thing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'fflate';
import { describe, expect, it } from 'vitest';
import { LocalFileSource, type ByteSource } from '../../src/core/formats/byte-source.ts';
import { toFloat32 } from '../../src/core/formats/tensor.ts';
import { openTorchScript } from '../../src/core/formats/torchscript/index.ts';
import { ZipArchive } from '../../src/core/formats/torchscript/zip.ts';
import { crc32 } from '../../src/core/base/crc32.ts';
import { ModelFileError } from '../../src/core/base/errors.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');
/** The state_dict of NVIDIA's released decoder.jit (name, shape, elements), committed beside the fixtures. */
const TSV = join(FIXTURES, 'released-decoder-shapes.tsv');

// ---- a minimal pickle writer (protocol 2, the opcodes TorchScript's C++ pickler emits) -------

type Py =
  | { global: string }
  | { obj: string; state: [string, Py][] } // NEWOBJ + BUILD, as TorchScript writes modules
  | { tensor: Tensor }
  | { od: [string, Py][] }
  | string
  | number
  | boolean
  | null;
interface Tensor {
  storage: string; // e.g. 'FloatStorage'
  key: string;
  numel: number;
  offset?: number;
  size: number[];
  stride: number[];
  requiresGrad?: boolean;
}

function pickle(value: Py): Uint8Array {
  const out: number[] = [0x80, 2];
  const text = (s: string) => out.push(...new TextEncoder().encode(s));
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    out.push(0x58, b.length & 255, (b.length >> 8) & 255, 0, 0, ...b);
  };
  const int = (n: number) => {
    if (n >= 0 && n < 256) out.push(0x4b, n);
    else out.push(0x4a, n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255);
  };
  const global = (q: string) => {
    const i = q.lastIndexOf('.');
    out.push(0x63);
    text(`${q.slice(0, i)}\n${q.slice(i + 1)}\n`);
  };
  const tuple = (items: (() => void)[]) => {
    out.push(0x28);
    items.forEach((f) => f());
    out.push(0x74);
  };
  const emit = (v: Py): void => {
    if (v === null) out.push(0x4e);
    else if (v === true) out.push(0x88);
    else if (v === false) out.push(0x89);
    else if (typeof v === 'number') int(v);
    else if (typeof v === 'string') str(v);
    else if ('global' in v) global(v.global);
    else if ('obj' in v) {
      global(v.obj);
      out.push(0x29, 0x81, 0x7d, 0x28);
      for (const [k, x] of v.state) (str(k), emit(x));
      out.push(0x75, 0x62);
    } else if ('od' in v) {
      global('collections.OrderedDict');
      out.push(0x29, 0x52, 0x28);
      for (const [k, x] of v.od) (str(k), emit(x));
      out.push(0x75);
    } else {
      const t = v.tensor;
      global('torch._utils._rebuild_tensor_v2');
      tuple([
        () => {
          tuple([() => str('storage'), () => global(`torch.${t.storage}`), () => str(t.key), () => str('cpu'), () => int(t.numel)]);
          out.push(0x51); // BINPERSID
        },
        () => int(t.offset ?? 0),
        () => tuple(t.size.map((s) => () => int(s))),
        () => tuple(t.stride.map((s) => () => int(s))),
        () => out.push(t.requiresGrad ? 0x88 : 0x89),
        () => (global('collections.OrderedDict'), out.push(0x29, 0x52)),
      ]);
      out.push(0x52); // REDUCE
    }
  };
  emit(value);
  out.push(0x2e);
  return Uint8Array.from(out);
}

// ---- a minimal zip writer (STORED or DEFLATE, optionally ZIP64) -------------------------------

function makeZip(files: [string, Uint8Array][], opts: { zip64?: boolean; deflate?: (name: string) => boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const le = (n: number, bytes: number) => {
    const a = new Uint8Array(bytes);
    const v = new DataView(a.buffer);
    if (bytes === 2) v.setUint16(0, n, true);
    else if (bytes === 4) v.setUint32(0, n >>> 0, true);
    else v.setBigUint64(0, BigInt(n), true);
    return a;
  };
  const cat = (xs: Uint8Array[]) => {
    const o = new Uint8Array(xs.reduce((s, x) => s + x.length, 0));
    let p = 0;
    for (const x of xs) (o.set(x, p), (p += x.length));
    return o;
  };
  const z64 = !!opts.zip64;
  for (const [name, data] of files) {
    const deflate = opts.deflate?.(name) ?? false;
    const body = deflate ? deflateSync(data) : data;
    const nm = new TextEncoder().encode(name);
    const crc = crc32(data);
    const localExtra = z64 ? cat([le(1, 2), le(16, 2), le(data.length, 8), le(body.length, 8)]) : new Uint8Array(0);
    const local = cat([
      le(0x04034b50, 4), le(z64 ? 45 : 20, 2), le(0, 2), le(deflate ? 8 : 0, 2), le(0, 2), le(0, 2), le(crc, 4),
      le(z64 ? 0xffffffff : body.length, 4), le(z64 ? 0xffffffff : data.length, 4), le(nm.length, 2), le(localExtra.length, 2), nm, localExtra,
    ]);
    const cdExtra = z64 ? cat([le(1, 2), le(24, 2), le(data.length, 8), le(body.length, 8), le(offset, 8)]) : new Uint8Array(0);
    central.push(cat([
      le(0x02014b50, 4), le(45, 2), le(z64 ? 45 : 20, 2), le(0, 2), le(deflate ? 8 : 0, 2), le(0, 2), le(0, 2), le(crc, 4),
      le(z64 ? 0xffffffff : body.length, 4), le(z64 ? 0xffffffff : data.length, 4), le(nm.length, 2), le(cdExtra.length, 2),
      le(0, 2), le(0, 2), le(0, 2), le(0, 4), le(z64 ? 0xffffffff : offset, 4), nm, cdExtra,
    ]));
    parts.push(local, body);
    offset += local.length + body.length;
  }
  const cd = cat(central);
  const tail: Uint8Array[] = [];
  if (z64) {
    const recOffset = offset + cd.length;
    tail.push(cat([le(0x06064b50, 4), le(44, 8), le(45, 2), le(45, 2), le(0, 4), le(0, 4), le(files.length, 8), le(files.length, 8), le(cd.length, 8), le(offset, 8)]));
    tail.push(cat([le(0x07064b50, 4), le(0, 4), le(recOffset, 8), le(1, 4)]));
    tail.push(cat([le(0x06054b50, 4), le(0, 2), le(0, 2), le(0xffff, 2), le(0xffff, 2), le(0xffffffff, 4), le(0xffffffff, 4), le(0, 2)]));
  } else {
    tail.push(cat([le(0x06054b50, 4), le(0, 2), le(0, 2), le(files.length, 2), le(files.length, 2), le(cd.length, 4), le(offset, 4), le(0, 2)]));
  }
  return cat([...parts, cd, ...tail]);
}

/** An in-memory ByteSource that counts what is read. */
class MemorySource implements ByteSource {
  bytesRead = 0;
  reads = 0;
  constructor(
    readonly name: string,
    private readonly data: Uint8Array,
  ) {}
  async size() {
    return this.data.length;
  }
  async read(offset: number, length: number) {
    if (offset + length > this.data.length) throw new ModelFileError(this.name, `truncated: wanted ${length} bytes at ${offset}`);
    this.bytesRead += length;
    this.reads++;
    return this.data.slice(offset, offset + length);
  }
}

const f32 = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);
const f16 = (xs: number[]) => new Uint8Array(Uint16Array.from(xs).buffer); // raw half bits
const i64 = (xs: number[]) => new Uint8Array(BigInt64Array.from(xs.map(BigInt)).buffer);

/** A module tree like a traced TorchScript one: nested modules, parameters, buffers, views. */
function sampleArchive(opts: { zip64?: boolean; deflatePickle?: boolean; drop?: string; storage0?: string } = {}) {
  const tree: Py = {
    obj: '__torch__.Model',
    state: [
      ['training', false],
      ['_levels', { tensor: { storage: 'LongStorage', key: '3', numel: 3, size: [3], stride: [1] } }],
      [
        'conv',
        {
          obj: '__torch__.torch.nn.modules.conv.Conv3d',
          state: [
            ['training', false],
            // (2, 3, 1, 1, 1) weight with arbitrary strides on its size-1 dims, as PyTorch writes them
            ['weight', { tensor: { storage: opts.storage0 ?? 'FloatStorage', key: '0', numel: 6, size: [2, 3, 1, 1, 1], stride: [3, 1, 9, 3, 1], requiresGrad: true } }],
            ['bias', { tensor: { storage: 'HalfStorage', key: '1', numel: 2, size: [2], stride: [1], requiresGrad: true } }],
          ],
        },
      ],
      [
        'seq',
        {
          obj: '__torch__.torch.nn.modules.container.Sequential',
          state: [
            // a transposed view of storage 0: [[0,3],[1,4],[2,5]]
            ['0', { obj: '__torch__.Holder', state: [['wt', { tensor: { storage: 'FloatStorage', key: '0', numel: 6, size: [3, 2], stride: [1, 3] } }]] }],
            // an offset view: elements 2..5 as [2, 2]
            ['1', { obj: '__torch__.Holder', state: [['tail', { tensor: { storage: 'FloatStorage', key: '2', numel: 6, offset: 2, size: [2, 2], stride: [2, 1] } }]] }],
          ],
        },
      ],
    ],
  };
  const files: [string, Uint8Array][] = [
    ['model/data.pkl', pickle(tree)],
    ['model/data/0', f32([0, 1, 2, 3, 4, 5])],
    ['model/data/1', f16([0x3c00, 0xc000])], // 1.0, -2.0
    ['model/data/2', f32([10, 11, 12, 13, 14, 15])],
    ['model/data/3', i64([8, 5, 5])],
    ['model/version', new TextEncoder().encode('3\n')],
  ];
  return makeZip(
    files.filter(([n]) => n !== opts.drop),
    { zip64: opts.zip64, deflate: (n) => !!opts.deflatePickle && n.endsWith('.pkl') },
  );
}

describe('TorchScript archive reader', () => {
  it('names tensors by their module path in state_dict order, with dtype, shape and storage', async () => {
    const r = await openTorchScript(new MemorySource('model.jit', sampleArchive()));
    expect(r.prefix).toBe('model');
    expect(r.formatVersion).toBe('3');
    expect(r.tensors().map((t) => [t.name, t.dtype, t.shape, t.requiresGrad])).toEqual([
      ['_levels', 'i64', [3], false],
      ['conv.weight', 'f32', [2, 3, 1, 1, 1], true],
      ['conv.bias', 'f16', [2], true],
      ['seq.0.wt', 'f32', [3, 2], false],
      ['seq.1.tail', 'f32', [2, 2], false],
    ]);
    // The TensorReader view lists floating-point tensors only.
    expect(r.list().map((t) => t.name)).toEqual(['conv.weight', 'conv.bias', 'seq.0.wt', 'seq.1.tail']);
    expect(Array.from(toFloat32(await r.read('conv.weight')))).toEqual([0, 1, 2, 3, 4, 5]);
    expect(Array.from(toFloat32(await r.read('conv.bias')))).toEqual([1, -2]);
    expect(Array.from(new BigInt64Array((await r.readAny('_levels')).bytes.slice().buffer))).toEqual([8n, 5n, 5n]);
  });

  it('gathers non-contiguous and offset views, and reads row ranges of them', async () => {
    const r = await openTorchScript(new MemorySource('model.jit', sampleArchive()));
    expect(Array.from(toFloat32(await r.read('seq.0.wt')))).toEqual([0, 3, 1, 4, 2, 5]);
    expect(Array.from(toFloat32(await r.read('seq.1.tail')))).toEqual([12, 13, 14, 15]);
    const rows = await r.readRows('seq.0.wt', 1, 2);
    expect(rows.shape).toEqual([2, 2]);
    expect(Array.from(toFloat32(rows))).toEqual([1, 4, 2, 5]);
    expect(Array.from(toFloat32(await r.readRows('conv.weight', 1, 1)))).toEqual([3, 4, 5]);
    await expect(r.readRows('seq.0.wt', 2, 2)).rejects.toThrow(/out of range/);
  });

  it('reads ZIP64 archives and deflated entries the same way', async () => {
    for (const opts of [{ zip64: true }, { deflatePickle: true }, { zip64: true, deflatePickle: true }]) {
      const r = await openTorchScript(new MemorySource('model.jit', sampleArchive(opts)));
      expect(r.tensors().map((t) => t.name)).toEqual(['_levels', 'conv.weight', 'conv.bias', 'seq.0.wt', 'seq.1.tail']);
      expect(Array.from(toFloat32(await r.read('seq.0.wt')))).toEqual([0, 3, 1, 4, 2, 5]);
    }
  });

  it('reads zip-format torch.save state dicts (an OrderedDict of tensors)', async () => {
    const sd: Py = { od: [['layer.weight', { tensor: { storage: 'BFloat16Storage', key: '0', numel: 2, size: [2], stride: [1] } }]] };
    const zip = makeZip([
      ['archive/data.pkl', pickle(sd)],
      ['archive/data/0', f16([0x3f80, 0xc000])], // bf16 1.0, -2.0
    ]);
    const r = await openTorchScript(new MemorySource('sd.pt', zip));
    expect(r.list()).toEqual([{ name: 'layer.weight', dtype: 'bf16', shape: [2] }]);
    expect(Array.from(toFloat32(await r.read('layer.weight')))).toEqual([1, -2]);
  });

  it('reports bad files as ModelFileError naming the file (and the tensor)', async () => {
    const good = sampleArchive();
    const open = (bytes: Uint8Array) => openTorchScript(new MemorySource('decoder.jit', bytes));

    await expect(open(good.subarray(0, good.length - 30))).rejects.toThrow(/decoder\.jit: truncated zip archive/);
    await expect(open(new TextEncoder().encode('this is not a zip archive at all, just text'))).rejects.toThrow(/decoder\.jit: not a zip archive \(bad magic\)/);
    await expect(open(new Uint8Array(5))).rejects.toThrow(ModelFileError);
    await expect(open(makeZip([['x/other.txt', new Uint8Array(3)]]))).rejects.toThrow(/no <name>\/data\.pkl/);
    await expect(open(makeZip([['x/data.pkl', Uint8Array.of(0x80, 2, 0xff)]]))).rejects.toThrow(/x\/data\.pkl: unsupported pickle opcode/);

    const missing = await open(sampleArchive({ drop: 'model/data/2' }));
    await expect(missing.read('seq.1.tail')).rejects.toThrow(/decoder\.jit \(tensor seq\.1\.tail\): storage model\/data\/2 is missing/);
    await expect(missing.read('nope')).rejects.toMatchObject({ code: 'ModelFileMissing' });

    const unknown = await open(sampleArchive({ storage0: 'ComplexFloatStorage' }));
    expect(unknown.info('conv.weight')?.dtype).toBeNull();
    expect(unknown.list().map((t) => t.name)).not.toContain('conv.weight');
    await expect(unknown.read('conv.weight')).rejects.toMatchObject({ code: 'UnsupportedDType', message: expect.stringMatching(/ComplexFloatStorage/) });

    // A storage record shorter than its view (a corrupt or cut-down record).
    const short = makeZip([
      ['m/data.pkl', pickle({ od: [['w', { tensor: { storage: 'FloatStorage', key: '0', numel: 4, size: [4], stride: [1] } }]] })],
      ['m/data/0', f32([1, 2])],
    ]);
    await expect((await open(short)).read('w')).rejects.toThrow(/\(tensor w\): storage 0 has 8 bytes, the view needs 16/);
  });

  it('detects corrupt entries through their CRC-32', async () => {
    const bytes = sampleArchive().slice();
    const zip = await ZipArchive.open(new MemorySource('m.zip', bytes));
    const e = zip.entry('model/data.pkl')!;
    bytes[e.headerOffset + 30 + e.name.length + 5] ^= 0xff;
    await expect((await ZipArchive.open(new MemorySource('m.zip', bytes))).read('model/data.pkl')).rejects.toThrow(/CRC-32 mismatch/);
  });
});

describe('TorchScript reader on a traced Cosmos decoder (tests/fixtures/tiny-cosmos/decoder.jit)', () => {
  const file = join(FIXTURES, 'tiny-cosmos/decoder.jit');

  it('lists exactly the state_dict of the real decoder.jit (.tsv), plus its FSQ/Haar buffers', async () => {
    const r = await openTorchScript(new LocalFileSource(file));
    const tsv = readFileSync(TSV, 'utf8')
      .trim()
      .split('\n')
      .map((line) => {
        const [name, shape] = line.split('\t');
        return { name: name!, shape: shape!.replace(/[()\s]/g, '').split(',').filter(Boolean).map(Number) };
      });
    const ours = r.tensors();
    const params = ours.filter((t) => t.requiresGrad);
    // Same names, same order as the full-width reference; the 5 extras are non-persistent buffers.
    expect(params.map((t) => t.name)).toEqual(tsv.map((t) => t.name));
    // (implicit_codebook follows the quantizer's dtype at trace time: f32 here, bf16 by default.)
    expect(ours.filter((t) => !t.requiresGrad).map((t) => `${t.name}:${t.dtype}`)).toEqual([
      'inv_quant.quantizer._levels:i32',
      'inv_quant.quantizer._basis:i32',
      'inv_quant.quantizer.implicit_codebook:f32',
      'decoder.unpatcher3d.wavelets:f32',
      'decoder.unpatcher3d._arange:i64',
    ]);
    // Same shape pattern: rank and kernel sizes equal, channel counts a fixed fraction (16/128 width).
    const ref = new Map(tsv.map((t) => [t.name, t.shape]));
    for (const t of params) {
      const s = ref.get(t.name)!;
      expect(t.shape.length, t.name).toBe(s.length);
      if (s.length === 5) expect(t.shape.slice(2), t.name).toEqual(s.slice(2));
      if (t.name === 'post_quant_conv.conv3d.weight') expect(t.shape).toEqual(s); // 16×6: width-independent
      expect(t.dtype).toBe('f32');
    }
    const levels = await r.readAny('inv_quant.quantizer._levels');
    expect(Array.from(new Int32Array(levels.bytes.slice().buffer))).toEqual([8, 8, 8, 5, 5, 5]);
  });

  it('opens with a few small range reads from the tail, never the whole file', async () => {
    const bytes = new Uint8Array(readFileSync(file));
    const src = new MemorySource('decoder.jit', bytes);
    const r = await openTorchScript(src);
    expect(src.bytesRead).toBeLessThan(200_000); // tail + central directory + data.pkl
    expect(src.reads).toBeLessThanOrEqual(5);
    const before = src.bytesRead;
    const w = await r.read('decoder.conv_out.0.conv3d.weight');
    expect(src.bytesRead - before).toBeLessThan(w.bytes.length + 1024); // one request: header + data
  });
});
