import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import ts from 'typescript';
import { build, defineConfig, type Plugin } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';

// Cross-origin isolation (SharedArrayBuffer → wasm threads for ONNX Runtime's CPU kernels).
// tools/serve.ts sends the same headers for the production build (plus the ones that let other
// sites frame embed.html and load embed.js).
const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** ORT's wasm is ~26 MB; Workbox skips files over its 2 MiB default without this. */
const MAX_PRECACHED_FILE_BYTES = 64 * 1024 * 1024;

/**
 * embed.d.ts beside embed.js: the declarations of the host library and the protocol in one file
 * (the library has explicit types at its boundary, so each file's declarations stand alone).
 */
function embedDeclarations(root: string): string {
  const declarations = (file: string) =>
    ts.transpileDeclaration(readFileSync(resolve(root, file), 'utf8'), { fileName: file, compilerOptions: { target: ts.ScriptTarget.ES2022 } }).outputText;
  const host = declarations('src/embed/host.ts')
    .split('\n')
    .filter((line) => !line.includes("from './protocol.ts'"))
    .join('\n');
  return `// Types of embed.js (SimpleAR widget host library), protocol version included.\n${declarations('src/embed/protocol.ts')}\n${host}`;
}

/**
 * embed.js, the host library other sites load from us: one self-contained ES module at a stable
 * URL (no hash, no shared chunks), so it is built on its own after the app; embed.d.ts types it.
 */
function embedHostLibrary(): Plugin {
  let outDir = 'dist';
  let root = process.cwd();
  return {
    name: 'simplear-embed-host-library',
    apply: 'build',
    configResolved(config) {
      root = config.root;
      outDir = resolve(config.root, config.build.outDir);
    },
    async writeBundle() {
      await build({
        configFile: false,
        root,
        logLevel: 'warn',
        build: {
          outDir,
          emptyOutDir: false,
          copyPublicDir: false,
          target: 'es2022',
          // Readable: host pages may read what they load.
          minify: false,
          lib: { entry: resolve(root, 'src/embed/host.ts'), formats: ['es'], fileName: () => 'embed.js' },
        },
      });
      writeFileSync(resolve(outDir, 'embed.d.ts'), embedDeclarations(root));
    },
  };
}

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
    rolldownOptions: {
      // Two pages: the app and the iframe widget.
      input: { main: resolve(import.meta.dirname, 'index.html'), embed: resolve(import.meta.dirname, 'embed.html') },
    },
  },
  plugins: [
    VitePWA({
      // src/pwa/register.ts registers it with workbox-window and asks before updating.
      injectRegister: false,
      registerType: 'prompt',
      filename: 'sw.js',
      manifest: {
        id: './',
        name: 'SimpleAR — text to image on your GPU',
        short_name: 'SimpleAR',
        description: 'Text to image, computed on your own GPU with WebGPU. Nothing leaves your device.',
        start_url: './',
        scope: './',
        display: 'standalone',
        background_color: '#f7f7f5',
        theme_color: '#3b5bdb',
        icons: [
          { src: 'icons/icon-192.png', sizes: '192x192', type: 'image/png' },
          { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png' },
          { src: 'icons/icon-maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
        ],
      },
      workbox: {
        // The shell, the engine worker and ONNX Runtime's wasm/mjs: all the app needs offline
        // (the model itself lives in IndexedDB). embed.js is for other sites: not precached.
        globPatterns: ['**/*.{html,js,mjs,css,wasm,png,svg,webmanifest}'],
        globIgnores: ['embed.js', 'embed.d.ts'],
        maximumFileSizeToCacheInBytes: MAX_PRECACHED_FILE_BYTES,
        // Model URLs and settings travel in the query string: serve the cached page whatever it is.
        ignoreURLParametersMatching: [/.*/],
        navigateFallback: 'index.html',
        navigateFallbackDenylist: [/^\/embed\.js$/],
        cleanupOutdatedCaches: true,
        // Never swap code under a running page: the new worker waits until the user says so.
        skipWaiting: false,
        clientsClaim: false,
      },
    }),
    embedHostLibrary(),
  ],
});
