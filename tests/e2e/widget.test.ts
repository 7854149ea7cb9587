// The iframe widget across origins, in a real Chromium with WebGPU (SwiftShader):
//  - a host page made from the README's snippet, on another site (127.0.0.2), mounts embed.html
//    through embed.js, generates with the tiny fixture model and gets a PNG equal to Node's
//    CPU engine's image for the same seed;
//  - cancel through the protocol stops a generation and leaves the widget ready;
//  - count: a request for 2 images gets 2 result messages (seeds s, s + 1, different images, each
//    equal to a one-image request with its seed) and the widget shows them in a grid; a bad count
//    is refused with InvalidSettings naming `count`; cancel in the middle of a batch works;
//  - keep (redraw below a row): the kept rows are the given codes' top rows, and the tokens are
//    Node's CPU engine's for the same request;
//  - a host whose origin is not in ?origins= gets no message and starts no work;
//  - storage: where cross-site frames get partitioned storage, the widget keeps its own copy of
//    the model in IndexedDB and says so; where Chromium blocks third-party storage (its default
//    here, and incognito), it says so and loads the model into memory instead.
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCpuEngine } from '../../src/core/engine/create-cpu.ts';
import { decodePng } from '../../src/core/image/png.ts';
import type { RunningServer } from '../../tools/serve.ts';
import { FIXTURES, loadFixtureModel } from '../helpers/fixture-model.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';
import { ConsoleWatch, launchChromium, serveDist } from './browser.ts';
import { launchPersistentChromium } from './persistent-context.ts';

/** A plain static host on its own loopback address (another site): no COOP/COEP, like most sites. */
interface HostSite {
  origin: string;
  pages: Map<string, string>;
  close(): Promise<void>;
}

async function startHostSite(address: string): Promise<HostSite> {
  const pages = new Map<string, string>();
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/favicon.ico') return void res.writeHead(204).end();
    const html = pages.get(path);
    res.writeHead(html === undefined ? 404 : 200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(html ?? 'not found');
  });
  await new Promise<void>((ok) => server.listen(0, address, ok));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://${address}:${port}`,
    pages,
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      }),
  };
}

/** The README's host snippet, verbatim between its markers. */
function readmeSnippet(): string {
  const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
  const m = /<!-- embed-snippet -->\s*```html\n([\s\S]*?)```\s*<!-- \/embed-snippet -->/.exec(readme);
  if (!m) throw new Error('README.md has no embed snippet between <!-- embed-snippet --> markers');
  return m[1]!;
}

/** Replaces `from` (which must occur) with `to`: what a reader of the README edits. */
function edit(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`The README snippet no longer contains ${from}`);
  return text.replaceAll(from, to);
}

// 48 px = 3 latent rows of 3 codes: room to keep rows and redraw below them, at 9 steps an image.
const SIZE = 48;
// SwiftShader has no shader-f16: the tiny model runs in f32 (as in engine-webgpu.test.ts).
const TINY_OPTIONS = `defaults: { size: ${SIZE} }, maxSize: 128, weights: 'f32', decoder: 'f32'`;

let browser: Browser;
let widgetServer: RunningServer;
let files: TestServer;
let host: HostSite;
let stranger: HostSite;
let widgetOrigin: string;
let modelUrl: string;
let vqUrl: string;

beforeAll(async () => {
  [browser, widgetServer, files, host, stranger] = await Promise.all([
    launchChromium(),
    serveDist(),
    startTestServer(FIXTURES),
    startHostSite('127.0.0.2'),
    startHostSite('127.0.0.3'),
  ]);
  widgetOrigin = new URL(widgetServer.url).origin.replace('localhost', '127.0.0.1');
  modelUrl = new URL('tiny-simplear/', files.url).href;
  vqUrl = new URL('tiny-cosmos/', files.url).href;

  let page = readmeSnippet();
  page = edit(page, 'https://YOUR-SIMPLEAR-HOST/', `${widgetOrigin}/`);
  page = edit(page, 'https://huggingface.co/Daniel0724/SimpleAR-0.5B-RL/resolve/main/', modelUrl);
  page = edit(page, 'https://huggingface.co/nvidia/Cosmos-1.0-Tokenizer-DV8x16x16/resolve/main/', vqUrl);
  page = edit(page, 'defaults: { size: 1024 },', `${TINY_OPTIONS},`);
  host.pages.set('/readme.html', `<!doctype html><title>host</title>\n${page}`);
  host.pages.set('/blank.html', '<!doctype html><title>host</title><div id="slot"></div>');
});

