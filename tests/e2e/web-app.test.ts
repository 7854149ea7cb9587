// The app as a first-time user meets it, in a real Chromium on WebGPU (SwiftShader), with the tiny
// fixture checkpoints served from another origin as a mirror (?model=&vq=):
//  - first visit: the size is shown before anything downloads; download and conversion progress
//    are visible; the image forms row by row and is shown; the PNG carries its settings;
//  - reload (same browser profile): the model loads from IndexedDB with no request at all to the
//    mirror, the gallery is still there, and re-running its image gives the same picture;
//  - Escape cancels mid-generation and the next generation works;
//  - gallery delete and storage delete do what they say.
import { readFile, stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ConsoleWatch, launchChromium, serveDist } from './browser.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';
import { FIXTURES } from '../helpers/fixture-model.ts';
import { decodePng } from '../../src/core/image/png.ts';
import type { RunningServer } from '../../tools/serve.ts';
import type { EngineClient } from '../../src/client/engine-client.ts';

let browser: Browser;
let app: RunningServer;
let files: TestServer;
let context: BrowserContext;
let watch: ConsoleWatch;
let page: Page;
let appUrl: string;

/** Every (title · detail) the progress views showed, in order: recorded in the page as it happens. */
const RECORD_PROGRESS = `
  window.__progress = [];
  new MutationObserver(() => {
    for (const view of document.querySelectorAll('.progress:not([hidden])')) {
      const line = view.querySelector('.progress-title')?.textContent + ' · ' + view.querySelector('.progress-detail')?.textContent;
      if (window.__progress.at(-1) !== line) window.__progress.push(line);
    }
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
`;
const progressLog = (): Promise<string[]> => page.evaluate(() => (window as unknown as { __progress: string[] }).__progress);

/** A quick image: 32 px = 2 × 2 tokens, a short negative prompt (one prefill run). */
async function fillQuickSettings(prompt: string, size = 32): Promise<void> {
  await page.locator('#prompt').fill(prompt);
  const advanced = page.locator('details.advanced');
  if (!(await advanced.evaluate((d) => (d as HTMLDetailsElement).open))) await advanced.locator('summary').click();
  await page.locator('#setting-size').fill(String(size));
  await page.locator('#setting-negativePrompt').fill('blurry');
  await page.locator('#setting-seed').fill('');
}

const shownSeed = async () => Number(await page.locator('[data-result="seed"] dd').textContent());
const generateEnabled = () => page.locator('button.generate:not([disabled])').waitFor({ timeout: 120_000 });

beforeAll(async () => {
  [browser, app, files] = await Promise.all([launchChromium(), serveDist(), startTestServer(FIXTURES)]);
  const query = new URLSearchParams({ model: `${files.url}tiny-simplear/`, vq: `${files.url}tiny-cosmos/`, weights: 'f32', decoder: 'f32' });
  appUrl = `${app.url}?${query}`;
  // One context for the whole file: IndexedDB (models, gallery) persists across reloads.
  context = await browser.newContext({ acceptDownloads: true, viewport: { width: 360, height: 800 }, permissions: ['clipboard-read', 'clipboard-write'] });
  watch = new ConsoleWatch(context);
  await context.addInitScript(RECORD_PROGRESS);
  page = await context.newPage();
});

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await Promise.all([app?.close(), files?.close()]);
});

