// Comlink carries only message, name and stack of a thrown Error. This keeps the `code` and
// `details` of SimpleARError across the worker boundary, so the UI can act on the code.
// Installed on both sides (client and worker) before any call.
import * as Comlink from 'comlink';
import { SimpleARError, type ErrorCode } from '../core/base/errors.ts';

interface SerializedThrow {
  isError: boolean;
  value: unknown;
}

interface SerializedError {
  message: string;
  name: string;
  stack?: string | undefined;
  code?: ErrorCode;
  details?: Record<string, unknown>;
}

/** The wire form of a thrown value (exported for tests). */
export function serializeThrown(value: unknown): SerializedThrow {
  if (value instanceof SimpleARError) {
    const err: SerializedError = {
      message: value.message,
      name: value.name,
      stack: value.stack,
      code: value.code,
      details: value.details,
    };
    return { isError: true, value: err };
  }
  if (value instanceof Error) {
    return { isError: true, value: { message: value.message, name: value.name, stack: value.stack } };
  }
  return { isError: false, value };
}

/** The value to throw on the receiving side (exported for tests). */
export function deserializeThrown(serialized: SerializedThrow): unknown {
  if (!serialized.isError) return serialized.value;
  const e = serialized.value as SerializedError;
  const err = e.code ? new SimpleARError(e.code, e.message, e.details ?? {}) : new Error(e.message);
  err.name = e.name;
  if (e.stack) err.stack = e.stack;
  return err;
}

let installed = false;

export function installErrorTransfer(): void {
  if (installed) return;
  installed = true;
  const builtin = Comlink.transferHandlers.get('throw')!;
  Comlink.transferHandlers.set('throw', {
    canHandle: builtin.canHandle,
    serialize: (thrown: { value: unknown }) => [serializeThrown(thrown.value), []],
    deserialize: (serialized: SerializedThrow) => {
      throw deserializeThrown(serialized);
    },
  } as Comlink.TransferHandler<unknown, SerializedThrow>);
}
