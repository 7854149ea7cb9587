// The app in a browser with no WebGPU adapter: the model still prepares (on the CPU, wasm), the
// page measures this device's speed with a small test image and shows the estimate it gives
// (numbers computed from that measurement), and an image is generated and shown.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openFixtureApp, waitForReady, type AppSession, type FixtureApp } from './browser.ts';
import { CPU_FALLBACK } from '../../src/core/runtime/device.ts';

let fixture: FixtureApp;
let session: AppSession;
// Chromium itself says so when it finds no adapter.
const NO_ADAPTER = [/No available adapters/];

beforeAll(async () => {
  fixture = await openFixtureApp({ webgpu: false, allow: NO_ADAPTER, model: { lm: 'tiny-simplear', vq: 'tiny-cosmos' }, waitReady: false });
  ({ session } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

it('without WebGPU the model runs on the CPU, the page shows a measured time estimate, and generates', async () => {
  const { page } = session;
  expect(await waitForReady(page)).toMatch(/^WebGPU is not available: images can still be made on the CPU/);
  // One message: the status line and the device panel say the same about this device.
  expect(await page.locator('#status').textContent()).toContain(CPU_FALLBACK);
  expect(await page.locator('.device-unavailable').textContent()).toContain(CPU_FALLBACK);
  // The 1.5B models are not offered here, and the list says why.
  expect(await page.locator('#model-select option[value="simplear-1.5b-rl"]').isDisabled()).toBe(true);
  expect(await page.locator('#model-select option[value="simplear-1.5b-rl"]').textContent()).toMatch(/not on this device: without WebGPU/);

  await page.locator('.model-action').click();
  await page.locator('#model-plan[data-download-bytes]').waitFor({ timeout: 60_000 });
  // Before the download, the plan says what will run where.
  expect(await page.locator('#model-plan').getAttribute('data-backend')).toBe('wasm');
  expect(await page.locator('#model-plan').textContent()).toMatch(/Runs on the CPU \(WebAssembly, no WebGPU\) with \S+ weights and f32 activations, about \d+\.\d GiB of the 4\.0 GiB/);
  await page.locator('.model-action').click();
  await page.locator('.model-loaded').waitFor({ timeout: 120_000 });
  expect(await page.locator('.model-loaded').textContent()).toMatch(/runs on the CPU \(no WebGPU: much slower\)/);

  // The estimate: measured prompt time and ms per token, scaled to 256/512/1024 px.
  const notice = page.locator('.engine-notice', { hasText: 'Measured on this device' });
  await notice.waitFor({ timeout: 120_000 });
  const text = (await notice.textContent())!;
  const msPerToken = Number(text.match(/ (\d+) ms per token \(a 16-token test image\)/)![1]);
  expect(msPerToken).toBeGreaterThan(0);
  expect(text).toMatch(/1024 px \(4096 tokens\): at least .+\. Later tokens/);

  await page.locator('#prompt').fill('a small house by a lake');
  await page.locator('.advanced summary').click();
  await page.locator('#setting-size').fill('32');
  await page.locator('button.generate:not([disabled])').click();
  await page.locator('.stage[data-state="image"]').waitFor({ timeout: 120_000 });
  expect(await page.locator('[data-result="model"] dd').textContent()).toMatch(/ on wasm$/);
  // The gallery saves after the PNG is encoded (in its own worker): wait for it, then count.
  await page.locator('.gallery-item').first().waitFor({ timeout: 30_000 });
  expect(await page.locator('.gallery-item').count()).toBe(1);
  session.console.assertClean();
});
