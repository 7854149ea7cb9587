// Stands in for a DOM Worker in Node tests of the engine client: messages go over a
// MessageChannel port (where the test runs the real Comlink expose); 'error' events are
// dispatched by the test.
import type { MessagePort } from 'node:worker_threads';

export class PortWorker extends EventTarget {
  terminated = false;
  constructor(private readonly port: MessagePort) {
    super();
  }
  override addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: AddEventListenerOptions): void {
    if (type === 'message') this.port.addEventListener('message', listener as EventListener, options);
    else super.addEventListener(type, listener, options);
  }
  override removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null): void {
    if (type === 'message') this.port.removeEventListener('message', listener as EventListener);
    else super.removeEventListener(type, listener);
  }
  postMessage(message: unknown, transfer: Transferable[] = []): void {
    this.port.postMessage(message, transfer as never);
  }
  start(): void {
    this.port.start();
  }
  terminate(): void {
    this.terminated = true;
    this.port.close();
  }
  /** As a worker that fails to load does. */
  fail(message: string): void {
    this.dispatchEvent(Object.assign(new Event('error', { cancelable: true }), { message }));
  }
}
