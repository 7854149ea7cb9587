// Helpers for the browser tests: the system Chromium with real WebGPU (SwiftShader on
// machines without a GPU), the built app served like `npm start` serves it, and a watch
// on the console that fails a test on any error or warning.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startServer, type RunningServer } from '../../tools/serve.ts';
import { startTestServer, type TestServer } from '../helpers/http-server.ts';
import { FIXTURES } from '../helpers/fixture-model.ts';
import type { EngineClient, LoadedModelInfo } from '../../src/client/engine-client.ts';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** The built app; SIMPLEAR_DIST points the tests at another build (e.g. `vite build --outDir`). */
export const DIST = resolve(process.env.SIMPLEAR_DIST ?? resolve(import.meta.dirname, '../../dist'));

/** Flags for a quiet, offline, reproducible Chromium (the test machines have no network). */
export const BASE_ARGS = [
  '--no-sandbox',
  '--disable-gpu-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export interface LaunchOptions {
  /** Offer WebGPU (SwiftShader without a GPU). Default true. */
  webgpu?: boolean;
  extraArgs?: string[];
}

/** Launches the system Chromium headless; Playwright gives each launch a fresh temporary profile. */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`No Chromium at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  const webgpu = options.webgpu ?? true;
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      ...BASE_ARGS,
      ...(webgpu ? ['--enable-unsafe-webgpu'] : ['--disable-features=WebGPU']),
      ...(options.extraArgs ?? []),
    ],
  });
}

/** Serves dist/ (the production build) on a free port, as `npm start` does. */
export async function serveDist(): Promise<RunningServer> {
  if (!existsSync(resolve(DIST, 'index.html'))) {
    throw new Error(`${DIST}/index.html is missing: run \`npm run build\` before the browser tests`);
  }
  return startServer({ root: DIST, port: 0 });
}

/** Every console error/warning, uncaught error and failed request of a browser context. */
export class ConsoleWatch {
  readonly problems: string[] = [];
  /** All console lines, for diagnostics when a test fails. */
  readonly lines: string[] = [];

  /** `allow`: messages the browser itself logs in the situation under test. */
  constructor(context: BrowserContext, allow: RegExp[] = []) {
    context.on('console', (msg) => {
      const where = msg.worker() ? `worker ${msg.worker()!.url()}` : msg.location().url;
      const line = `[${msg.type()}] ${msg.text()} (${where})`;
      this.lines.push(line);
      const isProblem = msg.type() === 'error' || msg.type() === 'warning';
      if (isProblem && !allow.some((re) => re.test(msg.text()))) this.problems.push(line);
    });
    context.on('weberror', (e) => this.problems.push(`[uncaught] ${e.error().stack ?? e.error().message}`));
    context.on('requestfailed', (r) => this.problems.push(`[request failed] ${r.url()}: ${r.failure()?.errorText}`));
    context.on('response', (r) => {
      if (r.status() >= 400) this.problems.push(`[HTTP ${r.status()}] ${r.url()}`);
    });
  }

  /** Throws listing every problem seen so far, except lines matching `expected`. */
  assertClean(expected: RegExp[] = []): void {
    const problems = this.problems.filter((line) => !expected.some((re) => re.test(line)));
    if (problems.length > 0) {
      throw new Error(`The page logged problems:\n  ${problems.join('\n  ')}`);
    }
  }
}

export interface AppSession {
  context: BrowserContext;
  page: Page;
  console: ConsoleWatch;
  close(): Promise<void>;
}

/** A fresh context with a console watch (ignoring messages matching `allow`), with the app at `url` loaded. */
export async function openApp(browser: Browser, url: string, allow: RegExp[] = []): Promise<AppSession> {
  const context = await browser.newContext();
  const watch = new ConsoleWatch(context, allow);
  const page = await context.newPage();
  await page.goto(url);
  return { context, page, console: watch, close: () => context.close() };
}

/** Waits until the status line has left its initial "Checking…" state; returns its text. */
export async function waitForReady(page: Page): Promise<string> {
  await page.locator('#status[data-tone]').waitFor({ timeout: 60_000 });
  return (await page.locator('#status').textContent()) ?? '';
}

