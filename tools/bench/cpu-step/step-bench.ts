// What the timings beside a variant's plain step share: its session and the plain step itself,
// so they run at the same context and are timed alternately with it.
import type { LmSpec } from '../../../src/core/base/model-spec.ts';
import type { KvCacheMode } from '../../../src/core/model/lm-graph.ts';

export type Ort = typeof import('onnxruntime-node');

/** One variant's session and the plain step the extra timings are measured alongside. */
export interface StepBench {
  ort: Ort;
  session: import('onnxruntime-node').InferenceSession;
  spec: LmSpec;
  /** The engine's largest cache (slots per row). */
  capacity: number;
  /** The context of every measured step (cond, uncond). */
  lengths: number[];
  token: number;
  plainStep: () => Promise<unknown>;
  quick: boolean;
  dtype: 'float32' | 'float16';
  kvCache: KvCacheMode;
}
