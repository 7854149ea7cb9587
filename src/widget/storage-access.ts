// Third-party storage partitioning: in a cross-site iframe, browsers key IndexedDB by the
// embedding site, so every site that embeds the widget downloads and stores its own copy of the
// model. This module finds out whether that is the case and asks for storage access where the
// browser has the Storage Access API.
//
// What a grant gives, honestly: `requestStorageAccess({indexedDB: true})` (Chromium 125+)
// returns a handle whose `indexedDB` is the unpartitioned factory, usable from this document
// only. The engine worker opens IndexedDB itself, and a worker cannot use the handle, so the
// model copy the worker stores stays partitioned even after a grant.
import type { WidgetStorage } from '../embed/protocol.ts';

export interface StorageSituation {
  storage: WidgetStorage;
  /** The browser offers document.requestStorageAccess (it still needs a click to ask). */
  canRequestAccess: boolean;
}

function isCrossOriginFrame(): boolean {
  if (window.top === window) return false;
  try {
    // Reading another origin's location throws.
    return window.top!.location.origin !== location.origin;
  } catch {
    return true;
  }
}

/** Opens (and deletes) a scratch database: browsers that block a frame's storage refuse it. */
function indexedDbWorks(): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      const name = 'simplear-storage-probe';
      const request = indexedDB.open(name);
      request.onsuccess = () => {
        request.result.close();
        indexedDB.deleteDatabase(name);
        resolve(true);
      };
      request.onerror = (event) => {
        event.preventDefault();
        resolve(false);
      };
      request.onblocked = () => resolve(true);
    } catch {
      resolve(false);
    }
  });
}

export async function detectStorage(doc: Document = document): Promise<StorageSituation> {
  const canRequestAccess = isCrossOriginFrame() && typeof doc.requestStorageAccess === 'function';
  // The worker's IndexedDB follows the same policy as this document's.
  if (!(await indexedDbWorks())) return { storage: 'unavailable', canRequestAccess };
  if (!isCrossOriginFrame()) return { storage: 'first-party', canRequestAccess: false };
  if (typeof doc.hasStorageAccess === 'function') {
    // A same-site frame has access (its storage is ours); a cross-site one does not until granted,
    // and even then the worker's IndexedDB stays partitioned (see above).
    const has = await doc.hasStorageAccess().catch(() => false);
    if (has && !(await wasGrantedByUser())) return { storage: 'first-party', canRequestAccess: false };
  }
  return { storage: 'partitioned', canRequestAccess };
}

/** Chromium's permission state tells a same-site frame (no prompt ever) from a granted cross-site one. */
async function wasGrantedByUser(): Promise<boolean> {
  try {
    const status = await navigator.permissions.query({ name: 'storage-access' as PermissionName });
    return status.state === 'granted';
  } catch {
    return false;
  }
}

/** Asks for unpartitioned storage (must run in a click handler). true: granted. */
export async function requestStorageAccess(doc: Document = document): Promise<boolean> {
  const request = doc.requestStorageAccess as unknown as (types?: { indexedDB: boolean }) => Promise<unknown>;
  try {
    await request.call(doc, { indexedDB: true });
    return true;
  } catch {
    return false;
  }
}
