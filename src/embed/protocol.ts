// The postMessage protocol between a host page and the SimpleAR widget (embed.html in an
// iframe). Versioned: the widget announces `version` in its ready message; a host built for
// another major version should not drive it. Types only, plus the version constant, so the host
// library (embed.js) and the widget share one definition without sharing code.

/** Bumped on any incompatible change to the messages below. */
export const PROTOCOL_VERSION = 1;

/** A host's name for one request; echoed on every message about it. */
export type RequestId = string | number;

// ── host → widget ──────────────────────────────────────────────────────────────────────────

/** Settings a host may send; anything left out takes the widget's default (query string). */
export interface GenerateParams {
  prompt: string;
  /** Left out: SimpleAR's own negative prompt. "" is the null condition (plain CFG), as in the
   * engine's API and the CLI; any other text is used as written. */
  negativePrompt?: string;
  /** Image side in pixels, a multiple of 16. */
  size?: number;
  cfg?: number;
  /** Transformers' repetition penalty, (0, 10], 1 = off; left out: the model's own
   * (generation_config.json, else 1). */
  repetitionPenalty?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  /** uint32; random when left out (the result reports the one used). Image i of a request uses seed + i. */
  seed?: number;
  /**
   * Images of this prompt, 1 … 8 (left out: 1, whatever the widget's own `?count=`): one result
   * message each, in image order, image i with seed + i. The widget's engine makes them in one
   * batched pass where its backend has one, else one after another.
   */
  count?: number;
  /**
   * Redraw below a row: keep the top `rows` latent rows of an earlier image's `codes` (a result's
   * `codes`, raster order, (size/16)² of them) and draw the rest again; 0 ≤ rows < size/16.
   */
  keep?: KeptRowsParam;
}

/** An earlier image's visual codes and how many of its latent rows (16 px each) to keep. */
export interface KeptRowsParam {
  codes: readonly number[] | Int32Array;
  rows: number;
}

export interface GenerateMessage extends GenerateParams {
  type: 'simplear:generate';
  id: RequestId;
}

export interface CancelMessage {
  type: 'simplear:cancel';
  id: RequestId;
}

export type HostMessage = GenerateMessage | CancelMessage;

// ── widget → host ──────────────────────────────────────────────────────────────────────────

/** Where the widget's model copy lives (browsers partition third-party storage per site). */
export type WidgetStorage =
  /** Top-level or same-site: the model cache is shared with our own app. */
  | 'first-party'
  /** Cross-site iframe: this embedding site keeps its own copy of the model. */
  | 'partitioned'
  /** The browser gives this frame no storage (e.g. third-party storage blocked): the model is
   * downloaded into memory on each visit and not kept. */
  | 'unavailable';

export interface WidgetCapabilities {
  /** WebGPU adapter available to the widget's engine (else ONNX Runtime's wasm EP, slow). */
  webgpu: boolean;
  /** SharedArrayBuffer (wasm threads); false inside a host that is not cross-origin isolated. */
  crossOriginIsolated: boolean;
  storage: WidgetStorage;
  /** `simplear:cancel` is honoured. */
  cancel: true;
  /** Most images one request may ask for (`count`); absent from widgets older than `count`. */
  maxCount?: number;
  /** `keep` (redraw below a row) is honoured; absent from widgets older than it. */
  keep?: true;
  sizes: { min: number; max: number; default: number };
}

export interface ReadyMessage {
  type: 'simplear:ready';
  version: number;
  capabilities: WidgetCapabilities;
}

/**
 * Model preparation (`download`, `convert`, `verify`, `load`: on the first request, or
 * after the model changed) and generation (`prefill`, `decode`, `vq-decode`). For `download`,
 * done/total are bytes; for `decode`, tokens.
 */
export type ProgressPhase = 'queued' | 'download' | 'convert' | 'verify' | 'load' | 'prefill' | 'decode' | 'vq-decode';

export interface ProgressMessage {
  type: 'simplear:progress';
  id: RequestId;
  phase: ProgressPhase;
  done: number;
  total: number;
  /** The image of a request for several (0 … count − 1) the generation phases are about; absent
   * for one image and for the model's preparation. In a batched pass the images advance together. */
  image?: number;
  /** The request's count, beside `image`. */
  count?: number;
}

/** One per image, in image order; the request is complete after the one whose index is count − 1. */
export interface ResultMessage {
  type: 'simplear:result';
  id: RequestId;
  /** image/png, RGB, with the prompt and settings in its text chunks. */
  png: Blob;
  seed: number;
  width: number;
  height: number;
  /** This image's place in its request: 0 … count − 1, and the request's count (1 for one image). */
  index: number;
  count: number;
  /** The image's visual codes, raster order, (width/16)²: what a later request's `keep` takes. */
  codes: Int32Array;
  /** Latent rows kept from the request's `keep`; absent when none. */
  keptRows?: number;
}

/**
 * `Aborted` (cancelled), `InvalidRequest` (malformed message or a duplicate id),
 * `InvalidSettings` / `PromptTooLong` (bad settings), `WebGPUUnavailable`, `HttpError`,
 * `QuotaExceeded`, … (the engine's codes), `Internal` (anything else).
 */
export interface ErrorMessage {
  type: 'simplear:error';
  id: RequestId;
  code: string;
  message: string;
  /** For InvalidSettings: the request field at fault (`prompt`, `size`, `count`, `keep`, …). */
  field?: string;
}

export type WidgetMessage = ReadyMessage | ProgressMessage | ResultMessage | ErrorMessage;
