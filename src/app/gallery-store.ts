// Past images, kept in IndexedDB across reloads: the PNG (settings inside it too), the settings,
// the time taken and the model. Its own database, apart from the model store's.
import { createStore, del, entries, get, set, type UseStore } from 'idb-keyval';
import type { GenerationTimings } from '../core/engine/types.ts';
import type { GenerationSettings } from '../core/engine/settings.ts';

export interface GalleryEntry {
  id: string;
  /** ms since the epoch. */
  createdAt: number;
  png: Blob;
  width: number;
  height: number;
  settings: GenerationSettings;
  timings: GenerationTimings;
  model: string;
  backend: string;
  /** With SJD: tokens accepted per window verification. */
  acceptedPerRun?: number;
  /** The visual codes (raster order), for "Redraw below"; images kept before they were stored lack them. */
  codes?: Int32Array;
  /** Latent rows kept from an earlier image ("Redraw below"). */
  keptRows?: number;
  /** Its place in a request for several images (all of one request share `createdAt`). */
  image?: { index: number; count: number };
  /** Images drawn together in its pass. */
  imagesPerPass?: number;
}

export class GalleryStore {
  readonly #store: UseStore;

  constructor(databaseName = 'simplear-gallery') {
    this.#store = createStore(databaseName, 'images');
  }

  async add(entry: Omit<GalleryEntry, 'id'>): Promise<GalleryEntry> {
    const full = { ...entry, id: `${entry.createdAt.toString(36)}-${entry.settings.seed.toString(36)}` };
    await set(full.id, full, this.#store);
    return full;
  }

  /** Newest first; the images of one request in their order (seed, seed + 1, …). */
  async list(): Promise<GalleryEntry[]> {
    const all = await entries<string, GalleryEntry>(this.#store);
    return all.map(([, e]) => e).sort(galleryOrder);
  }

  get(id: string): Promise<GalleryEntry | undefined> {
    return get<GalleryEntry>(id, this.#store);
  }

  delete(id: string): Promise<void> {
    return del(id, this.#store);
  }
}

/** Newest first; the images of one request (the same `createdAt`) in image order. */
export function galleryOrder(a: Pick<GalleryEntry, 'createdAt' | 'image'>, b: Pick<GalleryEntry, 'createdAt' | 'image'>): number {
  return b.createdAt - a.createdAt || (a.image?.index ?? 0) - (b.image?.index ?? 0);
}
