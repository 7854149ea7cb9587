// The page's "Images" count, in a real Chromium with the tiny fixture models (on the CPU engine,
// wasm, whose loop draws several images in one pass):
//  - Images 3: three tiles form side by side (one progress line for the request), then three
//    gallery entries with seeds s, s + 1, s + 2, each one's codes those of a single generation
//    with its seed; a click on a tile makes it the current result (facts, download);
//  - a count out of range is explained next to the Images field, and nothing runs;
//  - Escape during a request of several keeps none of its images, and the next request works;
//  - Redraw below with Images 2 draws two images below the same kept rows;
// and on WebGPU (SwiftShader), whose engine may draw them together or one after another: Images 2
// gives the images of seeds s and s + 1, each the single generation of its seed.
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ConsoleWatch, launchChromium, serveDist } from './browser.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';
import { FIXTURES } from '../helpers/fixture-model.ts';
import { decodePng } from '../../src/core/image/png.ts';
import type { RunningServer } from '../../tools/serve.ts';
import type { EngineClient } from '../../src/client/engine-client.ts';
import type { GenerationSettings } from '../../src/core/engine/settings.ts';

let browser: Browser;
let app: RunningServer;
let files: TestServer;
let context: BrowserContext;
let watch: ConsoleWatch;
let page: Page;

/**
 * Recorded in the page as it happens: every progress line, and while the grid is a live preview,
 * its tile count and each tile's distinct pictures (PNG data URLs: getImageData would warn).
 */
const RECORD = `
  window.__progress = [];
  window.__previewTiles = [];
  window.__tilePictures = [];
  new MutationObserver(() => {
    for (const view of document.querySelectorAll('.progress:not([hidden])')) {
      const line = view.querySelector('.progress-title')?.textContent + ' · ' + view.querySelector('.progress-detail')?.textContent;
      if (window.__progress.at(-1) !== line) window.__progress.push(line);
    }
    const grid = document.querySelector('.image-grid:not([hidden])[data-state="preview"]');
    if (!grid) return;
    const canvases = [...grid.querySelectorAll('.image-tile canvas')];
    if (window.__previewTiles.at(-1) !== canvases.length) window.__previewTiles.push(canvases.length);
    canvases.forEach((canvas, i) => {
      const seen = (window.__tilePictures[i] ??= []);
      const picture = canvas.toDataURL('image/png');
      if (!seen.includes(picture)) seen.push(picture);
    });
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
`;

interface Recorded {
  progress: string[];
  previewTiles: number[];
  tilePictures: string[][];
}
const recorded = (): Promise<Recorded> =>
  page.evaluate(() => {
    const w = window as unknown as { __progress: string[]; __previewTiles: number[]; __tilePictures: string[][] };
    const r = { progress: w.__progress, previewTiles: w.__previewTiles, tilePictures: w.__tilePictures };
    w.__progress = [];
    w.__previewTiles = [];
    w.__tilePictures = [];
    return r;
  });

interface StoredImage {
  id: string;
  createdAt: number;
  settings: GenerationSettings;
  codes: number[];
  keptRows?: number;
  image?: { index: number; count: number };
  imagesPerPass?: number;
}

/** The gallery's entries as stored (IndexedDB "simplear-gallery", store "images"), newest request first. */
const storedImages = (): Promise<StoredImage[]> =>
  page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const open = indexedDB.open('simplear-gallery');
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    const all = await new Promise<Record<string, unknown>[]>((resolve, reject) => {
      const get = db.transaction('images').objectStore('images').getAll();
      get.onsuccess = () => resolve(get.result as Record<string, unknown>[]);
      get.onerror = () => reject(get.error);
    });
    db.close();
    return all
      .map((e) => ({ ...e, codes: Array.from((e.codes as Int32Array | undefined) ?? []), png: undefined }) as unknown as StoredImage)
      .sort((a, b) => b.createdAt - a.createdAt || (a.image?.index ?? 0) - (b.image?.index ?? 0));
  });

