// Which LM weight representation runs fastest on the wasm EP (onnxruntime-web's WebGPU build, the
// one the page's worker loads) at full width, and what it costs in memory. One process per thread
// count; in it, a graph of `--layers` full-width layers' linear projections (qkv, o, gate_up,
// down: SimpleAR-0.5B's shapes, decode batch 2) per variant, all sessions created first (RSS
// growth of each creation after a GC), then the variants run in alternating rounds so a loaded
// machine slows them all alike. Each variant's output is compared with the f32 MatMul's.
//
//   npx tsx tools/bench/wasm-weight-formats.ts [--layers 2] [--rounds 5] [--threads 1,2] [--variants a,b]
//
// Prints a table per thread count and a JSON summary as the last line.
//
// Measured on a 2-core machine under heavy load (medians of 7 alternating rounds, 2 layers, 1
// thread): f32 MatMul 167 ms; f32 with disable_prepacking 482 ms; q4 MatMulNBits 3386 ms (as the
// engine builds it; accuracy_level 4 and block sizes 32/64/128 were no faster in a 1-layer run);
// q8 MatMulNBits acc 4 2674 ms; int8 per channel + DynamicQuantizeLinear: MatMulInteger 115 ms,
// MatMulIntegerToFloat 110 ms, DynamicQuantizeMatMul 147 ms; f16 weights + Cast 153 ms with the
// memory of f32 weights (the Cast is folded into an f32 initializer). --threads 2 fails in Node
// (onnxruntime-web cannot start its thread workers there: "fetch failed").
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GraphBuilder, ELEM } from '../../src/core/base/onnx-builder.ts';
import { LmOps } from '../../src/core/model/lm-ops.ts';
import { convertLinear } from '../../src/core/convert/lm-weights.ts';
import { quantizeMatrix, transpose, f32Bytes, f16Bytes } from '../../src/core/model/quantize.ts';
import { SIMPLEAR_05B } from '../../src/core/base/model-spec.ts';
import type { NamedTensor } from '../../src/core/base/model-spec.ts';

const { values: args } = parseArgs({
  options: {
    layers: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string', default: '1,2' },
    variants: { type: 'string' },
    child: { type: 'string' },
  },
});

const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim } = SIMPLEAR_05B;
const QKV = (numHeads + 2 * numKvHeads) * headDim;
const M = 2; // decode: the conditional and the unconditional row
/** [name, n (out), k (in)] of one layer's projections, in HF Linear terms. */
const LINEARS: [string, number, number][] = [['qkv', QKV, H], ['o', H, H], ['gate_up', 2 * I, H], ['down', H, I]];

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
/** Roughly normal weights (sum of 4 uniforms), std ≈ 0.02 like a trained projection. */
function randomWeights(n: number, k: number, seed: number): Float32Array {
  const r = rng(seed);
  const w = new Float32Array(n * k);
  for (let i = 0; i < w.length; i++) w[i] = (r() + r() + r() + r() - 2) * 0.035;
  return w;
}

interface Variant {
  name: string;
  what: string;
  sessionOptions?: Record<string, unknown>;
  /** y[M, n] = x[M, k] · Wᵀ for the HF weight w [n, k]. */
  linear(g: GraphBuilder, x: string, w: Float32Array, n: number, k: number, id: string): string;
}

const int8Type = 3; // onnx TensorProto INT8

/** Per output channel symmetric int8: q [k, n] (MatMul layout), scale [n]. */
function int8PerChannel(w: Float32Array, n: number, k: number, offset: number): { q: Uint8Array; scale: Float32Array } {
  const scale = new Float32Array(n);
  for (let r = 0; r < n; r++) {
    let m = 0;
    for (let c = 0; c < k; c++) m = Math.max(m, Math.abs(w[r * k + c]!));
    scale[r] = m / 127 || 1;
  }
  const q = new Uint8Array(k * n);
  for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) q[c * n + r] = (Math.round(w[r * k + c]! / scale[r]!) + offset) & 255;
  return { q, scale };
}

