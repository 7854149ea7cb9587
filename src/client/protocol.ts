// The contract between the page-side client and the engine worker. Both sides import this
// file: the worker implements EngineWorkerApi, the client calls it through Comlink.
import type { DeviceFacts } from '../core/device.ts';
import type { SelfTestResult } from '../core/runtime/self-test-graph.ts';
import type { CheckpointInspection, CheckpointPart } from '../core/formats/inspect-checkpoint.ts';
import type { EngineBackendKind, GenerateRequest, GenerationProgress, GenerationResult } from '../core/engine/types.ts';
import type { LmWeightFormat } from '../core/convert/lm/convert-weights.ts';

export type { EngineBackendKind, GenerateRequest, GenerationProgress, GenerationResult } from '../core/engine/types.ts';

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
  /** Loads (converting as needed) a model and builds the engine on the best backend. */
  loadModel(source: ModelSource, options?: LoadModelOptions): Promise<LoadedModelInfo>;
  /** Generates one image; `onProgress` is a Comlink proxy; `id` lets `cancel` reach it. */
  generate(id: number, request: GenerateRequest, onProgress?: (p: GenerationProgress) => void): Promise<GenerationResult>;
  /** Cancels generation `id` within one step; the engine stays ready. */
  cancel(id: number): Promise<void>;
  /** GPU buffers the engine's device holds now (all of ONNX Runtime's included). */
  gpuMemory(): Promise<{ liveBuffers: number; liveBytes: number; created: number } | null>;
}

/** Where the model comes from. */
export type ModelSource = {
  kind: 'original';
  /** Base URL of an HF-layout SimpleAR folder (config.json, model.safetensors, tokenizer.json…). */
  model: string;
  /** Base URL of the Cosmos tokenizer folder (decoder.jit). */
  vq: string;
};

export interface LoadModelOptions {
  weights?: LmWeightFormat;
  decoderDtype?: 'f16' | 'f32';
  /** 'auto': WebGPU when there is an adapter, else the wasm EP. */
  backend?: 'auto' | 'webgpu' | 'wasm';
  activations?: 'f16' | 'f32';
  /** Largest latent side the engine is sized for (64 = 1024 px). */
  maxLatentSide?: number;
}

export interface LoadedModelInfo {
  name: string;
  backend: EngineBackendKind;
  activations: 'f16' | 'f32';
  hiddenSize: number;
  numLayers: number;
  visualOffset: number;
}
