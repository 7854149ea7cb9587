// Per-tensor SHA-256 of a checkpoint folder in the original formats, read through the same
// readers the converter uses (range requests over HTTP, never a whole weight file): the
// safetensors of an LM folder (single or sharded) and/or a TorchScript decoder.jit. Lets the
// worker and Node prove they see the same bytes.
import { HttpError, ModelFileError } from '../base/errors.ts';
import { sha256Hex } from '../base/sha256.ts';
import type { FileFolder } from './byte-source.ts';
import { openSafetensors } from './safetensors.ts';
import { openTorchScript } from './torchscript/index.ts';

export interface TensorDigest {
  /** The file the tensor was read from (safetensors index or file name, or decoder.jit). */
  file: string;
  name: string;
  /** As stored: bf16/f16/f32 (safetensors), or any TorchScript element type. */
  dtype: string;
  shape: number[];
  /** Lower-case hex SHA-256 of the tensor's little-endian, row-major bytes. */
  sha256: string;
}

/** Which files to read: the LM's safetensors, the decoder's decoder.jit. */
export type CheckpointPart = 'lm' | 'decoder';

export interface InspectOptions {
  /** What the folder holds; by default each part is looked for (a size request per file). */
  parts?: readonly CheckpointPart[];
  signal?: AbortSignal;
}

export interface CheckpointInspection {
  base: string;
  tensors: TensorDigest[];
}

export const DECODER_FILE = 'decoder.jit';
const SAFETENSORS = 'model.safetensors';
const SAFETENSORS_INDEX = 'model.safetensors.index.json';

/** Whether `file` exists in the folder, asking only for its size (a HEAD over HTTP). */
async function hasFile(folder: FileFolder, file: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await folder.open(file).size(signal);
    return true;
  } catch (e) {
    if (e instanceof HttpError && e.status === 404) return false;
    if (e instanceof ModelFileError && e.code === 'ModelFileMissing') return false;
    throw e;
  }
}

/**
 * Digests every tensor of the LM safetensors and/or of decoder.jit, in file order. Without
 * `parts`, reads whichever the folder has; a folder with neither is a ModelFileMissing error.
 */
export async function inspectCheckpoint(folder: FileFolder, options: InspectOptions = {}): Promise<CheckpointInspection> {
  const { signal } = options;
  const tensors: TensorDigest[] = [];
  const [lm, decoder] = options.parts
    ? [options.parts.includes('lm'), options.parts.includes('decoder')]
    : await Promise.all([
        Promise.all([hasFile(folder, SAFETENSORS_INDEX, signal), hasFile(folder, SAFETENSORS, signal)]).then(([a, b]) => a || b),
        hasFile(folder, DECODER_FILE, signal),
      ]);
  if (lm) {
    const reader = await openSafetensors(folder, signal);
    for (const t of reader.list()) {
      const raw = await reader.read(t.name, signal);
      tensors.push({ file: reader.file, name: t.name, dtype: t.dtype, shape: t.shape, sha256: await sha256Hex(raw.bytes) });
    }
  }
  if (decoder) {
    const reader = await openTorchScript(folder.open(DECODER_FILE), signal);
    for (const t of reader.tensors()) {
      const raw = await reader.readAny(t.name, signal);
      tensors.push({ file: reader.file, name: t.name, dtype: raw.dtype, shape: raw.shape, sha256: await sha256Hex(raw.bytes) });
    }
  }
  if (!lm && !decoder) {
    throw new ModelFileError(
      folder.base,
      `no checkpoint here (none of ${SAFETENSORS}, ${SAFETENSORS_INDEX}, ${DECODER_FILE})`,
      undefined,
      'ModelFileMissing',
    );
  }
  return { base: folder.base, tensors };
}