/** One image of `settings` made by the page's own client, alone (count 1): its codes. */
const singleCodes = (settings: GenerationSettings): Promise<number[]> =>
  page.evaluate(async (s) => Array.from((await (globalThis as unknown as { simplear: { client: EngineClient } }).simplear.client.generate(s)).codes), settings);

async function fillSettings(prompt: string, size: number, count: number, seed?: number): Promise<void> {
  await page.locator('#prompt').fill(prompt);
  const advanced = page.locator('details.advanced');
  if (!(await advanced.evaluate((d) => (d as HTMLDetailsElement).open))) await advanced.locator('summary').click();
  await page.locator('#setting-size').fill(String(size));
  await page.locator('#setting-negativePrompt').fill('blurry');
  await page.locator('#setting-seed').fill(seed === undefined ? '' : String(seed));
  await page.locator('#setting-count').fill(String(count));
}

const galleryCount = () => page.locator('.gallery-item').count();
const waitGallery = (n: number) => page.waitForFunction((n) => document.querySelectorAll('.gallery-item').length === n, n, { timeout: 120_000 });
const generateEnabled = () => page.locator('button.generate:not([disabled])').waitFor({ timeout: 120_000 });

/** Chromium (with or without WebGPU), the built app and the fixtures; the tiny model downloaded and loaded through the page. */
async function openPage(webgpu: boolean): Promise<void> {
  [browser, app, files] = await Promise.all([launchChromium({ webgpu }), serveDist(), startTestServer(FIXTURES)]);
  const query = new URLSearchParams({ model: `${files.url}tiny-simplear/`, vq: `${files.url}tiny-cosmos/`, weights: 'f32', decoder: 'f32' });
  context = await browser.newContext({ acceptDownloads: true, viewport: { width: 360, height: 800 } });
  watch = new ConsoleWatch(context, webgpu ? [] : [/No available adapters/]);
  await context.addInitScript(RECORD);
  page = await context.newPage();
  await page.goto(`${app.url}?${query}`);
  await page.locator('.model-action').click();
  await page.locator('#model-plan[data-download-bytes]').waitFor({ timeout: 60_000 });
  await page.locator('.model-action').click();
  // On the CPU the page times a test image first; Generate is ready after it.
  if (!webgpu) await page.locator('.engine-notice', { hasText: 'Measured on this device' }).waitFor({ timeout: 120_000 });
  await generateEnabled();
  await recorded();
}

async function closePage(): Promise<void> {
  await context?.close();
  await browser?.close();
  await Promise.all([app?.close(), files?.close()]);
}

