// Sessions opened from files instead of bytes. onnxruntime-node parses a model given as bytes
// into its own copy and copies every initializer out of it again (a 430 MB q4 LM peaked at 1.5 GB
// while its session opened); given a model file whose weights are external data files, it maps
// them and keeps only what its kernels pack (the same LM: 0.9 GB peak, 0.4 GB after). The core
// cannot touch a file system, so the host (the CLI) passes a ModelFiles that writes them.
import type { ModelWithExternalData } from '../base/onnx-builder.ts';
import type { InferenceSession, OrtModule } from '../base/ort.ts';

export interface StagedModel {
  /** The model file; its external data files lie beside it under the names the model uses. */
  path: string;
  /** Removes the files (an open session keeps its mapping). */
  dispose(): Promise<void>;
}

/** Writes a model and its external data into a fresh folder. */
export type ModelFiles = (model: ModelWithExternalData) => Promise<StagedModel>;

/** Opens a session on `model` through files, which are removed once it is open. */
export async function createSessionFromFiles(
  ort: OrtModule,
  files: ModelFiles,
  model: ModelWithExternalData,
  options?: InferenceSession.SessionOptions,
): Promise<InferenceSession> {
  const staged = await files(model);
  // OrtModule types the bytes form; both runtimes also take a path (onnxruntime-node, the one
  // that gains here, maps the external data files it names).
  const createFromPath = ort.InferenceSession.create.bind(ort.InferenceSession) as unknown as (path: string, o?: InferenceSession.SessionOptions) => Promise<InferenceSession>;
  try {
    return await createFromPath(staged.path, options);
  } finally {
    await staged.dispose();
  }
}