afterAll(async () => {
  await browser?.close();
  await Promise.all([widgetServer?.close(), files?.close(), host?.close(), stranger?.close()]);
});

/**
 * A host page in a fresh incognito-like context (third-party storage blocked), or (`persistent`)
 * on a real temporary profile that gives cross-site frames partitioned storage.
 */
async function openHost(url: string, persistent = false): Promise<{ page: Page; watch: ConsoleWatch; close(): Promise<void> }> {
  const { context, close } = persistent
    ? await launchPersistentChromium({ thirdPartyStorage: true })
    : await browser.newContext().then((c) => ({ context: c, close: () => c.close() }));
  const watch = new ConsoleWatch(context);
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(url);
  return { page, watch, close };
}

/** Resolves when `done` does; rejects at once with the page's problems if it logs any first. */
async function unlessProblems<T>(watch: ConsoleWatch, done: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setInterval> | undefined;
  const problem = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      if (watch.problems.length > 0) reject(new Error(`The page logged problems:\n  ${watch.problems.join('\n  ')}`));
    }, 250);
  });
  try {
    return await Promise.race([done, problem]);
  } finally {
    clearInterval(timer);
  }
}

describe('widget in a cross-site iframe', () => {
  it('a host page made from the README snippet gets the PNG that Node computes for the same seed', async () => {
    const { page, watch, close } = await openHost(`${host.origin}/readme.html`);
    try {
      await unlessProblems(watch, page.locator('body > img').waitFor({ timeout: 240_000 }));
      const png = await page.evaluate(async () => {
        const src = document.querySelector<HTMLImageElement>('body > img')!.src;
        return Array.from(new Uint8Array(await (await fetch(src)).arrayBuffer()));
      });
      const decoded = decodePng(Uint8Array.from(png));
      expect([decoded.width, decoded.height, decoded.channels]).toEqual([SIZE, SIZE, 3]);
      expect(decoded.text).toMatchObject({ prompt: 'a red fox in the snow', seed: '42', size: `${SIZE}x${SIZE}` });

      // The same request on onnxruntime-node: the same tokens, pixels within one level.
      const cpu = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
      const reference = await cpu.generate({ prompt: 'a red fox in the snow', seed: 42, size: SIZE });
      await cpu.dispose();
      let maxDiff = 0;
      for (let p = 0; p < SIZE * SIZE; p++) {
        for (let c = 0; c < 3; c++) maxDiff = Math.max(maxDiff, Math.abs(decoded.data[p * 3 + c]! - reference.rgba[p * 4 + c]!));
      }
      expect(maxDiff).toBeLessThanOrEqual(1);

      // Incognito-like context: Chromium gives the cross-site frame no storage; the widget says so.
      const frame = page.frameLocator('iframe');
      expect(await frame.locator('.w-storage-text').textContent()).toMatch(/downloaded again each time/);
      expect(await frame.locator('.w-image').isVisible()).toBe(true);
      watch.assertClean();
    } finally {
      await close();
    }
  });

  it('cancel through the protocol stops a generation; the next request still works (partitioned storage)', async () => {
    const { page, watch, close } = await openHost(`${host.origin}/blank.html`, true);
    try {
      // As a host's own module would: import embed.js from the widget's origin (a CORS module load).
      await page.evaluate(`import('${widgetOrigin}/embed.js').then((m) => { window.embedModule = m; })`);
      const outcome = await page.evaluate(
        async ({ model, vq }) => {
          const { mount } = (window as unknown as { embedModule: typeof import('../../src/embed/host.ts') }).embedModule;
          const widget = mount(document.getElementById('slot')!, {
            model,
            vq,
            defaults: { size: 64 },
            maxSize: 128,
            weights: 'f32',
            decoder: 'f32',
          });
          const capabilities = await widget.ready;
          const prepared: string[] = [];
          const controller = new AbortController();
          const phases: string[] = [];
          const cancelled = await widget
            .generate(
              { prompt: 'a tree', seed: 7 },
              {
                signal: controller.signal,
                onProgress: ({ phase, done }) => {
                  phases.push(phase);
                  if (phase === 'download' || phase === 'convert') prepared.push(phase);
                  if (phase === 'decode' && done >= 2) controller.abort();
                },
              },
            )
            .then(
              () => 'completed',
              (e: { name: string; code: string }) => `${e.name}:${e.code}`,
            );
          const after = await widget.generate({ prompt: 'a tree', seed: 7, size: 32 });
          (window as unknown as { widget: typeof widget }).widget = widget;
          return {
            capabilities,
            cancelled,
            phases: [...new Set(phases)],
            prepared: [...new Set(prepared)],
            after: { width: after.width, seed: after.seed, type: after.png.type },
          };
        },
        { model: modelUrl, vq: vqUrl },
      );
      console.log(`widget phases: ${outcome.phases.join(', ')}; capabilities: ${JSON.stringify(outcome.capabilities)}`);
      expect(outcome.capabilities).toMatchObject({
        webgpu: true,
        crossOriginIsolated: false,
        storage: 'partitioned',
        cancel: true,
        sizes: { min: 16, max: 128, default: 64 },
      });
      expect(outcome.cancelled).toBe('EmbedError:Aborted');
      // The model was downloaded and converted into the frame's IndexedDB by the first request.
      expect(outcome.prepared).toEqual(['download', 'convert']);
      expect(outcome.phases).toContain('decode');
      const frame = page.frameLocator('iframe');
      expect(await frame.locator('.w-storage-text').textContent()).toMatch(/keeps its own copy of the model/);
      // Chromium has the Storage Access API: the widget offers the request, which needs a click.
      await frame.locator('.w-storage-request').click();
      await expect.poll(() => frame.locator('.w-storage-text').textContent()).toMatch(/^Storage access (granted|was not granted)/);
      console.log(`storage access request: ${await frame.locator('.w-storage-text').textContent()}`);
      expect(outcome.after).toEqual({ width: 32, seed: 7, type: 'image/png' });
      // destroy() removes the frame; later calls reject.
      const destroyed = await page.evaluate(async () => {
        const { widget } = window as unknown as { widget: import('../../src/embed/host.ts').EmbeddedWidget };
        widget.destroy();
        const code = await widget.generate({ prompt: 'x' }).then(
          () => 'resolved',
          (e: { code: string }) => e.code,
        );
        return { code, frames: document.querySelectorAll('iframe').length };
      });
      expect(destroyed).toEqual({ code: 'Destroyed', frames: 0 });
      // Chromium itself logs a denied storage-access request (this profile never visited the widget's site).
      watch.assertClean([/requestStorageAccess: (Permission denied|Request denied because the embedded site has never been interacted with as a top-level context)/]);
    } finally {
      await close();
    }
  });

  it('count: one result message per image (seed s + i, each equal to its one-image request), a grid, typed errors, cancel mid-batch; keep: the kept rows as given', async () => {
    const { page, watch, close } = await openHost(`${host.origin}/blank.html`);
    type Embed = typeof import('../../src/embed/host.ts');
    type Widget = import('../../src/embed/host.ts').EmbeddedWidget;
    type Shared = { embedModule: Embed; widget: Widget; log: { type: string; id: unknown; index?: number; count?: number; seed?: number; image?: number }[] };
    const t0 = performance.now();
    const step = (what: string) => console.log(`widget count/keep: ${what} at ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    try {
      await page.evaluate(`import('${widgetOrigin}/embed.js').then((m) => { window.embedModule = m; })`);
      const pngBytes = async (png: Blob) => Array.from(new Uint8Array(await png.arrayBuffer()));
      await page.evaluate(`window.pngBytes = ${pngBytes.toString()}`);
      const pair = await unlessProblems(
        watch,
        page.evaluate(
          async ({ model, vq, size }) => {
            const w = window as unknown as Shared & { pngBytes: (png: Blob) => Promise<number[]> };
            // The raw protocol as well as the library's view of it.
            w.log = [];
            addEventListener('message', ({ data }) => {
              if (data?.type === 'simplear:result') w.log.push({ type: data.type, id: data.id, index: data.index, count: data.count, seed: data.seed });
              else if (data?.type === 'simplear:progress' && data.image !== undefined) w.log.push({ type: data.type, id: data.id, image: data.image, count: data.count });
            });
            w.widget = w.embedModule.mount(document.getElementById('slot')!, { model, vq, defaults: { size }, maxSize: 128, weights: 'f32', decoder: 'f32' });
            const capabilities = await w.widget.ready;
            const arrived: number[] = [];
            const images = await w.widget.generate({ prompt: 'a tree', seed: 11, count: 2 }, { onImage: (image) => arrived.push(image.index) });
            return {
              capabilities,
              arrived,
              images: await Promise.all(
                images.map(async ({ png, seed, width, index, count, codes }) => ({ png: await w.pngBytes(png), seed, width, index, count, codes: Array.from(codes) })),
              ),
              log: w.log,
            };
          },
          { model: modelUrl, vq: vqUrl, size: SIZE },
        ),
      );
      step('model loaded, 2 images');
      expect(pair.capabilities).toMatchObject({ maxCount: 8, keep: true });
      expect(pair.arrived).toEqual([0, 1]);
      expect(pair.images.map(({ seed, width, index, count }) => ({ seed, width, index, count }))).toEqual([
        { seed: 11, width: SIZE, index: 0, count: 2 },
        { seed: 12, width: SIZE, index: 1, count: 2 },
      ]);
      const results = pair.log.filter((m) => m.type === 'simplear:result');
      expect(results.map(({ index, count, seed }) => ({ index, count, seed }))).toEqual([
        { index: 0, count: 2, seed: 11 },
        { index: 1, count: 2, seed: 12 },
      ]);
      // Progress of the generation phases names the image.
      expect(new Set(pair.log.filter((m) => m.type === 'simplear:progress').map((m) => `${m.image}/${m.count}`))).toEqual(new Set(['0/2', '1/2']));
      expect(pair.images[0]!.codes).toHaveLength((SIZE / 16) ** 2);
      expect(pair.images[0]!.codes).not.toEqual(pair.images[1]!.codes);
      const frame = page.frameLocator('iframe');
      expect(await frame.locator('.w-grid img').count()).toBe(2);
      expect(await frame.locator('.w-image').isVisible()).toBe(false);
      expect(await frame.locator('.w-caption').textContent()).toBe('a tree (seeds 11–12)');

      // Each image is the one-image request with its seed (the count-less call, as before count).
      const singles = await page.evaluate(async () => {
        const w = window as unknown as Shared & { pngBytes: (png: Blob) => Promise<number[]> };
        const out = [];
        for (const seed of [11, 12]) {
          const one = await w.widget.generate({ prompt: 'a tree', seed });
          out.push({ png: await w.pngBytes(one.png), seed: one.seed, index: one.index, count: one.count, codes: Array.from(one.codes), isArray: Array.isArray(one) });
        }
        return out;
      });
      step('2 one-image requests');
      expect(await frame.locator('.w-grid').isVisible()).toBe(false);
      expect(await frame.locator('.w-image').isVisible()).toBe(true);
      for (const [i, single] of singles.entries()) {
        expect(single).toMatchObject({ seed: 11 + i, index: 0, count: 1, isArray: false });
        expect(single.codes).toEqual(pair.images[i]!.codes);
        const [a, b] = [decodePng(Uint8Array.from(single.png)), decodePng(Uint8Array.from(pair.images[i]!.png))];
        expect(b.text).toMatchObject({ prompt: 'a tree', seed: String(11 + i) });
        let maxDiff = 0;
        for (let k = 0; k < a.data.length; k++) maxDiff = Math.max(maxDiff, Math.abs(a.data[k]! - b.data[k]!));
        expect(maxDiff).toBeLessThanOrEqual(1);
      }

      // Typed refusals before any work; cancel in the middle of a batch; then redraw below a row.
      const rest = await page.evaluate(
        async ({ keepCodes }) => {
          const w = window as unknown as Shared;
          const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: { name: string; code: string; field?: string }) => `${e.name}:${e.code}:${e.field}`);
          const badCounts = [];
          for (const count of [0, 9, 1.5]) badCounts.push(await code(w.widget.generate({ prompt: 'a tree', count })));
          // A count that is not a number is a malformed request (the raw message; the library's types forbid it).
          const notNumber = await code(w.widget.generate({ prompt: 'a tree', count: '2' as unknown as number }));
          const badKeep = await code(w.widget.generate({ prompt: 'a tree', keep: { codes: keepCodes, rows: 4 } }));
          const shortKeep = await code(w.widget.generate({ prompt: 'a tree', keep: { codes: keepCodes.slice(1), rows: 1 } }));

          const controller = new AbortController();
          const cancelledImages: number[] = [];
          const logBefore = w.log.length;
          let cancelledId: unknown;
          const cancelled = await code(
            w.widget.generate(
              { prompt: 'a tree', seed: 3, count: 3 },
              {
                signal: controller.signal,
                onImage: (image) => cancelledImages.push(image.index),
                onProgress: ({ phase, image }) => {
                  if (phase === 'decode' && image === 1) controller.abort();
                },
              },
            ),
          );
          cancelledId = w.log.slice(logBefore).find((m) => m.type === 'simplear:progress')?.id;
          const resultsAfterCancel = w.log.slice(logBefore).filter((m) => m.type === 'simplear:result' && m.id === cancelledId).length;

          const redrawn = await w.widget.generate({ prompt: 'a tree', seed: 99, keep: { codes: Int32Array.from(keepCodes), rows: 2 } });
          return {
            badCounts,
            notNumber,
            badKeep,
            shortKeep,
            cancelled,
            cancelledImages,
            resultsAfterCancel,
            redrawn: { codes: Array.from(redrawn.codes), keptRows: redrawn.keptRows, seed: redrawn.seed },
          };
        },
        { keepCodes: pair.images[0]!.codes },
      );
      step('refusals, a cancelled batch, a redraw');
      expect(rest.badCounts).toEqual(['EmbedError:InvalidSettings:count', 'EmbedError:InvalidSettings:count', 'EmbedError:InvalidSettings:count']);
      expect(rest.notNumber).toBe('EmbedError:InvalidRequest:undefined');
      expect(rest.badKeep).toBe('EmbedError:InvalidSettings:keep');
      expect(rest.shortKeep).toBe('EmbedError:InvalidSettings:keep');
      expect(rest.cancelled).toBe('EmbedError:Aborted:undefined');
      expect(rest.cancelledImages).toEqual([]);
      expect(rest.resultsAfterCancel).toBe(0);

      const side = SIZE / 16;
      expect(rest.redrawn.keptRows).toBe(2);
      expect(rest.redrawn.codes.slice(0, 2 * side)).toEqual(pair.images[0]!.codes.slice(0, 2 * side));
      // Below the kept rows: Node's CPU engine's tokens for the same request (and not seed 11's).
      const cpu = await createCpuEngine(ort, await loadFixtureModel('tiny-simplear', 'tiny-cosmos', 'f32'), { maxLatentSide: 8 });
      const reference = await cpu.generate({ prompt: 'a tree', seed: 99, size: SIZE, keep: { codes: pair.images[0]!.codes, rows: 2 } });
      await cpu.dispose();
      expect(rest.redrawn.codes).toEqual(Array.from(reference.codes));
      expect(rest.redrawn.codes.slice(2 * side)).not.toEqual(pair.images[0]!.codes.slice(2 * side));
      watch.assertClean();
    } finally {
      await close();
    }
    // Model preparation and 8 small images on SwiftShader: minutes on a loaded 2-core machine.
  }, 600_000);

  it('a host whose origin is not allowed gets no message and starts nothing; an allowed one is answered', async () => {
    const probe = (origins: string) => `<!doctype html><title>stranger</title>
<script>
  window.received = [];
  addEventListener('message', (e) => window.received.push({ origin: e.origin, type: e.data && e.data.type }));
</script>
<iframe src="${widgetOrigin}/embed.html?origins=${encodeURIComponent(origins)}&model=${encodeURIComponent(modelUrl)}&vq=${encodeURIComponent(vqUrl)}&weights=f32&decoder=f32&size=64&maxSize=128"></iframe>`;
    stranger.pages.set('/not-allowed.html', probe(host.origin));
    stranger.pages.set('/allowed.html', probe(`${host.origin},${stranger.origin}`));
    const requestsBefore = files.requests.length;

    const { page, watch, close } = await openHost(`${stranger.origin}/not-allowed.html`);
    try {
      // Wait until the widget is up (it would have announced itself by now), then drive it.
      await expect.poll(() => page.frameLocator('iframe').locator('.w-status').textContent(), { timeout: 60_000 }).toMatch(/^Ready/);
      await page.evaluate(() => {
        const frame = document.querySelector('iframe')!.contentWindow!;
        frame.postMessage({ type: 'simplear:generate', id: 1, prompt: 'a tree', size: 32 }, '*');
        frame.postMessage({ type: 'simplear:generate', id: 'x' }, '*'); // malformed: would get an error if answered
      });
      await page.waitForTimeout(3000);
      expect(await page.evaluate(() => (window as unknown as { received: unknown[] }).received)).toEqual([]);
      expect(files.requests.length).toBe(requestsBefore); // no model download started
      expect(await page.frameLocator('iframe').locator('.w-status').textContent()).toMatch(/^Ready/);
      watch.assertClean();

      // Control: the same page with its origin in the list is announced to and answered.
      await page.goto(`${stranger.origin}/allowed.html`);
      await expect
        .poll(() => page.evaluate(() => (window as unknown as { received: { type: string }[] }).received.map((m) => m.type)), { timeout: 60_000 })
        .toEqual(['simplear:ready']);
      await page.evaluate(() => document.querySelector('iframe')!.contentWindow!.postMessage({ type: 'simplear:generate', id: 'x' }, '*'));
      await expect
        .poll(() => page.evaluate(() => (window as unknown as { received: { type: string }[] }).received.map((m) => m.type)))
        .toEqual(['simplear:ready', 'simplear:error']);
      watch.assertClean();
    } finally {
      await close();
    }
  });
});
