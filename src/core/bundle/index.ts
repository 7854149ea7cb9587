// Converted bundles: chunk files + manifest.json (format: see manifest.ts).
export * from './manifest.ts';
export * from './writer.ts';
export * from './reader.ts';
export * from './memory.ts';
// Node only (dynamic imports of node:fs inside): createNodeBundleSink from './node-sink.ts'.