describe('web app, first-time user with a mirror', () => {
  it('shows the download size first, then download and conversion progress, then generates an image with a live preview', async () => {
    await page.goto(appUrl);
    expect(await page.locator('#model-select').inputValue()).toBe('url');
    expect(files.requests).toHaveLength(0); // nothing is fetched before the user asks

    await page.locator('.model-action').click();
    const plan = page.locator('#model-plan[data-download-bytes]');
    await plan.waitFor();
    const { size: weightsSize } = await stat(`${FIXTURES}/tiny-simplear/model.safetensors`);
    expect(Number(await plan.getAttribute('data-download-bytes'))).toBeGreaterThanOrEqual(weightsSize);
    expect(await plan.textContent()).toMatch(/^Download: [\d.]+ MiB\. Storage: [\d.]+ MiB while converting, [\d.]+ MiB kept\./);
    expect(files.count('tiny-simplear/model.safetensors', 'GET')).toBe(0); // sizes come from HEAD/ranges only
    expect(await page.locator('.model-action').textContent()).toMatch(/^Download [\d.]+ MiB and prepare$/);

    await page.locator('.model-action').click();
    await generateEnabled();
    expect(await page.locator('.model-loaded').textContent()).toMatch(/is ready: runs on your GPU \(WebGPU, f32 activations\)/);
    const preparing = await progressLog();
    expect(preparing.some((l) => /^Downloading \S+ · [\d.]+ \S+ of [\d.]+ \S+ \(\d+ %\)/.test(l))).toBe(true);
    expect(preparing.some((l) => /^Converting the model/.test(l))).toBe(true);
    expect(files.bytesSent('tiny-simplear/model.safetensors')).toBeGreaterThanOrEqual(weightsSize);
    await page.locator('.storage-item').waitFor();
    expect(await page.locator('.storage-item').count()).toBe(1);

    await fillQuickSettings('a red fox in the snow', 48);
    await page.locator('#prompt').press('Enter'); // Enter in the prompt generates
    await page.locator('.stage[data-state="image"]').waitFor({ timeout: 120_000 });
    // The settings and the download link come once the PNG is encoded (in a worker).
    await page.locator('#status', { hasText: /^Done in / }).waitFor();
    const generating = await progressLog();
    // The preview formed row by row: rows 1 and 2 of 3 were each reported while decoding.
    for (const row of [1, 2]) expect(generating.some((l) => l.startsWith(`Drawing row ${row} of 3 · `))).toBe(true);
    expect(generating.some((l) => / tokens\/s/.test(l))).toBe(true);
    expect(await page.locator('.stage-canvas').evaluate((c) => [(c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height])).toEqual([48, 48]);
    expect(await page.locator('#status').textContent()).toMatch(/^Done in .* \(seed \d+\)\.$/);
    const seed = await shownSeed();
    await page.locator('.gallery-item').first().waitFor(); // kept once its PNG is encoded and stored
    expect(await page.locator('.gallery-item').count()).toBe(1);
    // Everything fits a 360 px phone screen: nothing scrolls sideways.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);

    // The PNG was encoded in its own worker, off the main thread.
    expect(page.workers().map((w) => w.url()).some((u) => /png-encoder\.worker/.test(u))).toBe(true);
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('a.download').click()]);
    expect(download.suggestedFilename()).toBe(`simplear-a-red-fox-in-the-snow-${seed}.png`);
    const png = decodePng(new Uint8Array(await readFile(await download.path())));
    expect([png.width, png.height]).toEqual([48, 48]);
    expect(png.text).toMatchObject({ prompt: 'a red fox in the snow', seed: String(seed), size: '48x48', 'negative prompt': 'blurry' });
    watch.assertClean();
  });

  it('after a reload the model loads from this browser with no request to the mirror, the gallery is kept, and its re-run gives the same image', async () => {
    files.reset();
    await page.reload();
    await generateEnabled(); // a stored model loads without asking
    expect(await page.locator('.model-loaded').textContent()).toMatch(/loaded from this browser’s storage/);
    expect(files.requests).toEqual([]);
    expect(await page.locator('.gallery-item').count()).toBe(1);
    const first = page.locator('.gallery-item').first();
    const firstSeed = (await first.locator('.gallery-meta').textContent())!.match(/seed (\d+)/)![1];

    await first.locator('button.rerun').click();
    await page.locator('.gallery-item').nth(1).waitFor({ timeout: 120_000 });
    expect(String(await shownSeed())).toBe(firstSeed);
    const pngs = await page.locator('.gallery-item img').evaluateAll((imgs) =>
      Promise.all(imgs.map(async (img) => Array.from(new Uint8Array(await (await fetch((img as HTMLImageElement).src)).arrayBuffer())))),
    );
    const [again, original] = pngs.map((bytes) => decodePng(Uint8Array.from(bytes)));
    expect(Array.from(again!.data)).toEqual(Array.from(original!.data)); // same settings + seed → same pixels

    // Open shows a past image with its settings, and puts them back into the form.
    await page.locator('.gallery-item').nth(1).locator('button.open').click();
    await page.locator('[data-result="seed"] dd', { hasText: firstSeed! }).waitFor();
    expect(await page.locator('#setting-seed').inputValue()).toBe(firstSeed);
    expect(await page.locator('#prompt').inputValue()).toBe('a red fox in the snow');
    // Copy settings: the JSON a person can paste into simplear.client.generate() or keep.
    await page.locator('button.copy-settings').click();
    await page.locator('.copied', { hasText: 'Settings copied.' }).waitFor();
    const copied = JSON.parse(await page.evaluate(() => navigator.clipboard.readText())) as Record<string, unknown>;
    expect(copied).toMatchObject({ prompt: 'a red fox in the snow', seed: Number(firstSeed), size: 48, negativePrompt: 'blurry' });
    expect(files.requests).toEqual([]);
    watch.assertClean();
  });

  it('Escape cancels mid-generation, and the next generation works', async () => {
    await fillQuickSettings('a lighthouse at night', 64);
    await page.locator('button.generate').focus();
    await page.keyboard.press('Enter');
    // Focus moves to Cancel while Generate is disabled (keyboard users are not dropped to the page).
    await page.waitForFunction(() => document.activeElement?.classList.contains('cancel'));
    await page.locator('.progress-title', { hasText: /^Drawing row [12] of 4$/ }).waitFor({ timeout: 120_000 });
    await page.keyboard.press('Escape');
    await page.locator('#status', { hasText: /^Cancelled\./ }).waitFor({ timeout: 30_000 });
    expect(await page.evaluate(() => document.activeElement?.classList.contains('generate'))).toBe(true);
    expect(await page.locator('.stage-caption').textContent()).toBe('Cancelled');
    expect(await page.locator('.gallery-item').count()).toBe(2);

    await fillQuickSettings('a lighthouse at night');
    await page.locator('button.generate').click();
    await page.locator('.gallery-item').nth(2).waitFor({ timeout: 120_000 });
    expect(await page.locator('.stage').getAttribute('data-state')).toBe('image');
    watch.assertClean();
  });

  it('a lost GPU is explained, the model is loaded again from storage, and the next generation works', async () => {
    files.reset();
    // As a driver reset would: the engine's GPUDevice is destroyed under the loaded model.
    expect(await page.evaluate(() => (globalThis as unknown as { simplear: { client: EngineClient } }).simplear.client.debugLoseDevice())).toBe(true);
    await fillQuickSettings('a boat on a lake');
    await page.locator('button.generate').click();
    await page.locator('#status', { hasText: /^The GPU stopped responding \(device lost\)\. The engine was restarted: press Generate to try again\./ }).waitFor({ timeout: 120_000 });
    await generateEnabled();
    const before = await page.locator('.gallery-item').count();
    await page.locator('button.generate').click();
    await page.locator('.gallery-item').nth(before).waitFor({ timeout: 120_000 });
    expect(files.requests).toEqual([]); // reloaded from IndexedDB, not the mirror
    watch.assertClean([/device.*lost|destroyed/i]);
  });

  it('a setting out of range is explained next to its field, and nothing runs', async () => {
    await fillQuickSettings('a cat');
    await page.locator('#setting-cfg').fill('99');
    await page.locator('button.generate').click();
    const error = page.locator('#cfg-error');
    expect(await error.isVisible()).toBe(true);
    expect(await error.textContent()).toMatch(/between 0 and 50/);
    expect(await page.locator('#setting-cfg').getAttribute('aria-invalid')).toBe('true');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('setting-cfg');
    await page.locator('#setting-cfg').fill('6');
  });

  it('SJD on: a greedy image is the same as without it, and the result says how many tokens each run accepted', async () => {
    // The canvas as a PNG data URL: equal strings ⇔ equal pixels (getImageData would warn).
    const pixels = () => page.locator('.stage-canvas').evaluate((c) => (c as HTMLCanvasElement).toDataURL('image/png'));
    const generate = async (sjd: boolean) => {
      await fillQuickSettings('a windmill in a field', 48);
      await page.locator('#setting-temperature').fill('0');
      await page.locator('#setting-sjd').setChecked(sjd);
      const before = await page.locator('.gallery-item').count();
      await page.locator('button.generate').click();
      await page.locator('.gallery-item').nth(before).waitFor({ timeout: 120_000 });
      return pixels();
    };
    const plain = await generate(false);
    expect(await page.locator('[data-result="sjd"]').count()).toBe(0);
    const withSjd = await generate(true);
    expect(withSjd).toEqual(plain);
    expect(await page.locator('[data-result="sampling"] dd').textContent()).toMatch(/temperature 0, .*SJD window \d+$/);
    expect(await page.locator('[data-result="sjd"] dd').textContent()).toMatch(/^\d+\.\d\d tokens accepted per run \(window \d+\)$/);
    await page.locator('#setting-sjd').setChecked(false);
    await page.locator('#setting-temperature').fill('1');
    watch.assertClean();
  });

  it('Redraw below: the row line is dragged over the image, the part above it stays while the rest forms, with a new seed', async () => {
    // The top `rows` latent rows of the canvas as a PNG data URL (equal strings ⇔ equal pixels).
    const top = (rows: number) =>
      page.locator('.stage-canvas').evaluate((c, rows) => {
        const canvas = c as HTMLCanvasElement;
        const crop = document.createElement('canvas');
        crop.width = canvas.width;
        crop.height = rows * 16;
        crop.getContext('2d')!.drawImage(canvas, 0, 0);
        return crop.toDataURL('image/png');
      }, rows);
    const line = page.locator('.row-line');
    await line.waitFor(); // the last result (48 px: 3 rows) has its codes
    const seed = await shownSeed();
    // Drag the line from its start to the boundary under row 1.
    const frame = (await page.locator('.stage-frame').boundingBox())!;
    await page.mouse.move(frame.x + frame.width / 2, frame.y + frame.height / 2);
    await page.mouse.down();
    await page.mouse.move(frame.x + frame.width / 2, frame.y + frame.height * 0.4, { steps: 4 });
    await page.mouse.up();
    expect(await line.getAttribute('aria-valuenow')).toBe('1');
    expect(await line.textContent()).toBe('keep 1 of 3 rows');
    const before = await top(1);
    const images = await page.locator('.gallery-item').count();
    await page.locator('button.redraw-below').click();
    await page.locator('.stage[data-state="preview"]').waitFor();
    // While the rest forms, the kept row is the image's own pixels, at the image's resolution.
    expect(await top(1)).toEqual(before);
    await page.locator('.gallery-item').nth(images).waitFor({ timeout: 120_000 });
    expect(await page.locator('[data-result="kept"] dd').textContent()).toBe('the top 1 of 3 rows, from an earlier image');
    expect(await shownSeed()).not.toBe(seed);
    expect(await page.locator('#status').textContent()).toMatch(/^Done in /);
    watch.assertClean();
  });

  it('deleting from the gallery and the stored model sticks across a reload', async () => {
    const kept = (await page.locator('.gallery-item').count()) - 1;
    const deleted = await page.locator('.gallery-item').first().getAttribute('data-id');
    await page.locator('.gallery-item').first().locator('button.delete').click();
    await page.waitForFunction((n) => document.querySelectorAll('.gallery-item').length === n, kept);
    await page.locator('.storage-item button.delete').click();
    await page.locator('.storage-empty').waitFor();
    expect(await page.locator('button.generate').isDisabled()).toBe(true);
    expect(await page.locator('.model-action').textContent()).toBe('Check download size');
    files.reset();
    await page.reload();
    await page.locator('.storage-empty').waitFor();
    await page.locator('.gallery-item').first().waitFor();
    expect(await page.locator('.gallery-item').count()).toBe(kept);
    expect(await page.locator(`.gallery-item[data-id="${deleted}"]`).count()).toBe(0);
    expect(files.requests).toEqual([]); // the model is gone: nothing loads until asked
    watch.assertClean();
  });
});
