// EventTurns: a chain of awaits that never leaves the microtask queue starves timers and
// messages (as ORT Web's wasm runs do to a worker's cancel); give() lets one macrotask in.
import { expect, it } from 'vitest';
import { EventTurns, macrotask } from '../../src/core/base/event-turns.ts';

/** Awaits `n` times (each calling `between`), stopping early once `done()`. */
async function chain(n: number, done: () => boolean, between: () => Promise<void>): Promise<number> {
  let i = 0;
  for (; i < n && !done(); i++) await between();
  return i;
}

it('a microtask-only chain never lets a due timer run; the same chain with give() does', async () => {
  let fired = false;
  setTimeout(() => (fired = true), 0);
  const start = performance.now();
  // Long enough in time for the timer to be due (≥ 20 ms), all in microtasks.
  while (performance.now() - start < 20) await Promise.resolve();
  expect(fired).toBe(false);

  const turns = new EventTurns(0);
  const steps = await chain(1000, () => fired, () => turns.give());
  expect(fired).toBe(true);
  expect(steps).toBeLessThan(1000);
});

it('give() yields at most once per everyMs', async () => {
  let fired = false;
  setTimeout(() => (fired = true), 0);
  const rare = new EventTurns(60_000);
  await chain(1000, () => fired, () => rare.give());
  expect(fired).toBe(false); // the last turn was just now (construction): none is due
  await macrotask();
  await new Promise((r) => setTimeout(r, 5));
  expect(fired).toBe(true);
});
