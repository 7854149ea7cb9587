// The page: one EngineClient (the only way to the worker) and the components that render from it.
// This file wires them: model ready → the form can generate; a generation streams progress into
// the progress view and tokens into the preview; the result goes to the gallery.
import './styles.css';
import { EngineClient } from '../client/engine-client.ts';
import { registerServiceWorker } from '../pwa/register.ts';
import { webGpuUnavailableStatus, type DeviceFacts } from '../core/runtime/device.ts';
import { mountDevicePanel } from './device-panel.ts';
import { StatusLine } from './status-line.ts';
import { GenerationController } from './generation-controller.ts';
import { ModelLoader } from './model-loader.ts';
import { Gallery } from './gallery.ts';
import { GalleryStore } from './gallery-store.ts';
import { StoragePanel } from './storage-panel.ts';
import { messageOf } from './dom.ts';

async function main(): Promise<void> {
  const status = new StatusLine(document.querySelector<HTMLElement>('#status')!);
  const client = new EngineClient();
  // The programmatic handle (console, automation, tests): the same client the UI uses.
  (globalThis as { simplear?: { client: EngineClient } }).simplear = { client };
  // Offline app shell; a new version waits for the user's "reload to update" (src/pwa).
  registerServiceWorker(client);

  let device: DeviceFacts;
  try {
    device = await mountDevicePanel(document.querySelector<HTMLElement>('#device')!, client, status);
  } catch (e) {
    status.show(`Could not start the engine: ${messageOf(e)}`, 'error');
    return;
  }
  if (!device.ok) status.show(webGpuUnavailableStatus(), 'warning');
  else if (device.adapter.isFallbackAdapter) status.show('Ready. This is a software GPU: generation will be slow.', 'ok');
  else status.show('Ready.', 'ok');

  const galleryStore = new GalleryStore();
  let storage: StoragePanel | undefined;
  const generation = new GenerationController(client, galleryStore, status, {
    onDeviceLost: () => loader.reload(),
    onSaved: () => void Promise.all([gallery.refresh(), storage?.refresh()]),
  });
  const loader = new ModelLoader(client, device, {
    onReady: (info) => void generation.modelReady(info),
    onUnloaded: () => generation.modelGone(),
    onStatus: (text, tone) => status.show(text, tone),
    onStored: () => void storage?.refresh(),
  });
  const gallery = new Gallery(galleryStore, {
    onOpen: (entry) => void generation.open(entry),
    onRerun: (settings) => generation.rerun(settings),
    onError: (message) => status.show(message, 'error'),
  });
  storage = new StoragePanel(client, { onDeleted: (id) => loader.forget(id) });

  document.querySelector('#model-slot')!.replaceWith(loader.element);
  document.querySelector('#create-slot')!.replaceWith(generation.element);
  document.querySelector('#gallery-slot')!.replaceWith(gallery.element);
  document.querySelector('#storage-slot')!.replaceWith(storage.element);

  // Escape stops whatever is running: a generation first, else a model download.
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    if (generation.busy) generation.cancel();
    else if (loader.busy) loader.cancel();
  });

  await Promise.all([gallery.refresh(), storage.refresh()]);
  await loader.start();
}

void main();
