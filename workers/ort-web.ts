// Loads ONNX Runtime Web with the native WebGPU EP, once, and configures it for this worker.
// Vite turns the `?url` imports into URLs of ORT's runtime files copied into the build, so
// the wasm runtime and its pthread script load from our own origin, offline.
import ortMjsUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.mjs?url';
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url';
import { chooseNumThreads, configureOrtWeb } from '../src/core/runtime/ort-env.ts';

export type OrtWeb = typeof import('onnxruntime-web/webgpu');

let loading: Promise<OrtWeb> | undefined;

export function loadOrtWeb(): Promise<OrtWeb> {
  loading ??= import('onnxruntime-web/webgpu').then((ort) => {
    const numThreads = chooseNumThreads({
      crossOriginIsolated: self.crossOriginIsolated,
      hardwareConcurrency: navigator.hardwareConcurrency,
    });
    configureOrtWeb(ort.env, { assets: { mjs: ortMjsUrl, wasm: ortWasmUrl }, numThreads });
    return ort;
  });
  return loading;
}
