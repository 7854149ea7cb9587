// A Chromium context on a real (temporary) profile rather than Playwright's incognito-like one:
// installability is only offered there. This Chromium also blocks third-party storage by default
// (third-party-cookie deprecation: IndexedDB in a cross-site frame fails with "The user denied
// permission to access the database"); `thirdPartyStorage` turns that off, as Chrome's default
// settings have it, so cross-site frames get partitioned storage.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { BASE_ARGS, CHROMIUM_PATH } from './browser.ts';

export interface PersistentContext {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Measured here: with these features off, a cross-site frame's IndexedDB opens (partitioned). */
const ALLOW_THIRD_PARTY_STORAGE = '--disable-features=TrackingProtection3pcd,ThirdPartyCookieDeprecationTrial,TpcdMetadataGrants';

export async function launchPersistentChromium(options: { thirdPartyStorage?: boolean } = {}): Promise<PersistentContext> {
  const profile = mkdtempSync(join(tmpdir(), 'simplear-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    // launchChromium's quiet, offline flags, with WebGPU.
    args: [
      ...BASE_ARGS,
      '--enable-unsafe-webgpu',
      ...(options.thirdPartyStorage ? [ALLOW_THIRD_PARTY_STORAGE] : []),
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
