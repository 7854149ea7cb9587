// The installable, offline app in a real Chromium:
//  - Chromium's own installability check (DevTools Protocol) finds nothing missing;
//  - after one online visit that prepares the tiny fixture model, the network is cut for real
//    (the servers are closed and the context is offline): the app reloads from the service
//    worker, still cross-origin isolated, loads the model from IndexedDB and generates;
//  - a new build on the server shows "reload to update" instead of swapping code, and a click
//    during a generation reloads only after that generation is done.
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineClient } from '../../src/client/engine-client.ts';
import { startServer, type RunningServer } from '../../tools/serve.ts';
import { FIXTURES } from '../helpers/fixture-model.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';
import { ConsoleWatch, DIST, launchChromium, openApp, waitForReady } from './browser.ts';
import { launchPersistentChromium } from './persistent-context.ts';

declare const simplear: { client: EngineClient };

const LOAD = { weights: 'f32', decoderDtype: 'f32', maxLatentSide: 8, backend: 'webgpu' } as const;

let browser: Browser;
/** A private copy of the build: the update test changes files in it. */
let root: string;

beforeAll(async () => {
  browser = await launchChromium();
  root = mkdtempSync(join(tmpdir(), 'simplear-pwa-'));
  cpSync(DIST, root, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** Waits until a service worker controls the page (the first visit installs it; a reload puts the page under it). */
async function underServiceWorker(page: Page): Promise<string> {
  await page.evaluate(() => navigator.serviceWorker.ready);
  if (!(await page.evaluate(() => navigator.serviceWorker.controller !== null))) await page.reload();
  await waitForReady(page);
  return page.evaluate(() => navigator.serviceWorker.controller!.scriptURL);
}

describe('PWA', () => {
  it('is installable by Chromium’s criteria', async () => {
    // A persistent profile: Chromium never offers installation in an incognito-like context.
    const app = await startServer({ root, port: 0 });
    const { context, close } = await launchPersistentChromium();
    try {
      const watch = new ConsoleWatch(context);
      const page = context.pages()[0] ?? (await context.newPage());
      await page.goto(app.url);
      await underServiceWorker(page);
      const cdp = await context.newCDPSession(page);
      const { installabilityErrors } = (await cdp.send('Page.getInstallabilityErrors')) as {
        installabilityErrors: { errorId: string }[];
      };
      expect(installabilityErrors).toEqual([]);
      const manifest = (await cdp.send('Page.getAppManifest')) as { url: string; errors: unknown[]; data: string };
      expect(manifest.errors).toEqual([]);
      const data = JSON.parse(manifest.data) as { icons: { sizes: string }[]; display: string; start_url: string };
      expect(data.display).toBe('standalone');
      expect(data.icons.map((i) => i.sizes)).toEqual(expect.arrayContaining(['192x192', '512x512']));
      watch.assertClean();
    } finally {
      await close();
      await app.close();
    }
  });

  it('after one online visit, generates with the network cut, still cross-origin isolated', async () => {
    const app = await startServer({ root, port: 0 });
    const files: TestServer = await startTestServer(FIXTURES);
    const session = await openApp(browser, app.url);
    let servers: (RunningServer | TestServer)[] = [app, files];
    try {
      await underServiceWorker(session.page);
      const source = { kind: 'original', model: new URL('tiny-simplear/', files.url).href, vq: new URL('tiny-cosmos/', files.url).href } as const;
      const online = await session.page.evaluate(([s, o]) => simplear.client.prepareModel(s, o), [source, LOAD] as const);
      expect(online.fromCache).toBe(false);

      // The cut: nothing answers any more, and the context is offline.
      await Promise.all(servers.map((s) => s.close()));
      servers = [];
      await session.context.setOffline(true);
      const requestsAfterCut = files.requests.length;

      await session.page.reload();
      expect(await waitForReady(session.page)).toMatch(/^Ready/);
      // The page came from the service worker and can reach nothing: a request to the mirror fails.
      // (Chromium 150 keeps navigator.onLine true in a reloaded page under offline emulation, so
      // the cut is checked by a request, not by that flag.)
      const reached = await session.page.evaluate((url) => fetch(url).then(() => true, () => false), new URL('tiny-simplear/config.json', files.url).href);
      expect({ isolated: await session.page.evaluate(() => crossOriginIsolated), reached }).toEqual({ isolated: true, reached: false });
      const offline = await session.page.evaluate(async ([s, o]) => {
        const info = await simplear.client.prepareModel(s, o);
        const image = await simplear.client.generate({ prompt: 'a house by a lake', size: 32, seed: 3 });
        return { fromCache: info.fromCache, width: image.width, pixels: image.rgba.length, backend: image.stats.backend };
      }, [source, LOAD] as const);
      expect(offline).toEqual({ fromCache: true, width: 32, pixels: 32 * 32 * 4, backend: 'webgpu' });
      expect(files.requests.length).toBe(requestsAfterCut);
      // The one failure the page may log is the probe's request above.
      session.console.assertClean([/ERR_INTERNET_DISCONNECTED.*tiny-simplear\/config\.json|tiny-simplear\/config\.json.*ERR_INTERNET_DISCONNECTED/]);
    } finally {
      await session.close();
      await Promise.all(servers.map((s) => s.close()));
    }
  });

  it('a new version shows “reload to update”; a click during a generation reloads after it', async () => {
    const app = await startServer({ root, port: 0 });
    const files = await startTestServer(FIXTURES);
    const session = await openApp(browser, app.url);
    try {
      const { page } = session;
      const firstWorker = await underServiceWorker(page);
      const source = { kind: 'original', model: new URL('tiny-simplear/', files.url).href, vq: new URL('tiny-cosmos/', files.url).href } as const;
      await page.evaluate(([s, o]) => simplear.client.loadModel(s, o), [source, LOAD] as const);

      // A new deployment: the service worker script changed (as any precached file's revision would change it).
      appendFileSync(join(root, 'sw.js'), '\n// next build\n');
      await page.evaluate(async () => (await navigator.serviceWorker.getRegistration())!.update());
      const prompt = page.locator('.update-prompt');
      await prompt.waitFor({ timeout: 30_000 });
      expect(await prompt.textContent()).toContain('A new version is ready — reload to update');
      // The old version still runs the page; the new one waits.
      expect(await page.evaluate(async () => (await navigator.serviceWorker.getRegistration())!.waiting !== null)).toBe(true);

      // Start a generation, click Reload while it runs: the page must not reload under it.
      await page.evaluate(() => {
        (window as unknown as { marker: boolean }).marker = true;
        void simplear.client.generate({ prompt: 'a tree', size: 64, seed: 5 }).then(() => sessionStorage.setItem('generated', String(Date.now())));
      });
      await page.waitForFunction(() => document.querySelector('.update-prompt') !== null);
      const reloaded = page.waitForEvent('load', { timeout: 240_000 });
      await prompt.locator('button', { hasText: 'Reload' }).click();
      const clickedAt = Date.now();
      expect(await prompt.textContent()).toContain('loads when the current image is done');
      expect(await page.evaluate(() => (window as unknown as { marker?: boolean }).marker)).toBe(true);
      await reloaded;
      await waitForReady(page);
      const after = await page.evaluate(async () => ({
        marker: (window as unknown as { marker?: boolean }).marker ?? false,
        generated: Number(sessionStorage.getItem('generated')),
        waiting: (await navigator.serviceWorker.getRegistration())!.waiting !== null,
        prompt: document.querySelector('.update-prompt') !== null,
      }));
      expect(after.marker).toBe(false); // a fresh page
      expect(after.generated).toBeGreaterThan(clickedAt - 1); // the generation finished before the reload
      expect(after).toMatchObject({ waiting: false, prompt: false });
      expect(await page.evaluate(() => navigator.serviceWorker.controller?.scriptURL)).toBe(firstWorker);
      session.console.assertClean();
    } finally {
      await session.close();
      await Promise.all([app.close(), files.close()]);
    }
  });
});