describe('web app on the CPU (wasm), several images per Generate', () => {
  beforeAll(() => openPage(false));
  afterAll(closePage);

  it('Images 3: three tiles form together, three gallery entries with seeds s, s+1, s+2, each the single generation of its seed', async () => {
    const seed = 4_000_000_000;
    expect(await page.locator('#setting-count').inputValue()).toBe('1'); // the default
    await fillSettings('a red fox in the snow', 48, 3, seed);
    await page.locator('button.generate').click();
    await page.locator('#status', { hasText: /^Done: 3 images in / }).waitFor({ timeout: 120_000 });
    await waitGallery(3);

    const { progress, previewTiles, tilePictures } = await recorded();
    // While they formed: three tiles, each painted row by row (more than one picture each), and
    // one progress line for the whole request.
    expect(previewTiles).toEqual([3]);
    expect(tilePictures).toHaveLength(3);
    for (const pictures of tilePictures) expect(pictures.length).toBeGreaterThanOrEqual(2);
    for (const row of [1, 2]) expect(progress.some((l) => l.startsWith(`Drawing row ${row} of 3 · 3 images · `))).toBe(true);
    expect(progress.some((l) => / tokens per image · [\d.]+ tokens\/s/.test(l))).toBe(true);
    expect(await page.locator('#status').textContent()).toMatch(new RegExp(`^Done: 3 images in .+ \\(seeds ${seed}–${seed + 2}\\)\\.$`));

    // Each image is its own gallery entry, with its own seed, in order.
    const metas = await page.locator('.gallery-item .gallery-meta').allTextContents();
    expect(metas.map((m) => Number(m.match(/seed (\d+)/)![1]))).toEqual([seed, seed + 1, seed + 2]);
    const stored = await storedImages();
    expect(stored.map((e) => e.settings.seed)).toEqual([seed, seed + 1, seed + 2]);
    expect(stored.map((e) => e.image)).toEqual([0, 1, 2].map((index) => ({ index, count: 3 })));
    expect(stored.every((e) => e.imagesPerPass === 3)).toBe(true); // the CPU engine drew them in one pass
    // An image's settings are its own: they re-run it alone (no request count in them).
    expect(stored.filter((e) => 'count' in e.settings)).toEqual([]);
    expect(new Set(stored.map((e) => e.codes.join())).size).toBe(3);
    // Each image's codes are those of a single generation with its seed.
    for (const entry of stored) {
      expect(entry.codes).toHaveLength(9);
      expect(await singleCodes(entry.settings)).toEqual(entry.codes);
    }

    // The result: the first image, with the grid to choose another.
    const tiles = page.locator('.image-grid[data-state="image"] .image-tile');
    expect(await tiles.count()).toBe(3);
    expect(await tiles.evaluateAll((ts) => ts.map((t) => t.getAttribute('aria-pressed')))).toEqual(['true', 'false', 'false']);
    expect(await page.locator('[data-result="seed"] dd').textContent()).toBe(String(seed));
    expect(await page.locator('[data-result="image"] dd').textContent()).toBe('1 of 3 of one Generate (seed + 0), drawn together in one pass');
    expect(await page.locator('.stage').getAttribute('data-state')).toBe('image');

    await tiles.nth(2).click();
    await page.locator('[data-result="seed"] dd', { hasText: String(seed + 2) }).waitFor();
    expect(await tiles.evaluateAll((ts) => ts.map((t) => t.getAttribute('aria-pressed')))).toEqual(['false', 'false', 'true']);
    // The actions apply to the chosen image: its PNG, with its seed inside.
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('a.download').click()]);
    expect(download.suggestedFilename()).toBe(`simplear-a-red-fox-in-the-snow-${seed + 2}.png`);
    const png = decodePng(new Uint8Array(await readFile(await download.path())));
    expect(png.text).toMatchObject({ prompt: 'a red fox in the snow', seed: String(seed + 2), size: '48x48' });
    // Nothing scrolls sideways on a 360 px phone with the grid shown.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
    watch.assertClean();
  });

  it('a count out of range is explained next to the Images field, and nothing runs', async () => {
    const before = await galleryCount();
    for (const [value, got] of [['9', '9'], ['0', '0'], ['2.5', '2.5']]) {
      await page.locator('#setting-count').fill(value!);
      await page.locator('button.generate').click();
      const error = page.locator('#count-error');
      expect(await error.isVisible()).toBe(true);
      expect(await error.textContent()).toBe(`must be a whole number from 1 to 8 images (got ${got})`);
      expect(await page.locator('#setting-count').getAttribute('aria-invalid')).toBe('true');
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('setting-count');
    }
    expect(await page.locator('.progress:not([hidden])').count()).toBe(0);
    await page.locator('#setting-count').fill('1');
    await page.locator('button.generate').click(); // a good count clears the error and runs
    await waitGallery(before + 1);
    expect(await page.locator('#count-error').isVisible()).toBe(false);
    // One image: no grid, the stage as always.
    expect(await page.locator('.image-grid').isHidden()).toBe(true);
    expect(await page.locator('#status').textContent()).toMatch(/^Done in .* \(seed \d+\)\.$/);
    watch.assertClean();
  });

  it('Escape during a request of several keeps none of its images; the next request works', async () => {
    const before = await galleryCount();
    await fillSettings('a lighthouse at night', 256, 3);
    await page.locator('button.generate').click();
    await page.locator('.progress-title', { hasText: /^Drawing row ([1-9]|1[0-3]) of 16 · 3 images$/ }).waitFor({ timeout: 120_000 });
    await page.keyboard.press('Escape');
    await page.locator('#status', { hasText: /^Cancelled\./ }).waitFor({ timeout: 30_000 });
    expect(await page.locator('.image-grid-caption').textContent()).toBe('Cancelled: none of these images was kept');
    await page.waitForTimeout(500); // nothing arrives late either
    expect(await galleryCount()).toBe(before);

    await fillSettings('a lighthouse at night', 32, 2);
    await page.locator('button.generate').click();
    await waitGallery(before + 2);
    await page.locator('#status', { hasText: /^Done: 2 images in / }).waitFor();
    expect(await page.locator('.image-grid[data-state="image"] .image-tile').count()).toBe(2);
    watch.assertClean();
  });

  it('Redraw below with Images 2 draws two images below the same kept rows, seeds s and s+1', async () => {
    await fillSettings('a windmill in a field', 48, 1, 77);
    const before = await galleryCount();
    await page.locator('button.generate').click();
    await waitGallery(before + 1);
    const [source] = await storedImages();
    expect(source!.settings.seed).toBe(77);
    const line = page.locator('.row-line');
    await line.waitFor();
    await line.focus();
    await page.keyboard.press('ArrowUp'); // from the middle (row 1 of 3) up stays at row 1
    expect(await line.getAttribute('aria-valuenow')).toBe('1');
    await page.locator('#setting-count').fill('2');
    await page.locator('button.redraw-below').click();
    await waitGallery(before + 3);
    await page.locator('#status', { hasText: /^Done: 2 images in / }).waitFor();
    const [first, second] = await storedImages();
    expect(second!.settings.seed).toBe(first!.settings.seed + 1);
    for (const image of [first!, second!]) {
      expect(image.keptRows).toBe(1);
      expect(image.codes.slice(0, 3)).toEqual(source!.codes.slice(0, 3)); // the kept row, as given
    }
    expect(await page.locator('[data-result="kept"] dd').textContent()).toBe('the top 1 of 3 rows, from an earlier image');
    watch.assertClean();
  });
});