function nbits(bits: 4 | 8, blockSize: number, accuracyLevel: number): Variant['linear'] {
  return (g, x, w, n, k, id) => {
    const q = quantizeMatrix(w, n, k, { bits, blockSize, symmetric: false });
    const b = g.initializer(`${id}.q`, { type: 'uint8', dims: [n, q.kBlocks, (blockSize * bits) / 8], raw: q.b });
    const s = g.initializer(`${id}.s`, { type: 'float32', dims: [n, q.kBlocks], raw: f32Bytes(new Float32Array(Array.from(new Uint16Array(q.scalesF16.buffer), halfToFloat))) });
    const zp = g.initializer(`${id}.zp`, { type: 'uint8', dims: [n, q.zeroPoints!.length / n], raw: q.zeroPoints! });
    return g.ms('MatMulNBits', [x, b, s, zp], { K: k, N: n, bits, block_size: blockSize, ...(accuracyLevel ? { accuracy_level: accuracyLevel } : {}) })[0]!;
  };
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const f = h & 1023;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** An int8 initializer (the builder's ElemType has no int8; the bytes are the same). */
function int8Init(g: GraphBuilder, name: string, dims: number[], raw: Uint8Array): string {
  (ELEM as Record<string, number>).int8 = int8Type;
  return g.initializer(name, { type: 'int8' as 'uint8', dims, raw });
}

const VARIANTS: Variant[] = [
  {
    name: 'f32',
    what: 'MatMul, f32 weights (ORT prepacks a second copy)',
    linear: (g, x, w, n, k, id) => g.op1('MatMul', [x, g.initializer(`${id}.w`, { type: 'float32', dims: [k, n], raw: f32Bytes(transpose(w, n, k)) })]),
  },
  {
    name: 'f32-noprepack',
    what: 'MatMul, f32 weights, session.disable_prepacking',
    sessionOptions: { extra: { session: { disable_prepacking: '1' } } },
    linear: (g, x, w, n, k, id) => g.op1('MatMul', [x, g.initializer(`${id}.w`, { type: 'float32', dims: [k, n], raw: f32Bytes(transpose(w, n, k)) })]),
  },
  {
    name: 'q4-project',
    what: "the engine's q4 linear (ops.ts: MatMulNBits bs32 asym, f16 scales upcast, acc 0)",
    linear: (g, x, w, n, k, id) => {
      const tensors = new Map<string, NamedTensor>(convertLinear(id, w, n, k, 'q4').map((t) => [t.name, t]));
      return new LmOps(g, 'float32', (name) => tensors.get(name), 0).linear(x, id, k);
    },
  },
  { name: 'q4-acc4-bs32', what: 'MatMulNBits 4-bit bs32 accuracy_level 4', linear: nbits(4, 32, 4) },
  { name: 'q4-acc4-bs64', what: 'MatMulNBits 4-bit bs64 accuracy_level 4', linear: nbits(4, 64, 4) },
  { name: 'q4-acc4-bs128', what: 'MatMulNBits 4-bit bs128 accuracy_level 4', linear: nbits(4, 128, 4) },
  { name: 'q8-acc4-bs32', what: 'MatMulNBits 8-bit bs32 accuracy_level 4', linear: nbits(8, 32, 4) },
  {
    name: 'i8-mmi',
    what: 'DynamicQuantizeLinear + MatMulInteger (u8 × u8 weights zp 128) + Cast + Mul(per-channel scale × a_scale)',
    linear: (g, x, w, n, k, id) => {
      const { q, scale } = int8PerChannel(w, n, k, 128);
      const b = g.initializer(`${id}.q`, { type: 'uint8', dims: [k, n], raw: q });
      const bzp = g.initializer(`${id}.zp`, { type: 'uint8', dims: [], raw: new Uint8Array([128]) });
      const [a, as, azp] = g.op('DynamicQuantizeLinear', [x], {}, 3) as [string, string, string];
      const acc = g.op1('MatMulInteger', [a, b, azp, bzp]);
      const s = g.op1('Mul', [as, g.initializer(`${id}.s`, { type: 'float32', dims: [n], raw: f32Bytes(scale) })]);
      return g.op1('Mul', [g.op1('Cast', [acc], { to: 1 }), s]);
    },
  },
  {
    name: 'i8-mmi-s8',
    what: 'DynamicQuantizeLinear + MatMulInteger (u8 × s8 weights) + Cast + Mul',
    linear: (g, x, w, n, k, id) => {
      const { q, scale } = int8PerChannel(w, n, k, 0);
      const b = int8Init(g, `${id}.q`, [k, n], q);
      const [a, as, azp] = g.op('DynamicQuantizeLinear', [x], {}, 3) as [string, string, string];
      const acc = g.op1('MatMulInteger', [a, b, azp]);
      const s = g.op1('Mul', [as, g.initializer(`${id}.s`, { type: 'float32', dims: [n], raw: f32Bytes(scale) })]);
      return g.op1('Mul', [g.op1('Cast', [acc], { to: 1 }), s]);
    },
  },
  {
    name: 'i8-dqmm',
    what: 'com.microsoft DynamicQuantizeMatMul (s8 weights, per-channel scale)',
    linear: (g, x, w, n, k, id) => {
      const { q, scale } = int8PerChannel(w, n, k, 0);
      const b = int8Init(g, `${id}.q`, [k, n], q);
      return g.ms('DynamicQuantizeMatMul', [x, b, g.initializer(`${id}.s`, { type: 'float32', dims: [n], raw: f32Bytes(scale) })])[0]!;
    },
  },
  {
    name: 'i8-mmitf',
    what: 'DynamicQuantizeLinear + com.microsoft MatMulIntegerToFloat (s8 weights)',
    linear: (g, x, w, n, k, id) => {
      const { q, scale } = int8PerChannel(w, n, k, 0);
      const b = int8Init(g, `${id}.q`, [k, n], q);
      const [a, as, azp] = g.op('DynamicQuantizeLinear', [x], {}, 3) as [string, string, string];
      return g.ms('MatMulIntegerToFloat', [a, b, as, g.initializer(`${id}.s`, { type: 'float32', dims: [n], raw: f32Bytes(scale) }), azp])[0]!;
    },
  },
  {
    name: 'f16-cast',
    what: 'f16 weights, Cast to f32 in the graph, MatMul',
    linear: (g, x, w, n, k, id) => {
      const b = g.initializer(`${id}.w`, { type: 'float16', dims: [k, n], raw: f16Bytes(transpose(w, n, k)) });
      return g.op1('MatMul', [x, g.op1('Cast', [b], { to: 1 })]);
    },
  },
  {
    name: 'f16-matmul',
    what: 'f16 weights and a f16 MatMul (activations cast to f16 and back)',
    linear: (g, x, w, n, k, id) => {
      const b = g.initializer(`${id}.w`, { type: 'float16', dims: [k, n], raw: f16Bytes(transpose(w, n, k)) });
      return g.op1('Cast', [g.op1('MatMul', [g.op1('Cast', [x], { to: 10 }), b])], { to: 1 });
    },
  },
];

/** `layers` layers of the four projections, chained x → o → gate_up → (first half) down → x; each qkv an output. */
function buildGraph(v: Variant, layers: number) {
  const g = new GraphBuilder(`wasm-weights-${v.name}`);
  let x = g.input('x', 'float32', [M, H]);
  const outs: string[] = [];
  for (let l = 0; l < layers; l++) {
    const [qkv, o, gu, down] = LINEARS.map(([name, n, k], j) => ({ id: `l${l}.${name}`, n, k, w: randomWeights(n, k, 1000 * l + j + 1) }));
    outs.push(v.linear(g, x, qkv!.w, qkv!.n, qkv!.k, qkv!.id));
    const a = v.linear(g, x, o!.w, o!.n, o!.k, o!.id);
    const gateUp = v.linear(g, a, gu!.w, gu!.n, gu!.k, gu!.id);
    const [gate] = g.op('Split', [gateUp, g.constInt64([I, I])], { axis: -1 }, 2);
    // Keep magnitudes steady layer to layer (random weights would shrink x each projection).
    x = g.op1('Mul', [v.linear(g, gate!, down!.w, down!.n, down!.k, down!.id), g.constFloat32([8])]);
  }
  outs.push(x);
  const out = g.op1('Concat', outs, { axis: -1 });
  g.op('Identity', [out], {}, ['y']);
  g.output('y', 'float32', [M, layers * QKV + H]);
  return g.toModelWithExternalData(64 * 1024);
}

interface Row {
  variant: string;
  what: string;
  ok: boolean;
  error?: string;
  weightsMB?: number;
  sessionRssMB?: number;
  ms?: number[];
  medianMs?: number;
  maxRelErr?: number;
}

const mb = (n: number) => Math.round(n / 2 ** 20);
const rss = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss;
};

async function child(threads: number) {
  const layers = Number(args.layers);
  const rounds = Number(args.rounds);
  const picked = args.variants ? VARIANTS.filter((v) => args.variants!.split(',').includes(v.name)) : VARIANTS;
  const web = await import('onnxruntime-web/webgpu');
  web.env.wasm.numThreads = threads;
  const r = rng(99);
  const xData = Float32Array.from({ length: M * H }, () => (r() - 0.5) * 4);
  const feeds = { x: new web.Tensor('float32', xData, [M, H]) };
  const rows: Row[] = [];
  const sessions: (Awaited<ReturnType<typeof web.InferenceSession.create>> | undefined)[] = [];
  for (const v of picked) {
    const built = buildGraph(v, layers);
    const weightsMB = mb(built.externalData.reduce((a, f) => a + f.data.byteLength, 0));
    const before = rss();
    try {
      const s = await web.InferenceSession.create(built.model, {
        executionProviders: ['wasm'],
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
        externalData: built.externalData,
        ...v.sessionOptions,
      } as Parameters<typeof web.InferenceSession.create>[1]);
      await s.run(feeds); // first run: lazy allocations
      sessions.push(s);
      rows.push({ variant: v.name, what: v.what, ok: true, weightsMB, sessionRssMB: mb(rss() - before), ms: [] });
    } catch (e) {
      sessions.push(undefined);
      rows.push({ variant: v.name, what: v.what, ok: false, error: String(e).slice(0, 200), weightsMB });
    }
  }
  const ref = sessions[0] ? ((await sessions[0].run(feeds)).y!.data as Float32Array) : undefined;
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < picked.length; i++) {
      const s = sessions[i];
      if (!s) continue;
      const t = performance.now();
      const y = (await s.run(feeds)).y!.data as Float32Array;
      rows[i]!.ms!.push(Math.round(performance.now() - t));
      if (ref && round === 0) {
        let scale = 0;
        let err = 0;
        for (let j = 0; j < ref.length; j++) {
          scale = Math.max(scale, Math.abs(ref[j]!));
          err = Math.max(err, Math.abs(y[j]! - ref[j]!));
        }
        rows[i]!.maxRelErr = Number((err / scale).toPrecision(2));
      }
    }
  }
  for (const row of rows) if (row.ms?.length) row.medianMs = [...row.ms].sort((a, b) => a - b)[row.ms.length >> 1];
  return { threads, layers, rounds, peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024), rows };
}

