// What a converted model is, read from its files (never hard-coded).

/** The Qwen2 language model, from config.json (+ the tokenizer's length). */
export interface LmSpec {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Rows of the (tied) embedding: text + special + visual. */
  vocabSize: number;
  /** Id of visual code 0 = vocabSize - visualCount = len(tokenizer). */
  visualOffset: number;
  /** Number of visual codes (64,000 for Cosmos DV: FSQ levels 8·8·8·5·5·5). */
  visualCount: number;
  tieWordEmbeddings: boolean;
}

export const VISUAL_CODES = 64000;

/** SimpleAR-0.5B (Qwen2.5-0.5B + 64,000 visual codes, docs/model.md#language-model): the shapes benchmarks use. */
export const SIMPLEAR_05B: LmSpec = {
  hiddenSize: 896,
  numLayers: 24,
  numHeads: 14,
  numKvHeads: 2,
  headDim: 64,
  intermediateSize: 4864,
  rmsNormEps: 1e-6,
  ropeTheta: 1e6,
  vocabSize: 215672,
  visualOffset: 151672,
  visualCount: VISUAL_CODES,
  tieWordEmbeddings: true,
};

/** Named tensor as stored in a converted bundle and fed to graph builders. */
export type { TensorInit } from './onnx-builder.ts';
export interface NamedTensor {
  name: string;
  type: import('./onnx-builder.ts').ElemType;
  dims: number[];
  raw: Uint8Array;
}
