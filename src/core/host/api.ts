// The engine API: one interface for every host of the engine. EngineHost (engine-host.ts) implements
// it in-process (the CLI in Node, the engine worker); EngineClient (src/client) implements it on
// the page by calling the worker, whose bridge hands each call to an EngineHost.
import type { DeviceFacts } from '../runtime/device.ts';
import type { SelfTestResult } from '../runtime/self-test-graph.ts';
import type { DecodedImage } from '../runtime/decoder-runner.ts';
import type { CheckpointInspection, CheckpointPart } from '../formats/inspect-checkpoint.ts';
import type { EngineBackendKind, GenerateRequest, GenerationProgress, GenerationResult } from '../engine/types.ts';
import type { CachedModel, LoadModelOptions, ModelPlan, ModelSource, PrepareProgress } from '../store/types.ts';

/** Every call may carry a signal. Calls that can stop early (generate, prepareModel) stop on it. */
export interface CallOptions {
  signal?: AbortSignal;
}

export interface LoadOptions extends LoadModelOptions, CallOptions {
  /** The model's name in results and PNG metadata (default: the source's URL). */
  name?: string;
}

export interface PrepareModelOptions extends LoadModelOptions, CallOptions {
  onProgress?: (p: PrepareProgress) => void;
}

export interface GenerateCallOptions extends CallOptions {
  onProgress?: (p: GenerationProgress) => void;
}

/** GPU buffers the engine's device holds (all of ONNX Runtime's included). */
export interface GpuMemory {
  liveBuffers: number;
  liveBytes: number;
  created: number;
}

/** The engine's API. Every method is async: across the worker boundary it must be. */
export interface EngineApi {
  /** WebGPU adapter, features and limits as the engine sees them, or why there are none. */
  getDeviceInfo(options?: CallOptions): Promise<DeviceFacts>;
  /** Runs the small ORT graph (contrib ops included) on the WebGPU EP. */
  selfTest(options?: CallOptions): Promise<SelfTestReport>;
  /**
   * Reads the checkpoint at `baseUrl` (LM safetensors and/or decoder.jit) with range requests
   * and returns every tensor's SHA-256: proof that the engine reads the original files exactly.
   * `parts` says which it holds (default: each is looked for).
   */
  inspectCheckpoint(baseUrl: string, options?: { parts?: CheckpointPart[] } & CallOptions): Promise<CheckpointInspection>;
  /**
   * Loads a model and builds the engine on the best backend (replacing any loaded one): original
   * checkpoints are converted in memory; a bundle is read as it is (no store).
   */
  loadModel(source: ModelSource, options?: LoadOptions): Promise<LoadedModelInfo>;
  /** Size, storage needed and cache state of a model source, before any download. */
  planModel(source: ModelSource, options?: LoadModelOptions & CallOptions): Promise<ModelPlan>;
  /**
   * Makes the model ready from the model store: downloads what is missing (resuming with range
   * requests, re-fetching any chunk whose SHA-256 is wrong), converts and stores the bundle, then
   * loads the engine from it. A cached model makes no requests. Aborting `signal` stops it; what
   * is stored is kept.
   */
  prepareModel(source: ModelSource, options?: PrepareModelOptions): Promise<PreparedModelInfo>;
  /** Models in the store, complete or partial. */
  listCachedModels(options?: CallOptions): Promise<CachedModel[]>;
  /** Deletes a stored model (bundle and any partial download). Unloads it if loaded. */
  deleteCachedModel(modelId: string, options?: CallOptions): Promise<void>;
  /**
   * Generates one image. Aborting `signal` cancels it within one step and rejects with an
   * AbortError; the engine stays ready for the next call.
   */
  generate(request: GenerateRequest, options?: GenerateCallOptions): Promise<GenerationResult>;
  /**
   * `request.count` images of one prompt (1–8; image i uses seed + i), results in image order: in
   * one batched pass (2 × count streams, the weights read once per step for all) where the
   * backend has one, else one after another. A count whose streams would not fit is refused with
   * InvalidSettings (field `count`) before any work. Progress names the image (`image`).
   */
  generateImages(request: GenerateRequest, options?: GenerateCallOptions): Promise<GenerationResult[]>;
  /**
   * Decodes `codes` (a side × side latent of visual codes 0..63999, raster order) with the loaded
   * model's VQ decoder alone, on the engine's backend: the decoder checked without a generation.
   */
  decode(codes: Int32Array, side: number, options?: CallOptions): Promise<DecodeResult>;
  /** GPU buffers the engine's device holds now, or null before the GPU is in use. */
  gpuMemory(options?: CallOptions): Promise<GpuMemory | null>;
  /**
   * For tests only: destroys the engine's GPUDevice as a driver reset would lose it. The next
   * call that needs the GPU rejects with DeviceLost (the page's client then starts a fresh
   * worker). Resolves false when no device was in use.
   */
  debugLoseDevice(options?: CallOptions): Promise<boolean>;
}

/** What the ORT self-test reports back. */
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
  /** Where the load's time went (ms, the host's clock): for benchmarks and bug reports. */
  timings?: LoadTimings;
}

/**
 * The phases of a model load. `engineMs` covers building the graphs and creating the sessions
 * (`sessions`: ONNX Runtime's own part: parsing, optimising, weights into the wasm heap or onto
 * the GPU), any runs during the load (`runsMs`) and, on WebGPU, waiting for the GPU to finish the
 * uploads and those runs.
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

/** What `decode` returns: the decoder's image, and the time it took in the host (ms). */
export interface DecodeResult extends DecodedImage {
  ms: number;
}
