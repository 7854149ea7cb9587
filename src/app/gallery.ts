// The gallery: past images with their prompt, seed and time taken; open, re-run, delete.
import type { GenerationSettings } from '../core/engine/settings.ts';
import { h } from './dom.ts';
import { formatDuration } from './format.ts';
import type { GalleryEntry, GalleryStore } from './gallery-store.ts';

export interface GalleryHandlers {
  onOpen(entry: GalleryEntry): void;
  onRerun(settings: GalleryEntry['settings']): void;
  onError(message: string): void;
}

export class Gallery {
  readonly element: HTMLElement;
  readonly #list: HTMLElement;
  readonly #empty: HTMLElement;
  #urls: string[] = [];

  constructor(
    private readonly store: GalleryStore,
    private readonly handlers: GalleryHandlers,
  ) {
    this.#list = h('ul', { class: 'gallery-list' });
    this.#empty = h('p', { class: 'gallery-empty' }, 'Images you generate are kept here, in this browser.');
    this.element = h('section', { id: 'gallery', class: 'panel', 'aria-labelledby': 'gallery-title' },
      h('h2', { id: 'gallery-title' }, 'Gallery'), this.#empty, this.#list);
  }

  async refresh(): Promise<void> {
    const items = await this.store.list();
    for (const url of this.#urls) URL.revokeObjectURL(url);
    this.#urls = [];
    this.#empty.hidden = items.length > 0;
    this.#list.replaceChildren(...items.map((item) => this.#item(item)));
  }

  #item(entry: GalleryEntry): HTMLElement {
    const url = URL.createObjectURL(entry.png);
    this.#urls.push(url);
    const s: GenerationSettings = entry.settings;
    const when = new Date(entry.createdAt).toLocaleString();
    return h('li', { class: 'gallery-item', 'data-id': entry.id },
      h('img', { src: url, alt: s.prompt, width: entry.width, height: entry.height, loading: 'lazy' }),
      h('p', { class: 'gallery-prompt' }, s.prompt),
      h('p', { class: 'gallery-meta' }, `seed ${s.seed} · ${s.size}² · ${formatDuration(entry.timings.totalMs)} · ${when}`),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'open secondary', onclick: () => this.handlers.onOpen(entry) }, 'Open'),
        h('button', { type: 'button', class: 'rerun secondary', onclick: () => this.handlers.onRerun(s) }, 'Re-run'),
        h('button', { type: 'button', class: 'delete secondary', 'aria-label': `Delete “${s.prompt}”`, onclick: () => void this.#delete(entry.id) }, 'Delete')));
  }

  async #delete(id: string): Promise<void> {
    try {
      await this.store.delete(id);
      await this.refresh();
    } catch (e) {
      this.handlers.onError(`Could not delete the image: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}
