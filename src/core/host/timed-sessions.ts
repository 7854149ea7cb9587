// ONNX Runtime with its session creations and runs timed, for a load's LoadTimings.
import type { InferenceSession, OrtModule } from '../base/ort.ts';
import type { LoadTimings } from './api.ts';

/**
 * `ort` whose session creations are timed into `timings.sessions`, and whose sessions' runs add
 * to `timings.runsMs` while `timing.on` (the warm-up runs of a load; WebGPU runs return once queued).
 */
export function timedSessions(ort: OrtModule, timings: Pick<LoadTimings, 'sessions' | 'runsMs'>, timing: { on: boolean }): OrtModule {
  type Create = (model: Uint8Array | string, options?: InferenceSession.SessionOptions) => Promise<InferenceSession>;
  const inner = ort.InferenceSession.create.bind(ort.InferenceSession) as Create;
  const create: Create = async (model, options) => {
    const t0 = performance.now();
    const external = (options?.externalData ?? []) as readonly { data?: { byteLength?: number } }[];
    const bytes = external.reduce((sum, f) => sum + (f.data?.byteLength ?? 0), typeof model === 'string' ? 0 : model.byteLength);
    const session = await inner(model, options);
    timings.sessions.push({ bytes, ms: Math.round(performance.now() - t0) });
    const run = session.run.bind(session) as (...a: unknown[]) => Promise<InferenceSession.ReturnType>;
    (session as { run: unknown }).run = async (...a: unknown[]) => {
      if (!timing.on) return run(...a);
      const t = performance.now();
      try {
        return await run(...a);
      } finally {
        timings.runsMs += Math.round(performance.now() - t);
      }
    };
    return session;
  };
  return { Tensor: ort.Tensor, InferenceSession: { create: create as OrtModule['InferenceSession']['create'] } };
}
