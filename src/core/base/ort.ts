// The slice of ONNX Runtime the engine uses, shared by onnxruntime-node and onnxruntime-web,
// so the core never imports either package: the CLI passes one in, the worker the other.
import type { InferenceSession, Tensor } from 'onnxruntime-common';

export type { InferenceSession, Tensor } from 'onnxruntime-common';

export interface OrtModule {
  InferenceSession: {
    create(model: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession>;
  };
  Tensor: typeof Tensor;
}
