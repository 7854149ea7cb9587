// The app's service worker (built by vite-plugin-pwa with Workbox: the shell, the engine worker
// and ONNX Runtime's wasm are precached, so the app starts offline). Registered with
// workbox-window; a new version waits until the user accepts the update prompt.
import { Workbox } from 'workbox-window';
import type { EngineClient } from '../client/engine-client.ts';
import { trackEngineActivity } from './activity.ts';
import { showUpdatePrompt } from './update-prompt.ts';

/** Registers sw.js in production builds; returns the Workbox handle, or null where there is none. */
export function registerServiceWorker(client: EngineClient): Workbox | null {
  if (!import.meta.env.PROD || !('serviceWorker' in navigator)) return null;
  const activity = trackEngineActivity(client);
  const wb = new Workbox(`${import.meta.env.BASE_URL}sw.js`, { scope: import.meta.env.BASE_URL, type: 'classic' });
  wb.addEventListener('waiting', () => {
    showUpdatePrompt({
      isBusy: () => activity.busy,
      idle: () => activity.idle(),
      apply: () => {
        // Reload once the new worker controls the page, so the page and its cache match.
        wb.addEventListener('controlling', () => location.reload());
        wb.messageSkipWaiting();
      },
    });
  });
  wb.register().catch((e: unknown) => console.info(`Offline support is off: ${e instanceof Error ? e.message : String(e)}`));
  return wb;
}
