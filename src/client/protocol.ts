// The contract between the page-side client and the engine worker. Both sides import this
// file: the worker implements EngineWorkerApi, the client calls it through Comlink.
import type { DeviceFacts } from '../core/runtime/device.ts';
import type { SelfTestResult } from '../core/runtime/self-test-graph.ts';
import type { DecodedImage } from '../core/runtime/decoder-runner.ts';
import type { CheckpointInspection, CheckpointPart } from '../core/formats/inspect-checkpoint.ts';
import type { EngineBackendKind, GenerateRequest, GenerationProgress, GenerationResult } from '../core/engine/types.ts';
import type { CachedModel, LoadModelOptions, ModelPlan, ModelSource, PrepareProgress } from '../core/store/types.ts';

export type { EngineBackendKind, GenerateRequest, GenerationProgress, GenerationResult } from '../core/engine/types.ts';

export type { CheckpointInspection, CheckpointPart, TensorDigest } from '../core/formats/inspect-checkpoint.ts';

export type { CachedModel, LoadModelOptions, ModelPlan, ModelSource, PrepareProgress } from '../core/store/types.ts';

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
  /** Size, storage needed and cache state of a model source, before any download. */
  planModel(source: ModelSource, options?: LoadModelOptions): Promise<ModelPlan>;
  /**
   * Makes the model ready from the browser's storage: downloads what is missing (resuming with
   * range requests, re-fetching any chunk whose SHA-256 is wrong), converts and stores the
   * bundle in IndexedDB, then loads the engine from it. A cached model makes no requests.
   * `id` lets `cancel` reach it.
   */
  prepareModel(
    id: number,
    source: ModelSource,
    options?: LoadModelOptions,
    onProgress?: (p: PrepareProgress) => void,
  ): Promise<PreparedModelInfo>;
  /** Models in the browser's storage, complete or partial. */
  listCachedModels(): Promise<CachedModel[]>;
  /** Deletes a stored model (bundle and any partial download). Unloads it if loaded. */
  deleteCachedModel(modelId: string): Promise<void>;
  /** GPU buffers the engine's device holds now (all of ONNX Runtime's included). */
  gpuMemory(): Promise<{ liveBuffers: number; liveBytes: number; created: number } | null>;
  /**
   * Decodes `codes` (a side × side latent of visual codes 0..63999, raster order) with the loaded
   * model's VQ decoder alone, on the engine's backend: the decoder checked without a generation.
   */
  decode(codes: Int32Array, side: number): Promise<DecodeResult>;
  /**
   * For tests only: destroys the engine's GPUDevice as a driver reset would lose it. The next
   * call that needs the GPU rejects with DeviceLost; the client then starts a fresh worker.
   * Resolves false when no device was in use.
   */
  debugLoseDevice(): Promise<boolean>;
}

export interface LoadedModelInfo {
  name: string;
  backend: EngineBackendKind;
  activations: 'f16' | 'f32';
  hiddenSize: number;
  numLayers: number;
  visualOffset: number;
  /**
   * The live-preview colour map (src/core/model/preview.ts: 3×7 coefficients) fitted at conversion,
   * when the model has one: the page paints the tokens of a running generation with it.
   */
  preview?: number[];
  /** Where the load's time went (ms, worker clock): for benchmarks and bug reports. */
  timings?: LoadTimings;
}

/**
 * The phases of a model load in the worker. `engineMs` covers building the graphs and creating
 * the sessions (`sessions`: ONNX Runtime's own part: parsing, optimising, weights into the
 * wasm heap or onto the GPU), any runs during the load (`runsMs`) and, on WebGPU, waiting for the
 * GPU to finish the uploads and those runs.
 */
export interface LoadTimings {
  /** Reading the bundle from storage with each chunk's SHA-256 checked, and the tokenizer. */
  readMs?: number;
  engineMs: number;
  /** Each session's creation: what it was (bytes of its model + external data) and how long it took. */
  sessions: { bytes: number; ms: number }[];
  /** In the sessions' runs during the load (WebGPU: the warm-up runs that check graph capture). */
  runsMs: number;
  totalMs: number;
}

export interface PreparedModelInfo extends LoadedModelInfo {
  modelId: string;
  /** Loaded from storage with no download. */
  fromCache: boolean;
}

/** What `decode` returns: the decoder's image, and the time it took in the worker (ms). */
export interface DecodeResult extends DecodedImage {
  ms: number;
}
