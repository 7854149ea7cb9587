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
  /** uint32; random when left out (the result reports the one used). */
  seed?: number;
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
}

export interface ResultMessage {
  type: 'simplear:result';
  id: RequestId;
  /** image/png, RGB, with the prompt and settings in its text chunks. */
  png: Blob;
  seed: number;
  width: number;
  height: number;
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
}

export type WidgetMessage = ReadyMessage | ProgressMessage | ResultMessage | ErrorMessage;
