// The model store's types: where a model comes from, what preparing it costs, its progress and
// what is held in storage. Core-owned so the store, the worker, the CLI and tests share them;
// the page-side worker protocol re-exports them.
import type { LmWeightFormat } from '../model/quantize.ts';
import type { BackendPlan, ModelFootprint } from '../engine/capabilities.ts';

/** Where the model comes from. */
export type ModelSource =
  | {
      kind: 'original';
      /** Base URL of an HF-layout SimpleAR folder (config.json, model.safetensors, tokenizer.json…). */
      model: string;
      /** Base URL of the Cosmos tokenizer folder (decoder.jit). */
      vq: string;
    }
  | {
      kind: 'bundle';
      /** Base URL of a converted bundle (manifest.json + chunk files, as `cli convert` writes). */
      url: string;
    };

/** What preparing a model will cost, asked before anything is downloaded. */
export interface ModelPlan {
  /** The store's key for this source + weight format. */
  modelId: string;
  /** A complete, verified bundle is stored: loading makes no network requests. */
  cached: boolean;
  /** Bytes still to download (0 when cached; less than the total when a download resumes). */
  downloadBytes: number;
  /** Bytes of the download already stored by an earlier, interrupted visit. */
  storedBytes: number;
  /** Storage needed at the peak of preparation (downloaded originals + converted bundle). */
  peakStorageBytes: number;
  /** Storage the model keeps once prepared (the converted bundle). */
  finalStorageBytes: number;
  /** navigator.storage.estimate() as the worker sees it, when the browser offers it. */
  storage: { usage: number; quota: number } | null;
  /** The model's shapes and weight format, for the backend check; absent for a stored model. */
  footprint?: ModelFootprint;
  /** What will run where on this device (engine/capabilities.ts planBackend), added by the engine worker. */
  backend?: BackendPlan;
  /** Why this device cannot run it as asked, and what to choose instead (nothing was downloaded). */
  refusal?: { code: 'BackendUnsupported'; message: string };
}

/** Progress of prepareModel, phase by phase. */
export type PrepareProgress =
  | {
      phase: 'download';
      /** Bytes stored so far (resumed bytes included) of totalBytes. */
      bytes: number;
      totalBytes: number;
      /** Bytes fetched in this session (excludes what was already stored). */
      fetchedBytes: number;
      bytesPerSecond: number;
      etaMs: number | null;
      /** The file being fetched. */
      file: string;
    }
  | { phase: 'convert'; step: string; done: number; total: number }
  | { phase: 'verify'; done: number; total: number }
  | { phase: 'load'; done: number; total: number };

/** A model held in the browser's storage. */
export interface CachedModel {
  modelId: string;
  name: string;
  source: ModelSource;
  weights: LmWeightFormat;
  /** Bytes held (bundle chunks + any partial download). */
  bytes: number;
  /** false: an interrupted download or conversion (prepareModel resumes it). */
  complete: boolean;
  createdAt: string;
  lastUsedAt?: string;
}

export interface LoadModelOptions {
  weights?: LmWeightFormat;
  decoderDtype?: 'f16' | 'f32';
  /** 'auto': WebGPU when there is an adapter, else the wasm EP. */
  backend?: 'auto' | 'webgpu' | 'wasm';
  activations?: 'f16' | 'f32';
  /** Largest latent side the engine is sized for (64 = 1024 px). */
  maxLatentSide?: number;
  /**
   * WebGPU: record the decode step once and replay it (ORT's graph capture). Default: on for a
   * hardware adapter, off for a software one (createWebGpuEngine says why).
   */
  graphCapture?: boolean;
  /**
   * prepareModel: bytes per range request and stored block of the original files (default
   * 8 MiB). A download that resumes keeps the block size it started with.
   */
  downloadBlockBytes?: number;
}
