// The one engine API: the Node CLI, the tests and the worker drive the same `Engine`; the page
// holds a client with the same shape over Comlink.
import type { GenerationSettings, KeptRows } from './settings.ts';
import type { SjdStats } from './token-loop.ts';
import type { DecodedImage } from '../runtime/decoder-runner.ts';

export type { SjdStats, KeptRows };

export type GenerationPhase = 'prefill' | 'decode' | 'vq-decode';

export interface GenerationProgress {
  phase: GenerationPhase;
  /** Tokens sampled so far (decode), or 0/1 for the other phases. */
  done: number;
  total: number;
  /** The visual codes sampled so far, raster order (decode phase; a copy). */
  codes?: Int32Array;
  /** Latent grid side (codes per row). */
  gridSide: number;
  /** Which image of the request `codes` belong to (0 … count − 1); absent for a single image. */
  image?: number;
  /** Images in the request, when more than one. */
  count?: number;
  elapsedMs: number;
  tokensPerSecond?: number;
  etaMs?: number;
}

export interface GenerateOptions {
  onProgress?: (p: GenerationProgress) => void;
  signal?: AbortSignal;
  /**
   * Progress between latent rows (prefill runs, single steps) at most this often; rows and phase
   * changes are always reported. Default PROGRESS_INTERVAL_MS (engine.ts).
   */
  progressIntervalMs?: number;
}

export interface GenerationTimings {
  prefillMs: number;
  decodeMs: number;
  vqMs: number;
  totalMs: number;
}

/** What the decode loop did, counted: the evidence that the loop stays on the GPU. */
export interface GenerationStats {
  backend: EngineBackendKind;
  /** Tokens sampled (latent side², less the kept rows' codes). */
  steps: number;
  /**
   * session.run calls of the LM in the decode loop (one per step after the first token); with
   * SJD, window verifications (each one run per CFG stream: sjd.sessionRuns).
   */
  runs: number;
  /** session.run calls of the LM to prefill both prompts. */
  prefillRuns: number;
  /** GPU→CPU reads during the decode loop (token rows for progress + the final read). */
  readbacks: number;
  /** GPU buffers created during the decode loop after its warm-up (the first row). */
  steadyStateAllocations: number;
  /**
   * Tokens emitted per LM run in the decode loop: 1 without speculative decoding; with SJD, per
   * window verification (`runs` then counts verifications; sjd.sessionRuns the session calls).
   */
  acceptedPerRun: number;
  /** Speculative Jacobi decoding figures, when it was on. */
  sjd?: SjdStats;
  /** Graph capture in use for decode steps. */
  graphCapture: boolean;
  /** WebGPU: compute dispatches per decode step (the LM's kernels + the sampler's one). */
  dispatchesPerStep?: number;
  /**
   * Images decoded together in this image's pass (2 × that many streams; the step figures are the
   * pass's). 1, or absent, for a pass of one image.
   */
  imagesPerPass?: number;
  /**
   * Set when the f16 VQ decoder's activations overflowed (non-finite, or near f16's range) and the
   * image was decoded again with f32 activations; `reason` names the first failing point.
   */
  decoderFallback?: { activations: 'f32'; reason: string };
}

export interface GenerationResult {
  settings: GenerationSettings;
  /** Visual codes 0..63999, raster order. */
  codes: Int32Array;
  width: number;
  height: number;
  /** RGBA bytes, width × height × 4. */
  rgba: Uint8Array;
  timings: GenerationTimings;
  stats: GenerationStats;
  model: string;
  /** Latent rows kept from the request's `keep` (their codes head `codes`); absent when none. */
  keptRows?: number;
  /** Where this image sits in a request for several: its index and the request's count. */
  image?: { index: number; count: number };
}

export type EngineBackendKind = 'webgpu' | 'cpu' | 'wasm';

export interface Engine {
  readonly backend: EngineBackendKind;
  /** Settings may omit anything but the prompt; the seed is random when missing. */
  generate(request: GenerateRequest, options?: GenerateOptions): Promise<GenerationResult>;
  /**
   * `request.count` images of one prompt (image i: seed + i), in one batched pass where the
   * backend has one, else one after another; results in image order.
   */
  generateImages(request: GenerateRequest, options?: GenerateOptions): Promise<GenerationResult[]>;
  /** Visual codes (raster order, h × w) → RGBA through the model's VQ decoder alone. */
  decode(codes: Int32Array, h: number, w: number): Promise<DecodedImage>;
  dispose(): Promise<void>;
}

export type GenerateRequest = Partial<GenerationSettings> & {
  prompt: string;
  /**
   * Images from this request (1 … MAX_IMAGES_PER_REQUEST, default 1): image i uses seed + i. Only
   * `generateImages` takes more than one.
   */
  count?: number;
  /** Redraw below a row: keep the top `rows` latent rows of `codes` and sample the rest. */
  keep?: KeptRows;
};
