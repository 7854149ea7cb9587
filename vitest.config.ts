import { defineConfig } from 'vitest/config';

// Projects: `unit` runs in Node (core, formats, graphs on onnxruntime-node, golden tests);
// `browser` drives the system Chromium (real WebGPU via SwiftShader) against the built app;
// `full-size` does the same with a full-size random checkpoint (not yet part of `npm test`).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['tests/unit/**/*.test.ts', 'tests/golden/**/*.test.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'browser',
          include: ['tests/e2e/**/*.test.ts'],
          // The full-size run (1.4 GB checkpoint, the released shapes) is its own project until it
          // passes within CI's time here: `npm run test:full-size`.
          exclude: ['tests/e2e/full-size.test.ts'],
          environment: 'node',
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'full-size',
          include: ['tests/e2e/full-size.test.ts'],
          environment: 'node',
          testTimeout: 600_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