if (args.child) {
  console.log(JSON.stringify(await child(Number(args.child))));
  process.exit(0);
}

const all = [];
for (const threads of args.threads.split(',').map(Number)) {
  const pass = ['--layers', args.layers, '--rounds', args.rounds, ...(args.variants ? ['--variants', args.variants] : [])];
  const c = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, fileURLToPath(import.meta.url), '--child', String(threads), ...pass], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = c.stdout.trim().split('\n').at(-1) ?? '';
  let res: Awaited<ReturnType<typeof child>>;
  try {
    res = JSON.parse(line);
  } catch {
    console.log(`threads ${threads}: FAILED exit ${c.status ?? c.signal}: ${c.stderr.slice(-600)}`);
    continue;
  }
  all.push(res);
  console.log(`\nthreads ${threads}, ${res.layers} full-width layers' projections, batch ${M}, ${res.rounds} alternating rounds; process peak RSS ${res.peakRssMB} MB`);
  console.log('| variant | weights MB | session RSS MB | median ms | ms per round | max rel err vs f32 |');
  console.log('|---|---|---|---|---|---|');
  for (const r of res.rows) {
    console.log(r.ok ? `| ${r.variant} | ${r.weightsMB} | ${r.sessionRssMB} | ${r.medianMs} | ${r.ms!.join(' ')} | ${r.maxRelErr} |` : `| ${r.variant} | ${r.weightsMB} | FAILED: ${r.error} | | | |`);
  }
}
console.log(JSON.stringify({ wasmWeightFormats: all }));
