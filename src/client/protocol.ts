// The types of the engine API as the page sees them. The API itself (EngineApi) and its types
// live in core (src/core/host/api.ts): the worker's EngineHost and the page's EngineClient both
// implement it. The wire between them is engine-bridge.ts.

export type { EngineBackendKind, GenerateRequest, GenerationProgress, GenerationResult } from '../core/engine/types.ts';

export type { CheckpointInspection, CheckpointPart, TensorDigest } from '../core/formats/inspect-checkpoint.ts';

export type { CachedModel, LoadModelOptions, ModelPlan, ModelSource, PrepareProgress } from '../core/store/types.ts';

export type {
  CallOptions,
  DecodeResult,
  EngineApi,
  GenerateCallOptions,
  GpuMemory,
  LoadedModelInfo,
  LoadOptions,
  LoadTimings,
  PreparedModelInfo,
  PrepareModelOptions,
  SelfTestReport,
} from '../core/host/api.ts';

export type { EngineWire } from './engine-bridge.ts';
