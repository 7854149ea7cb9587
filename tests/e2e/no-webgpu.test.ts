// Without WebGPU the page still loads cleanly and says plainly why it cannot generate.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { RunningServer } from '../../tools/serve.ts';
import { launchChromium, openApp, serveDist, waitForReady } from './browser.ts';

let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  [server, browser] = await Promise.all([serveDist(), launchChromium({ webgpu: false })]);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

test('a browser without a WebGPU adapter gets a clear message and no self-test button', async () => {
  // Chromium itself warns when requestAdapter() finds nothing; that is the situation under test.
  const app = await openApp(browser, server.url, [/^No available adapters\.$/]);
  try {
    expect(await waitForReady(app.page)).toMatch(/WebGPU is not available/);
    const message = app.page.locator('.device-unavailable');
    // Chromium keeps navigator.gpu even with WebGPU switched off; requestAdapter() gives null.
    expect(await message.getAttribute('data-reason')).toBe('no-adapter');
    expect(await message.textContent()).toMatch(/no usable GPU adapter.*Chrome or Edge/);
    expect(await app.page.locator('.self-test').isHidden()).toBe(true);
    app.console.assertClean();
  } finally {
    await app.close();
  }
});
