// "Storage": the models kept in this browser, their sizes, delete; and what the site uses of
// the browser's quota, and whether that storage is persistent.
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
    this.#usage.textContent = await usageText(models);
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

async function usageText(models: CachedModel[]): Promise<string> {
  const models_ = models.reduce((sum, m) => sum + m.bytes, 0);
  const parts = [`Models: ${formatBytes(models_)}.`];
  if (navigator.storage?.estimate) {
    const { usage = 0, quota = 0 } = await navigator.storage.estimate();
    parts.push(`This site uses ${formatBytes(usage)} of the ${formatBytes(quota)} the browser allows it.`);
  }
  if (navigator.storage?.persisted) {
    parts.push((await navigator.storage.persisted()) ? 'Storage is persistent: the browser will not clear it on its own.' : 'Storage is not persistent: the browser may clear it when space runs low.');
  }
  return parts.join(' ');
}
