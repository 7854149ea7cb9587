// The contract between the page-side client and the engine worker. Both sides import this
// file: the worker implements EngineWorkerApi, the client calls it through Comlink.
import type { DeviceFacts } from '../core/device.ts';
import type { SelfTestResult } from '../core/runtime/self-test-graph.ts';
import type { CheckpointInspection, CheckpointPart } from '../core/formats/inspect-checkpoint.ts';

export type { CheckpointInspection, CheckpointPart, TensorDigest } from '../core/formats/inspect-checkpoint.ts';

/** What the worker's ORT self-test reports back. */
export interface SelfTestReport extends SelfTestResult {
  /** onnxruntime-web version that ran it. */
  ortVersion: string;
  /** The execution provider every node ran on (CPU fallback is disabled for the test). */
  executionProvider: 'webgpu';
  /** Threads ORT was configured with for its CPU kernels. */
  numThreads: number;
  /** Largest difference from the JS float64 reference of the same graph. */
  maxAbsDiffFromReference: number;
}

/** The API object the engine worker exposes. Every method is async across the boundary. */
export interface EngineWorkerApi {
  /** WebGPU adapter, features and limits as seen from the worker, or why there are none. */
  getDeviceInfo(): Promise<DeviceFacts>;
  /** Runs the small ORT graph (contrib ops included) on the WebGPU EP. */
  selfTest(): Promise<SelfTestReport>;
  /**
   * Reads the checkpoint at `baseUrl` (LM safetensors and/or decoder.jit) with range requests
   * and returns every tensor's SHA-256: proof that the worker reads the original files exactly.
   * `parts` says which it holds (default: each is looked for).
   */
  inspectCheckpoint(baseUrl: string, parts?: CheckpointPart[]): Promise<CheckpointInspection>;
}