describe('web app on WebGPU, several images per Generate', () => {
  beforeAll(() => openPage(true));
  afterAll(closePage);

  // The WebGPU engine draws them together where its loop has a batched path, else one after
  // another: either way the same images, each the single generation of its seed.
  it('Images 2: two tiles, two gallery entries with seeds s and s+1, each the single generation of its seed', async () => {
    const seed = 123;
    await fillSettings('a boat on a lake', 32, 2, seed);
    await page.locator('button.generate').click();
    await page.locator('#status', { hasText: /^Done: 2 images in / }).waitFor({ timeout: 240_000 });
    await waitGallery(2);
    const { progress, previewTiles } = await recorded();
    expect(previewTiles).toEqual([2]);
    expect(progress.some((l) => /^(Drawing row 1 of 2 · 2 images|Image [12] of 2 · drawing row 1 of 2) · /.test(l))).toBe(true);
    const stored = await storedImages();
    expect(stored.map((e) => e.settings.seed)).toEqual([seed, seed + 1]);
    for (const entry of stored) expect(await singleCodes(entry.settings)).toEqual(entry.codes);
    expect(await page.locator('[data-result="image"] dd').textContent()).toMatch(/^1 of 2 of one Generate \(seed \+ 0\), drawn (together in one pass|one after another)$/);
    expect(await page.locator('[data-result="model"] dd').textContent()).toMatch(/ on webgpu$/);
    watch.assertClean();
  });
});
