// In-memory bundle store: a BundleSink plus a FileFolder over what it committed.
// For tests, and as a model for other sinks.
import { ModelFileError } from '../base/errors.ts';
import type { ByteSource, FileFolder } from '../formats/byte-source.ts';
import { MANIFEST_FILE, chunkFileName } from './manifest.ts';
import type { BundleSink } from './writer.ts';

export class MemoryBundleSink implements BundleSink {
  /** Committed files by name (empty until commit). */
  readonly files = new Map<string, Uint8Array>();
  private staged = new Map<string, Uint8Array>();
  state: 'open' | 'committed' | 'aborted' = 'open';

  async putChunk(index: number, bytes: Uint8Array): Promise<void> {
    this.staged.set(chunkFileName(index), bytes);
  }
  async putManifest(json: string): Promise<void> {
    this.staged.set(MANIFEST_FILE, new TextEncoder().encode(json));
  }
  async commit(): Promise<void> {
    for (const [k, v] of this.staged) this.files.set(k, v);
    this.staged.clear();
    this.state = 'committed';
  }
  async abort(): Promise<void> {
    this.staged.clear();
    this.state = 'aborted';
  }
  /** Files staged but not committed (for tests of abort paths). */
  get stagedCount(): number {
    return this.staged.size;
  }
  folder(base = 'memory:'): FileFolder {
    return memoryFolder(this.files, base);
  }
}

/** A FileFolder over a map of file name → bytes. */
export function memoryFolder(files: Map<string, Uint8Array>, base = 'memory:'): FileFolder {
  const name = (file: string) => `${base.replace(/\/+$/, '')}/${file}`;
  return {
    base,
    open(file: string): ByteSource {
      return {
        name: name(file),
        async size() {
          const f = files.get(file);
          if (!f) throw new ModelFileError(name(file), 'file not found', undefined, 'ModelFileMissing');
          return f.byteLength;
        },
        async read(offset: number, length: number) {
          const f = files.get(file);
          if (!f) throw new ModelFileError(name(file), 'file not found', undefined, 'ModelFileMissing');
          if (offset + length > f.byteLength) {
            throw new ModelFileError(name(file), `truncated: wanted ${length} bytes at ${offset}, file is ${f.byteLength}`);
          }
          return f.slice(offset, offset + length);
        },
      };
    },
    async readOptional(file: string) {
      return files.get(file)?.slice() ?? null;
    },
  };
}
