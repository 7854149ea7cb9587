// Typed errors with a code a UI can act on, carrying the facts (file, tensor, sizes).
export type ErrorCode =
  | 'ModelFileInvalid'
  | 'ModelFileMissing'
  | 'HttpError'
  | 'UnsupportedDType'
  | 'ModelMismatch'
  | 'InvalidSettings'
  | 'PromptTooLong'
  | 'WebGPUUnavailable'
  | 'QuotaExceeded'
  | 'DeviceLost'
  | 'GpuOutOfMemory'
  | 'BundleInvalid'
  /** The chosen backend cannot run the chosen weights/size on this device (engine/capabilities.ts). */
  | 'BackendUnsupported'
  | 'Aborted';

export class SimpleARError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = code;
  }
}

/** A file that is not what it should be: names the file and, where known, the tensor. */
export class ModelFileError extends SimpleARError {
  constructor(
    readonly file: string,
    problem: string,
    readonly tensor?: string,
    code: ErrorCode = 'ModelFileInvalid',
  ) {
    super(code, `${file}${tensor ? ` (tensor ${tensor})` : ''}: ${problem}`, { file, tensor });
  }
}

export class HttpError extends SimpleARError {
  constructor(
    readonly url: string,
    readonly status: number,
    what = 'request failed',
  ) {
    super('HttpError', `${url}: ${what} (HTTP ${status})`, { url, status });
  }
}
