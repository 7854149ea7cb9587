// The LM's session on a CPU backend, built as that backend can run it.
import { lmGraphBytes, lmGraphWithExternalData, type Activations, type EngineModel, type LmGraphChoices } from './model.ts';
import type { InferenceSession, OrtModule } from '../base/ort.ts';
import type { QuantizedLookup } from '../model/lm-graph.ts';
import { createSessionFromFiles, type ModelFiles } from './model-files.ts';

/**
 * What the LM graph must be for a CPU backend to run it. The wasm EP of onnxruntime-web's WebGPU
 * build (the one the page loads) has no GatherBlockQuantized kernel, so q4/q8 tables are read
 * with standard ops; and its models must stay under protobuf's 2 GB, so the weights go in as
 * external data (which also spares a copy of them: they are never serialised into the model).
 * onnxruntime-node has both, and reads external data from files only.
 */
export function cpuLmGraphChoices(backend: 'cpu' | 'wasm'): { quantizedLookup: QuantizedLookup; externalData: boolean } {
  return backend === 'wasm' ? { quantizedLookup: 'Gather', externalData: true } : { quantizedLookup: 'GatherBlockQuantized', externalData: false };
}

/** The LM's session, its weights inside the model or as external data (in memory, or files). */
export async function createLmSession(
  ort: OrtModule,
  model: EngineModel,
  activations: Activations,
  capacity: number,
  choices: LmGraphChoices & { externalData?: boolean },
  sessionOptions: InferenceSession.SessionOptions,
  files?: ModelFiles,
): Promise<InferenceSession> {
  const { externalData, ...graph } = choices;
  if (files) return createSessionFromFiles(ort, files, lmGraphWithExternalData(model, activations, capacity, graph), sessionOptions);
  if (!externalData) return ort.InferenceSession.create(lmGraphBytes(model, activations, capacity, graph), sessionOptions);
  const built = lmGraphWithExternalData(model, activations, capacity, graph);
  return ort.InferenceSession.create(built.model, { ...sessionOptions, externalData: built.externalData });
}
