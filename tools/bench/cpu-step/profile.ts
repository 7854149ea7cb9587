// Where the engine's decode step goes: ORT's own profiler over a few steps of a fresh session,
// beside the step's wall time as the caller sees it.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LmSpec } from '../../../src/core/base/model-spec.ts';
import type { KvCacheMode } from '../../../src/core/model/lm-graph.ts';
import { LmRunner } from '../../../src/core/runtime/lm-runner.ts';
import { median, round } from '../stats.ts';
import type { Ort } from './step-bench.ts';

/** Where a decode step's time goes: ORT's own profiler over a few steps of a fresh session. */
export interface StepBreakdown {
  /** Wall time of runner.step() as the caller sees it. */
  wallMsPerStep: number;
  /** ORT's model_run span: graph execution inside the native session. */
  modelRunMsPerStep: number;
  /** Sum of kernel times, and the largest op types. */
  kernelMsPerStep: number;
  byOp: { op: string; msPerStep: number; nodes: number }[];
  /** wall − model_run: the binding's marshalling (onnxruntime-node copies every output into a
   * fresh ArrayBuffer: with a read-only cache, only each step's new entries) and the runner's
   * writes of the new entries into its cache. */
  outsideOrtMsPerStep: number;
}

interface ProfileEvent {
  cat?: string;
  name: string;
  dur: number;
  ts: number;
  args?: { op_name?: string };
}

export async function profileStep(
  ort: Ort,
  graph: Uint8Array,
  options: Record<string, unknown>,
  spec: LmSpec,
  capacity: number,
  lengths: number[],
  token: number,
  steps: number,
  dtype: 'float32' | 'float16',
  kvCache: KvCacheMode,
): Promise<StepBreakdown> {
  const dir = await mkdtemp(join(tmpdir(), 'simplear-profile-'));
  try {
    const session = await ort.InferenceSession.create(graph, { ...options, enableProfiling: true, profileFilePrefix: join(dir, 'ort') });
    const runner = new LmRunner(ort, session, spec, { capacity, dtype, kvCache });
    const wall: number[] = [];
    for (let i = 0; i < steps + 1; i++) {
      runner.lengths[0] = lengths[0]!;
      runner.lengths[1] = lengths[1]!;
      const t = performance.now();
      await runner.step([token, token]);
      if (i > 0) wall.push(performance.now() - t); // the first run warms up
    }
    session.endProfiling();
    await session.release();
    const file = (await readdir(dir)).find((f) => f.endsWith('.json'));
    if (!file) throw new Error('ORT wrote no profile');
    const events = JSON.parse(await readFile(join(dir, file), 'utf8')) as ProfileEvent[];
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').slice(1);
    const from = runs[0]?.ts ?? Infinity;
    const byOp = new Map<string, { us: number; nodes: number }>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < from) continue;
      const op = e.args?.op_name ?? '?';
      const o = byOp.get(op) ?? { us: 0, nodes: 0 };
      o.us += e.dur;
      o.nodes += 1;
      byOp.set(op, o);
    }
    const n = runs.length;
    const kernelUs = [...byOp.values()].reduce((a, o) => a + o.us, 0);
    const modelRunMs = median(runs.map((r) => r.dur / 1000));
    const wallMs = median(wall);
    return {
      wallMsPerStep: round(wallMs),
      modelRunMsPerStep: round(modelRunMs),
      kernelMsPerStep: round(kernelUs / n / 1000),
      byOp: [...byOp]
        .sort((a, b) => b[1].us - a[1].us)
        .slice(0, 4)
        .map(([op, o]) => ({ op, msPerStep: round(o.us / n / 1000), nodes: Math.round(o.nodes / n) })),
      outsideOrtMsPerStep: round(wallMs - modelRunMs),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
