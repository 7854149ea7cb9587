// The self-test graph (the one the worker runs on WebGPU) is what it says: onnxruntime-node
// computes the same numbers as a plain float64 JS version of its definition.
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, test } from 'vitest';
import {
  SELF_TEST_DIMS,
  buildSelfTestModel,
  maxAbsDiff,
  referenceSelfTest,
  runSelfTest,
  seededFloats,
} from '../../src/core/runtime/self-test-graph.ts';

describe('self-test graph', () => {
  test('is built from the contrib ops the LM graph depends on', () => {
    const model = onnxProto.onnx.ModelProto.decode(buildSelfTestModel());
    const ops = model.graph!.node!.map((n) => `${n.domain || 'ai.onnx'}:${n.opType}`);
    expect(ops).toEqual([
      'com.microsoft:SkipSimplifiedLayerNormalization',
      'ai.onnx:MatMul',
      'ai.onnx:Sigmoid',
      'ai.onnx:Mul',
      'com.microsoft:MatMulNBits',
    ]);
  });

  test('serializes to the same bytes every time (Node and the worker run one model)', () => {
    expect(buildSelfTestModel()).toEqual(buildSelfTestModel());
  });

  test('seeded inputs are deterministic and spread over [-1, 1)', () => {
    const a = seededFloats(7, 1000);
    expect(a).toEqual(seededFloats(7, 1000));
    expect(Math.min(...a)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...a)).toBeLessThan(1);
    expect(Math.min(...a)).toBeLessThan(-0.9);
    expect(Math.max(...a)).toBeGreaterThan(0.9);
  });

  test('onnxruntime-node (CPU EP) matches the float64 reference of the graph', async () => {
    const result = await runSelfTest(ort, { executionProviders: ['cpu'] });
    const reference = referenceSelfTest();
    const { batch, seq, hidden } = SELF_TEST_DIMS;
    expect(result.outputs.y.dims).toEqual([batch, seq, hidden]);
    expect(result.outputs.residual.dims).toEqual([batch, seq, hidden]);
    expect(maxAbsDiff(result.outputs.residual.data, reference.residual)).toBeLessThan(1e-6);
    expect(maxAbsDiff(result.outputs.y.data, reference.y)).toBeLessThan(1e-5);
    // Not trivially zero: the outputs carry signal.
    expect(Math.max(...reference.y.map(Math.abs))).toBeGreaterThan(0.1);
  });

  test('strict mode refuses to run any node on the CPU fallback of another EP', async () => {
    // On onnxruntime-node the only EP is the CPU one, which counts as "fallback" here:
    // proves the strict switch really reaches ORT (the browser test relies on it).
    await expect(
      runSelfTest(ort, {
        executionProviders: ['cpu'],
        strict: true,
        sessionOptions: { logSeverityLevel: 4 }, // the refusal is expected: keep ORT's log quiet
      }),
    ).rejects.toThrow(/fallback/i);
  });

  test('maxAbsDiff flags length mismatches', () => {
    expect(maxAbsDiff([1, 2], [1, 2.5])).toBe(0.5);
    expect(maxAbsDiff([1], [1, 2])).toBe(Infinity);
  });
});
