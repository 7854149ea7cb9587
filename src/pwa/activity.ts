// Whether the engine is busy (preparing a model or generating), seen from the client the page
// already uses: the update prompt must never reload the page under a running generation.
import type { EngineClient } from '../client/engine-client.ts';

export interface EngineActivity {
  readonly busy: boolean;
  /** Resolves when nothing is running (at once if idle). */
  idle(): Promise<void>;
}

/** Counts the client's long calls in flight by wrapping them on this instance. */
export function trackEngineActivity(client: EngineClient): EngineActivity {
  let running = 0;
  let waiters: (() => void)[] = [];
  const track = <T>(call: Promise<T>): Promise<T> => {
    running++;
    const done = () => {
      running--;
      if (running === 0) {
        const ready = waiters;
        waiters = [];
        for (const resolve of ready) resolve();
      }
    };
    call.then(done, done);
    return call;
  };
  const generate = client.generate.bind(client);
  client.generate = (...args: Parameters<typeof generate>) => track(generate(...args));
  const prepareModel = client.prepareModel.bind(client);
  client.prepareModel = (...args: Parameters<typeof prepareModel>) => track(prepareModel(...args));
  return {
    get busy() {
      return running > 0;
    },
    idle: () => (running === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
  };
}
