import { defineConfig } from 'vite';

// Cross-origin isolation (SharedArrayBuffer → wasm threads for ONNX Runtime's CPU kernels).
// tools/serve.ts sends the same headers for the production build.
const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

export default defineConfig({
  server: { headers: isolationHeaders },
  preview: { headers: isolationHeaders },
  // ES module workers: the engine worker imports ONNX Runtime lazily (code splitting).
  worker: { format: 'es' },
  optimizeDeps: {
    // Pre-bundling would break the relative URLs inside onnxruntime-web; it is ESM already.
    exclude: ['onnxruntime-web'],
    // Imported only from the worker, which the dev server's scan does not see up front
    // (a late discovery reloads the page).
    include: ['onnx-proto', 'comlink'],
  },
  build: {
    target: 'es2022',
    // ORT's 26 MB wasm and its glue must stay separate files, never inlined.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1024,
  },
});
