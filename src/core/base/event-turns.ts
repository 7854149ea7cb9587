// Turns of the event loop for long chains of awaited work. ONNX Runtime Web's wasm EP settles a
// run without the event loop taking a turn (microtasks only), so a generation that awaits one
// run after another starves its worker's message events: the cancel the page posts is not seen
// until the whole generation has ended (at full size, over an hour of wasm steps). Found by
// cancelling a 1024² generation in the page: the next call waited past 600 s.
// `EventTurns.give()` lets the loop take one macrotask turn when the last was longer ago than
// `everyMs`, so fast loops (tiny models, onnxruntime-node, whose runs are truly asynchronous)
// rarely pay for it and a slow step always gives one.

/** One macrotask turn: MessageChannel where there is one (no timer clamping), else setTimeout. */
export function macrotask(): Promise<void> {
  if (typeof MessageChannel === 'undefined') return new Promise((resolve) => setTimeout(resolve, 0));
  return new Promise((resolve) => {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {
      port1.close();
      port2.close();
      resolve();
    };
    port2.postMessage(null);
  });
}

export class EventTurns {
  private last = performance.now();

  constructor(private readonly everyMs = 50) {}

  /** Takes a macrotask turn if none was taken in the last `everyMs`. */
  async give(): Promise<void> {
    if (performance.now() - this.last < this.everyMs) return;
    await macrotask();
    this.last = performance.now();
  }
}
