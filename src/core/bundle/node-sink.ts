// A BundleSink that writes a directory with Node's fs: everything goes to a sibling
// `<out>.partial-<random>/` first and is renamed to `<out>` only on commit, so `<out>` is either
// absent, the previous bundle, or the complete new one, never a half-written bundle.
import { SimpleARError } from '../base/errors.ts';
import { MANIFEST_FILE, chunkFileName } from './manifest.ts';
import type { BundleSink } from './writer.ts';

export interface NodeBundleSinkOptions {
  /** Replace an existing `<out>` on commit (default: refuse to start if it exists). */
  overwrite?: boolean;
}

export interface NodeBundleSink extends BundleSink {
  readonly outDir: string;
  /** The staging directory (gone after commit or abort). */
  readonly partialDir: string;
}

const randomSuffix = () => Math.random().toString(36).slice(2, 10);

async function exists(path: string): Promise<boolean> {
  const fs = await import('node:fs/promises');
  try {
    await fs.lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export async function createNodeBundleSink(outDir: string, options: NodeBundleSinkOptions = {}): Promise<NodeBundleSink> {
  const fs = await import('node:fs/promises');
  const path = await import('node:path');
  const out = path.resolve(outDir);
  if (!options.overwrite && (await exists(out))) {
    throw new SimpleARError('InvalidSettings', `${out} already exists (pass overwrite to replace it)`, { path: out });
  }
  await fs.mkdir(path.dirname(out), { recursive: true });
  const partialDir = `${out}.partial-${randomSuffix()}`;
  await fs.mkdir(partialDir);
  let state: 'open' | 'committed' | 'aborted' = 'open';
  const checkOpen = () => {
    if (state !== 'open') throw new SimpleARError('InvalidSettings', `the bundle sink for ${out} is ${state}`);
  };
  const writeDurably = async (file: string, data: Uint8Array | string) => {
    const fh = await fs.open(path.join(partialDir, file), 'w');
    try {
      await fh.writeFile(data);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  };

  return {
    outDir: out,
    partialDir,
    async putChunk(index, bytes) {
      checkOpen();
      await writeDurably(chunkFileName(index), bytes);
    },
    async putManifest(json) {
      checkOpen();
      await writeDurably(MANIFEST_FILE, json);
    },
    async commit() {
      checkOpen();
      if (!(await exists(path.join(partialDir, MANIFEST_FILE)))) {
        throw new SimpleARError('InvalidSettings', `cannot commit ${out}: no manifest was written`);
      }
      if (await exists(out)) {
        if (!options.overwrite) {
          throw new SimpleARError('InvalidSettings', `${out} appeared while converting; not replacing it`, { path: out });
        }
        const old = `${out}.old-${randomSuffix()}`;
        await fs.rename(out, old);
        try {
          await fs.rename(partialDir, out);
        } catch (e) {
          await fs.rename(old, out).catch(() => {});
          throw e;
        }
        await fs.rm(old, { recursive: true, force: true });
      } else {
        await fs.rename(partialDir, out);
      }
      state = 'committed';
    },
    async abort() {
      if (state !== 'open') return;
      state = 'aborted';
      await fs.rm(partialDir, { recursive: true, force: true });
    },
  };
}