/** The value shown for one row of the "Your device" panel. */
export async function deviceFact(page: Page, key: string): Promise<string> {
  return ((await page.locator(`[data-fact="${key}"] dd`).textContent()) ?? '').trim();
}

/** Chromium, the built app, and tests/fixtures served from a second origin, with the app open. */
export interface FixtureApp {
  browser: Browser;
  app: RunningServer;
  /** The fixture server (request log, failure injection). */
  files: TestServer;
  session: AppSession;
  close(): Promise<void>;
}

export interface FixtureAppOptions extends LaunchOptions {
  /** Console messages the browser itself logs in this situation. */
  allow?: RegExp[];
  /** Open the page with `?model=&vq=` of these fixture folders (and f32 weights). */
  model?: { lm: string; vq: string };
  /** Wait for the status line to leave "Checking…" (default true). */
  waitReady?: boolean;
}

/** The usual e2e setup: launch, serve dist/ and the fixtures, open the app; close() undoes it all. */
export async function openFixtureApp(options: FixtureAppOptions = {}): Promise<FixtureApp> {
  const [browser, app, files] = await Promise.all([launchChromium(options), serveDist(), startTestServer(FIXTURES)]);
  let url = app.url;
  if (options.model) {
    const query = new URLSearchParams({ model: `${files.url}${options.model.lm}/`, vq: `${files.url}${options.model.vq}/`, weights: 'f32', decoder: 'f32' });
    url = `${app.url}?${query}`;
  }
  const session = await openApp(browser, url, options.allow);
  if (options.waitReady ?? true) await waitForReady(session.page);
  return {
    browser,
    app,
    files,
    session,
    async close() {
      await session.close();
      await browser.close();
      await Promise.all([app.close(), files.close()]);
    },
  };
}

/**
 * openFixtureApp with the tiny fixture loaded in the page's engine on `backend` (f32, as
 * loadFixtureInPage loads it); throws, and closes everything, unless the engine runs there.
 */
export async function openFixtureEngine(backend: 'webgpu' | 'wasm', options: FixtureAppOptions = {}): Promise<FixtureApp> {
  const fixture = await openFixtureApp(options);
  try {
    const info = await loadFixtureInPage(fixture, { backend });
    if (info.backend !== backend || info.activations !== 'f32') {
      throw new Error(`the fixture engine runs on ${info.backend} with ${info.activations} activations, expected ${backend} with f32`);
    }
    return fixture;
  } catch (e) {
    await fixture.close();
    throw e;
  }
}

/**
 * Loads fixture checkpoints (original formats, read by the worker from the fixture server) into
 * the page's engine: f32 weights and decoder (SwiftShader has no shader-f16), latents up to 8×8
 * (`maxLatentSide` otherwise).
 * `backend` unset = the worker's choice (WebGPU when there is an adapter, else wasm).
 */
export function loadFixtureInPage(
  fixture: FixtureApp,
  options: { lm?: string; vq?: string; backend?: 'webgpu' | 'wasm'; weights?: 'f32' | 'q4'; graphCapture?: boolean; maxLatentSide?: number } = {},
): Promise<LoadedModelInfo> {
  const model = new URL(`${options.lm ?? 'tiny-simplear'}/`, fixture.files.url).href;
  const vq = new URL(`${options.vq ?? 'tiny-cosmos'}/`, fixture.files.url).href;
  return fixture.session.page.evaluate(
    ([model, vq, backend, weights, graphCapture, maxLatentSide]) =>
      (globalThis as unknown as { simplear: { client: EngineClient } }).simplear.client.loadModel(
        { kind: 'original', model, vq },
        { weights, decoderDtype: 'f32', maxLatentSide, ...(backend ? { backend } : {}), ...(graphCapture === undefined ? {} : { graphCapture }) },
      ),
    [model, vq, options.backend, options.weights ?? 'f32', options.graphCapture, options.maxLatentSide ?? 8] as const,
  );
}
