// "Storage": the models kept in this browser, their sizes, delete; and what the site uses of
// the browser's quota, and whether that storage is persistent. The two sizes come from two
// counts: the models' from the store's own byte counts, the site's from the browser
// (navigator.storage.estimate), which counts IndexedDB values compressed (Chromium: f32
// weights widened from bf16 took 0.63 of their size) and adds the gallery and the app's offline
// files. The text says which is which, so "Models: 2.3 GiB" beside "this site uses 1.7 GiB" no
// longer reads as a contradiction.
import type { CachedModel, EngineClient } from '../client/engine-client.ts';
import { h, messageOf } from './dom.ts';
import { formatBytes } from './format.ts';

export interface StoragePanelHandlers {
  /** A model was deleted (the engine unloads it if it was loaded). */
  onDeleted(modelId: string): void;
}

export class StoragePanel {
  readonly element: HTMLElement;
  readonly #list: HTMLElement;
  readonly #usage: HTMLElement;

  constructor(
    private readonly client: EngineClient,
    private readonly handlers: StoragePanelHandlers,
  ) {
    this.#list = h('ul', { class: 'storage-list' });
    this.#usage = h('p', { class: 'storage-usage' });
    this.element = h('section', { id: 'storage', class: 'panel', 'aria-labelledby': 'storage-title' },
      h('h2', { id: 'storage-title' }, 'Storage'), this.#usage, this.#list);
  }

  async refresh(): Promise<void> {
    let models: CachedModel[] = [];
    let problem = '';
    try {
      models = await this.client.listCachedModels();
    } catch (e) {
      problem = `Could not list the stored models: ${messageOf(e)}`;
    }
    this.#list.replaceChildren(
      ...(problem ? [h('li', { class: 'error' }, problem)] : models.length === 0 ? [h('li', { class: 'storage-empty' }, 'No models are stored in this browser yet.')] : models.map((m) => this.#item(m))),
    );
    this.#usage.textContent = storageUsageText({
      modelBytes: models.reduce((sum, m) => sum + m.bytes, 0),
      estimate: navigator.storage?.estimate ? await navigator.storage.estimate().catch(() => null) : null,
      persisted: navigator.storage?.persisted ? await navigator.storage.persisted().catch(() => null) : null,
    });
  }

  #item(model: CachedModel): HTMLElement {
    const state = model.complete ? '' : ' · interrupted download (resumes when you load it)';
    const button = h('button', { type: 'button', class: 'delete secondary', 'aria-label': `Delete ${model.name}` }, 'Delete');
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await this.client.deleteCachedModel(model.modelId);
        this.handlers.onDeleted(model.modelId);
      } catch (e) {
        this.#usage.textContent = `Could not delete ${model.name}: ${messageOf(e)}`;
      }
      await this.refresh();
    });
    return h('li', { class: 'storage-item', 'data-model-id': model.modelId },
      // Names of models converted here already say their format (model-store.ts modelName).
      h('span', { class: 'storage-name' }, model.source.kind === 'bundle' ? `${model.name} (${model.weights})` : model.name),
      h('span', { class: 'storage-size' }, `${formatBytes(model.bytes)}${state}`),
      button);
  }
}

export interface StorageFacts {
  /** The stored models' bytes, as the store counts them (what the list shows). */
  modelBytes: number;
  /** navigator.storage.estimate(), where the browser has it. */
  estimate: { usage?: number; quota?: number } | null;
  persisted: boolean | null;
}

/** The storage panel's summary line. */
export function storageUsageText({ modelBytes, estimate, persisted }: StorageFacts): string {
  const parts = [`Models: ${formatBytes(modelBytes)}.`];
  if (estimate) {
    const { usage = 0, quota = 0 } = estimate;
    const allows = quota > 0 ? `, of the ${formatBytes(quota)} it allows this site` : '';
    parts.push(
      usage < modelBytes
        ? `The browser counts ${formatBytes(usage)} for this site${allows}: less than the models’ size, as it stores them compressed.`
        : `The browser counts ${formatBytes(usage)} for this site${allows}: the models, the gallery and the app’s offline files.`,
    );
  }
  if (persisted !== null) {
    parts.push(persisted ? 'Storage is persistent: the browser will not clear it on its own.' : 'Storage is not persistent: the browser may clear it when space runs low.');
  }
  return parts.join(' ');
}
