// The engine API across the worker boundary. An AbortSignal and a callback inside an options
// object cannot be posted, so each EngineApi call travels as `call(id, method, args, onProgress)`:
// `args` end with the call's options minus those two; `cancel(id)` aborts the signal the bridge
// gives the call; `onProgress` is a Comlink proxy. The worker side (exposeEngine) hands every call
// to an EngineApi (the worker's EngineHost) and transfers result pixels instead of copying them.
import * as Comlink from 'comlink';
import type { EngineApi } from '../core/host/api.ts';

export type EngineMethod = keyof EngineApi;
export type EngineResult<K extends EngineMethod> = Awaited<ReturnType<EngineApi[K]>>;
/** The arguments of `method` before its options object. */
export type LeadingArgs<K extends EngineMethod> = Required<Parameters<EngineApi[K]>> extends [...infer L, unknown] ? L : never;
/** The options object of `method`. */
export type OptionsOf<K extends EngineMethod> = NonNullable<Parameters<EngineApi[K]>[LeadingArgs<K>['length']]>;

/** What the engine worker exposes. */
export interface EngineWire {
  call(id: number, method: EngineMethod, args: unknown[], onProgress?: (p: unknown) => void): Promise<unknown>;
  cancel(id: number): Promise<void>;
}

/** Client side: `method` of the worker's engine with `options`, its signal left to `cancel(id)`. */
export function callOverWire<K extends EngineMethod>(
  wire: Comlink.Remote<EngineWire>,
  id: number,
  method: K,
  leading: LeadingArgs<K>,
  options: OptionsOf<K> | Record<string, never> = {},
): Promise<EngineResult<K>> {
  const { signal: _signal, onProgress, ...rest } = options as { signal?: AbortSignal; onProgress?: (p: unknown) => void };
  return wire.call(id, method, [...leading, rest], onProgress && Comlink.proxy(onProgress)) as Promise<EngineResult<K>>;
}

/** Worker side: serves `api` on `endpoint` (default: the worker's own scope). */
export function exposeEngine(api: EngineApi, endpoint?: Comlink.Endpoint): void {
  const running = new Map<number, AbortController>();
  const wire: EngineWire = {
    async call(id, method, args, onProgress) {
      const controller = new AbortController();
      running.set(id, controller);
      try {
        const options = {
          ...(args.at(-1) as object),
          signal: controller.signal,
          ...(onProgress ? { onProgress: (p: unknown) => void onProgress(p) } : {}),
        };
        const invoke = api[method] as (...a: unknown[]) => Promise<unknown>;
        const result = await invoke.apply(api, [...args.slice(0, -1), options]);
        // Images (generate, generateImages, decode) move to the page instead of being copied.
        const images = (Array.isArray(result) ? result : [result]) as ({ rgba?: unknown } | null)[];
        const buffers = images.flatMap((r) => (r?.rgba instanceof Uint8Array ? [r.rgba.buffer as ArrayBuffer] : []));
        return buffers.length > 0 ? Comlink.transfer(result, buffers) : result;
      } finally {
        running.delete(id);
      }
    },
    async cancel(id) {
      running.get(id)?.abort();
    },
  };
  Comlink.expose(wire, endpoint);
}
