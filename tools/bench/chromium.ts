// Chromium for the page benches (full.ts, reload.ts): the browser tests' flags, a persistent
// profile (the model store survives a restart), WebGPU on (SwiftShader without a GPU) or off (the
// page then runs the wasm backend).
import { chromium, type BrowserContext } from 'playwright-core';

export async function launchChromium(profile: string, webgpu: boolean): Promise<BrowserContext> {
  const { BASE_ARGS, CHROMIUM_PATH } = await import('../../tests/e2e/browser.ts');
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...BASE_ARGS, ...(webgpu ? ['--enable-unsafe-webgpu'] : ['--disable-features=WebGPU'])],
  });
}
