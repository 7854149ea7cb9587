// The model store's view of storage: a tiny async key-value interface. Browsers back it with
// IndexedDB (kv-idb.ts); Node tests use the in-memory MemoryKv, so the store's logic (resume,
// verification, staging) is tested without a browser and the same code runs on real IndexedDB.
import { SimpleARError } from '../base/errors.ts';

export interface KeyValueStore {
  get<T>(key: string): Promise<T | undefined>;
  /** Writes all entries, all or none (one IndexedDB transaction). */
  setMany(entries: [string, unknown][]): Promise<void>;
  delMany(keys: string[]): Promise<void>;
  /** Keys starting with `prefix`, in ascending order. */
  keys(prefix: string): Promise<string[]>;
}

/** A KeyValueStore in a Map (for Node and tests). Values are kept as given, like structured clone keeps bytes. */
export class MemoryKv implements KeyValueStore {
  readonly map = new Map<string, unknown>();
  async get<T>(key: string): Promise<T | undefined> {
    return this.map.get(key) as T | undefined;
  }
  async setMany(entries: [string, unknown][]): Promise<void> {
    for (const [k, v] of entries) this.map.set(k, v);
  }
  async delMany(keys: string[]): Promise<void> {
    for (const k of keys) this.map.delete(k);
  }
  async keys(prefix: string): Promise<string[]> {
    return [...this.map.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
}

/** True for the browser's "storage is full" failure (IndexedDB reports it as a DOMException or on the transaction). */
export function isQuotaError(e: unknown): boolean {
  const name = (e as { name?: unknown } | null)?.name;
  return name === 'QuotaExceededError' || (e instanceof Error && /quota/i.test(e.message));
}

const MB = 1024 * 1024;
const mb = (n: number) => `${(n / MB).toFixed(n < 10 * MB ? 1 : 0)} MB`;

export interface QuotaFacts {
  /** Bytes the operation still needed to store. */
  needed: number;
  /** Bytes the browser said were free (quota − usage), when it says. */
  available: number | null;
  usage?: number;
  quota?: number;
}

/**
 * The QuotaExceeded error a person can act on: how much is needed, how much is free. `cause`:
 * the storage write the browser refused (its estimate may still claim space: quotas per site
 * can be lower than what navigator.storage.estimate() reports).
 */
export function quotaExceeded(facts: QuotaFacts, cause?: unknown): SimpleARError {
  const free = facts.available === null ? 'the browser did not say how much is free' : `${mb(Math.max(0, facts.available))} is free`;
  const refused = cause !== undefined ? `the browser refused to store more (${free})` : free;
  return new SimpleARError(
    'QuotaExceeded',
    `Not enough storage for the model: it needs ${mb(facts.needed)} more and ${refused}. ` +
      'Free some space (delete stored models or other site data), or allow this site persistent storage, then try again; what was downloaded is kept.',
    { ...facts, ...(cause !== undefined ? { cause: `${(cause as Error)?.name ?? 'Error'}: ${(cause as Error)?.message ?? cause}` } : {}) },
  );
}
