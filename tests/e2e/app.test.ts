// The built app in a real Chromium with WebGPU: it loads cleanly, the device panel shows the
// adapter as the worker sees it, and ORT Web's WebGPU EP in the worker computes the same
// numbers as onnxruntime-node for the self-test graph.
import * as ortNode from 'onnxruntime-node';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { SelfTestReport } from '../../src/client/protocol.ts';
import { maxAbsDiff, runSelfTest } from '../../src/core/runtime/self-test-graph.ts';
import type { RunningServer } from '../../tools/serve.ts';
import { deviceFact, launchChromium, openApp, serveDist, waitForReady } from './browser.ts';

let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  [server, browser] = await Promise.all([serveDist(), launchChromium()]);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe('app with WebGPU', () => {
  test('loads without console errors and shows the adapter facts reported by the worker', async () => {
    const app = await openApp(browser, server.url);
    try {
      expect(await app.page.title()).toContain('SimpleAR');
      expect(await waitForReady(app.page)).toMatch(/^Ready\./);
      // SwiftShader: Chromium's software WebGPU adapter (what a GPU-less machine offers).
      expect(await deviceFact(app.page, 'architecture')).toBe('swiftshader');
      expect(await deviceFact(app.page, 'fallback')).toMatch(/^Yes/);
      expect(await deviceFact(app.page, 'shader-f16')).toMatch(/^(Yes|No)/);
      expect(await deviceFact(app.page, 'max-buffer-size')).toMatch(/\d (KiB|MiB|GiB|TiB)$/);
      expect(await deviceFact(app.page, 'max-storage-binding')).toMatch(/\d (KiB|MiB|GiB|TiB)$/);
      // COOP/COEP from tools/serve.ts reach the worker: wasm threads are possible.
      expect(await deviceFact(app.page, 'cross-origin-isolated')).toBe('Yes');
      expect(await app.page.locator('.self-test-run').isEnabled()).toBe(true);
      app.console.assertClean();
    } finally {
      await app.close();
    }
  });

  test('the worker runs the self-test graph on the WebGPU EP with the same numbers as onnxruntime-node', async () => {
    const app = await openApp(browser, server.url);
    try {
      await waitForReady(app.page);
      await app.page.locator('.self-test-run').click();
      const summary = app.page.locator('.self-test-summary[data-state="passed"], .self-test-summary[data-state="failed"]');
      await summary.waitFor({ timeout: 180_000 });
      const report = JSON.parse((await app.page.locator('.self-test-raw pre').textContent())!) as SelfTestReport;

      const node = await runSelfTest(ortNode, { executionProviders: ['cpu'] });
      expect(report.executionProvider).toBe('webgpu');
      expect(report.outputs.y.dims).toEqual(node.outputs.y.dims);
      expect(report.outputs.residual.dims).toEqual(node.outputs.residual.dims);
      expect(maxAbsDiff(report.outputs.y.data, node.outputs.y.data)).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(report.outputs.residual.data, node.outputs.residual.data)).toBeLessThanOrEqual(1e-5);
      expect(await summary.getAttribute('data-state')).toBe('passed');
      app.console.assertClean();
    } finally {
      await app.close();
    }
  });
});
