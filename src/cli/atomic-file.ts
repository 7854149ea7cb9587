// Files that appear whole or not at all: written under a temp name in the same folder, then
// renamed over the final name (a rename within one file system is atomic). A run killed while
// writing leaves only a temp file, which removeStaleTemps clears on the next run.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/** ".<name>.<pid>-<n>.tmp": hidden, and not ending in the final name's extension (no reader
 * globbing *.png picks one up). */
const TEMP_NAME = /^\..+\.\d+-\d+\.tmp$/;
let written = 0;

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}-${written++}.tmp`);
}

export function isTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  await mkdir(dirname(resolve(path)), { recursive: true });
  const temp = tempPathFor(path);
  try {
    await writeFile(temp, data);
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
}

/** Writes `text` unless the file already holds exactly it (a resumed run leaves it untouched). */
export async function writeTextIfChanged(path: string, text: string): Promise<boolean> {
  const old = await readFile(path, 'utf8').catch(() => undefined);
  if (old === text) return false;
  await writeFileAtomic(path, text);
  return true;
}

/** Removes temp files an interrupted run left in `dir` (none when it does not exist). */
export async function removeStaleTemps(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter(isTempName).map((n) => rm(join(dir, n), { force: true })));
}
