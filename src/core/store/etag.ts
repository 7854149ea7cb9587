// What an HTTP ETag can tell the store.

/** The SHA-256 an ETag carries, if it is one: Hugging Face serves LFS files with their SHA-256 as ETag. */
export function sha256FromEtag(etag: string | null | undefined): string | null {
  const m = /^(?:W\/)?"?([0-9a-f]{64})"?$/i.exec(etag?.trim() ?? '');
  return m ? m[1]!.toLowerCase() : null;
}
