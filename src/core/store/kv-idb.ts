// KeyValueStore on IndexedDB through idb-keyval, one object store per database. Values are
// structured-cloned: Uint8Array chunks are stored as bytes, records as objects.
import { createStore, delMany, get, setMany, type UseStore } from 'idb-keyval';
import type { KeyValueStore } from './kv.ts';

export function idbKv(dbName: string, storeName: string): KeyValueStore {
  const store: UseStore = createStore(dbName, storeName);
  return {
    get: <T>(key: string) => get<T>(key, store),
    setMany: (entries) => setMany(entries, store),
    delMany: (keys) => delMany(keys, store),
    keys: (prefix) =>
      store('readonly', (s) => {
        // A key range reads only this prefix's keys, not the whole store.
        const request = s.getAllKeys(IDBKeyRange.bound(prefix, `${prefix}\uffff`));
        return new Promise<string[]>((resolve, reject) => {
          request.onsuccess = () => resolve(request.result as string[]);
          request.onerror = () => reject(request.error);
        });
      }),
  };
}

/** The model store's IndexedDB databases (one object store each). Tests open them by these names. */
export const STORE_DATABASES = {
  /** Blocks of original files being downloaded (`f|<url>` records, `b|<url>|<index>` blocks). */
  downloads: { db: 'simplear-downloads', store: 'blocks' },
  /** Model records (`m|<id>`) and bundle generations (`g|<id>|<generation>|<file>`). */
  bundles: { db: 'simplear-models', store: 'bundles' },
} as const;

export function openBrowserStores(): { downloads: KeyValueStore; bundles: KeyValueStore } {
  return {
    downloads: idbKv(STORE_DATABASES.downloads.db, STORE_DATABASES.downloads.store),
    bundles: idbKv(STORE_DATABASES.bundles.db, STORE_DATABASES.bundles.store),
  };
}
