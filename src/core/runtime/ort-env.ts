// How ONNX Runtime Web is set up in the engine worker: where its wasm runtime lives and how
// many CPU threads it may use. The asset URLs come from the bundler (the worker passes them);
// this module only decides policy, so it stays free of bundler and DOM specifics.
import type { Env } from 'onnxruntime-web';

/** URLs of ORT's runtime files for the native WebGPU EP build (the "asyncify" variant). */
export interface OrtWasmAssets {
  /** ort-wasm-simd-threaded.asyncify.mjs: the Emscripten glue; also the pthread worker script. */
  mjs: string;
  /** ort-wasm-simd-threaded.asyncify.wasm */
  wasm: string;
}

/** The facts the thread count depends on. */
export interface ThreadingFacts {
  crossOriginIsolated: boolean;
  hardwareConcurrency: number;
}

/** More threads than this rarely helps ORT's CPU kernels and costs a worker each. */
const MAX_THREADS = 4;

/**
 * Threads for ORT's CPU kernels (the wasm EP, and CPU work around the WebGPU EP). wasm
 * threads need SharedArrayBuffer, which needs cross-origin isolation; without it, one.
 * With it: half the cores (leave the page and GPU driver room), at most MAX_THREADS.
 */
export function chooseNumThreads(facts: ThreadingFacts): number {
  if (!facts.crossOriginIsolated) return 1;
  const cores = facts.hardwareConcurrency > 0 ? facts.hardwareConcurrency : 1;
  return Math.max(1, Math.min(MAX_THREADS, Math.ceil(cores / 2)));
}

export interface OrtWebSettings {
  assets: OrtWasmAssets;
  numThreads: number;
}

/** Applies the settings to `ort.env`; must run before the first session is created. */
export function configureOrtWeb(env: Env, settings: OrtWebSettings): void {
  env.wasm.wasmPaths = { mjs: settings.assets.mjs, wasm: settings.assets.wasm };
  env.wasm.numThreads = settings.numThreads;
  // ORT's own warnings (e.g. "some nodes run on the CPU", by design for shape ops) are not the
  // user's business; real failures still reject.
  env.logLevel = 'error';
  // The engine already runs in a worker; ORT's own proxy worker would only add a hop.
  env.wasm.proxy = false;
}
