// ModelFiles for the CLI (core/runtime/model-files.ts): a model and its external data files in a
// fresh folder under the OS temp folder, removed once the session is open (onnxruntime-node keeps
// its mapping of the weights).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelFiles } from '../core/runtime/model-files.ts';

export const tempModelFiles: ModelFiles = async ({ model, externalData }) => {
  const dir = await mkdtemp(join(tmpdir(), 'simplear-session-'));
  try {
    for (const f of externalData) await writeFile(join(dir, f.path), f.data);
    await writeFile(join(dir, 'model.onnx'), model);
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return { path: join(dir, 'model.onnx'), dispose: () => rm(dir, { recursive: true, force: true }) };
};
