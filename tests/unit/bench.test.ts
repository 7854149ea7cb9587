// `npm run bench -- --cpu-only --quick` in-process (tools/bench/bench.ts): the CPU section measures the engine's own
// configuration (createCpuEngine's defaults) and reports consistent figures. Timings are not
// asserted (a shared machine), only that they are measured and the report holds together.
import { describe, expect, it } from 'vitest';
import { runBench } from '../../tools/bench/bench.ts';
import { CPU_KV_CACHE } from '../../src/core/engine/create-cpu.ts';
import { KV_CACHE_CHUNK, grownCapacity } from '../../src/core/runtime/lm-runner.ts';
import { Capture } from '../helpers/capture.ts';


interface Variant {
  accuracyLevel: number;
  activations: string;
  kvCache: string;
  engine: boolean;
  msPerStep: number;
  steps: number[];
  sjdWindows: { window: number; msPerIteration: number; msPerStepAlongside: number; breakEvenTokensPerRun: number }[];
}

interface Floor {
  msPerStep: number;
  bytes: number;
  gbPerS: number;
  nodes: number;
}

describe('npm run bench -- --cpu-only --quick', () => {
  it('times the CPU engine’s configuration against the bound, with the older variants alongside', async () => {
    const stdout = new Capture();
    const stderr = new Capture();
    expect(await runBench(['--cpu-only', '--quick'], { stdout, stderr })).toBe(0);
    const lines = stdout.text.trim().split('\n');
    const report = JSON.parse(lines.at(-1)!) as {
      cpu: {
        shapes: { layers: number; heads: string; hidden: number };
        context: { cond: number; uncond: number };
        kvCache: { slotsPerRow: number; maxSlotsPerRow: number; growBy: number; mode: string; bytes: number };
        variants: Variant[];
        engine: { kvCache: string; activations: string; accuracyLevel: number; msPerStep: number };
        boundMsPerStep: number;
        bytesPerStep: { total: number; kvCache: number; f32ScalesExtra: number; layers: number; visualHeadAndNorm: number };
        ratios: { oursOverBound: number; oursOverBoundWithF32Scales: number };
        breakdown: { wallMsPerStep: number; byOp: { op: string }[] };
        kernelFloors: {
          matMulNBits: Floor;
          attentionGemms: Floor;
          msPerStep: number;
          overBound: number;
          restOfStepMs: number;
        };
      };
      sjd: { rows: { window: number; acceptedPerRun: number; msPerToken: number }[] };
      images: { size: number; rows: { count: number; seconds: number; imagesPerMinute: number; imagesPerPass: number }[]; n4OverN1: number };
    };
    const cpu = report.cpu;
    expect(cpu.engine).toMatchObject({ kvCache: CPU_KV_CACHE, activations: 'f32', accuracyLevel: 4 });
    const ours = cpu.variants.filter((v) => v.engine);
    expect(ours).toHaveLength(1);
    expect(ours[0]!.msPerStep).toBe(cpu.engine.msPerStep);
    expect(cpu.variants.map((v) => `${v.kvCache}/${v.accuracyLevel}/${v.activations}`)).toEqual(['read-only/0/f32', 'read-only/4/f32', 'in-place/4/f16']);
    for (const v of cpu.variants) {
      expect(v.steps.every((t) => t > 0 && Number.isFinite(t))).toBe(true);
      expect(v.sjdWindows.map((w) => w.window)).toEqual([4, 8]);
      for (const w of v.sjdWindows) expect(w.breakEvenTokensPerRun).toBeCloseTo(w.msPerIteration / w.msPerStepAlongside, 1);
    }
    // The cache is the engine's at this context: grown in chunks, not the maximum.
    const need = Math.max(cpu.context.cond, cpu.context.uncond);
    expect(cpu.kvCache.slotsPerRow).toBe(grownCapacity(need, KV_CACHE_CHUNK, cpu.kvCache.maxSlotsPerRow));
    expect(cpu.kvCache.mode).toBe(CPU_KV_CACHE);
    // f32 K and V (kvH × head dim 64) in every layer for every token of both rows, in the bound's bytes
    const kvHeads = Number(cpu.shapes.heads.split('/')[1]);
    expect(cpu.bytesPerStep.kvCache).toBe((cpu.context.cond + cpu.context.uncond) * cpu.shapes.layers * 2 * kvHeads * 64 * 4);
    expect(cpu.boundMsPerStep).toBeGreaterThan(0);
    expect(cpu.ratios.oursOverBound).toBeCloseTo(cpu.engine.msPerStep / cpu.boundMsPerStep, 1);
    expect(cpu.ratios.oursOverBoundWithF32Scales).toBeLessThan(cpu.ratios.oursOverBound);
    expect(cpu.breakdown.byOp.map((o) => o.op)).toContain('MatMulNBits');
    // ORT's kernels alone: the step's 4 linear layers per layer + the head, and 2 cache GEMMs per
    // layer over the engine's cache; the weights are the step's but its norms.
    const floors = cpu.kernelFloors;
    const L = cpu.shapes.layers;
    expect(floors.matMulNBits.nodes).toBe(4 * L + 1);
    expect(floors.attentionGemms.nodes).toBe(2 * L);
    expect(floors.matMulNBits.bytes).toBe(cpu.bytesPerStep.layers + cpu.bytesPerStep.visualHeadAndNorm - (2 * L + 1) * cpu.shapes.hidden * 4);
    expect(floors.attentionGemms.bytes).toBe(cpu.kvCache.bytes);
    for (const f of [floors.matMulNBits, floors.attentionGemms]) {
      expect(f.msPerStep).toBeGreaterThan(0);
      expect(f.gbPerS).toBeCloseTo(f.bytes / f.msPerStep / 1e6, -1);
    }
    expect(floors.msPerStep).toBeCloseTo(floors.matMulNBits.msPerStep + floors.attentionGemms.msPerStep, 1);
    expect(floors.overBound).toBeCloseTo(floors.msPerStep / cpu.boundMsPerStep, 1);
    expect(floors.restOfStepMs).toBeCloseTo(cpu.engine.msPerStep - floors.msPerStep, 1);
    expect(report.sjd.rows.every((r) => r.acceptedPerRun >= 1 && r.msPerToken > 0)).toBe(true);
    // d. images per minute: N = 1, 2, 4 each in one pass, the rate from its own time
    const images = report.images;
    expect(images.rows.map((r) => [r.count, r.imagesPerPass])).toEqual([[1, 1], [2, 2], [4, 4]]);
    for (const r of images.rows) expect(Math.abs(r.imagesPerMinute / ((r.count / r.seconds) * 60) - 1)).toBeLessThan(0.02);
    expect(images.n4OverN1).toBeCloseTo(images.rows[2]!.imagesPerMinute / images.rows[0]!.imagesPerMinute, 1);
    expect(stdout.text).toContain('N=4 / N=1');
    // the readable table precedes the JSON
    expect(stdout.text).toContain("ours (the engine's) / bound");
    expect(stdout.text).toContain('kernels alone / bound');
  }, 180_000);
});
