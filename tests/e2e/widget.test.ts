// The iframe widget across origins, in a real Chromium with WebGPU (SwiftShader):
//  - a host page made from the README's snippet, on another site (127.0.0.2), mounts embed.html
//    through embed.js, generates with the tiny fixture model and gets a PNG equal to Node's
//    CPU engine's image for the same seed;
//  - cancel through the protocol stops a generation and leaves the widget ready;
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

const SIZE = 64;
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
