// The engine's GPUDevice and what happens once it fails. After the device is lost or runs out of
// memory, every GPU call here rejects with DeviceLost / GpuOutOfMemory: ONNX Runtime Web cannot
// move to a new device in the same process, so the page's client answers those codes by starting
// a fresh worker (and host) and loading the stored model again before the next generation.
import { SimpleARError } from '../base/errors.ts';
import { classifyGpuError, watchDeviceFailures, type EngineDevice } from '../engine/webgpu-device.ts';

/** How long a failed GPU call waits for the device to report itself lost (its errors can come first). */
const LOSS_GRACE_MS = 300;

export class GpuGuard {
  #device: Promise<EngineDevice> | undefined;
  /** Set once the device is lost or out of memory: this host's GPU is done for. */
  #failure: SimpleARError | undefined;
  readonly #listeners = new Set<(e: SimpleARError) => void>();

  /** `onFailure` runs once, when the device fails (the host drops its engine there). */
  constructor(private readonly onFailure: (error: SimpleARError) => void) {}

  get failure(): SimpleARError | undefined {
    return this.#failure;
  }

  /** Throws the device's failure, if it has failed. */
  check(): void {
    if (this.#failure) throw this.#failure;
  }

  /** The device in use, or undefined before any GPU work asked for one. */
  get current(): Promise<EngineDevice> | undefined {
    return this.#device;
  }

  /** The engine's device, requested once (`request`) and watched for loss from then on. */
  device(request: () => Promise<EngineDevice>): Promise<EngineDevice> {
    this.#device ??= request().then((d) => {
      void watchDeviceFailures(d.device).then((e) => this.fail(e));
      return d;
    });
    return this.#device;
  }

  fail(error: SimpleARError): void {
    if (this.#failure) return;
    this.#failure = error;
    this.onFailure(error);
    for (const listener of this.#listeners) listener(error);
  }

  /**
   * Runs a GPU call; rejects with the device's failure as soon as it happens, or maps ORT's
   * allocation errors. `cancelled` tells a cancel of our own apart from a device that died:
   * a destroyed device also rejects pending mapAsync calls with an AbortError.
   */
  async run<T>(work: () => Promise<T>, cancelled: () => boolean = () => false): Promise<T> {
    this.check();
    let listener: ((e: SimpleARError) => void) | undefined;
    const failed = new Promise<never>((_, reject) => {
      listener = reject;
      this.#listeners.add(listener);
    });
    failed.catch(() => {});
    try {
      return await Promise.race([work(), failed]);
    } catch (e) {
      if (e instanceof SimpleARError && (e.code === 'DeviceLost' || e.code === 'GpuOutOfMemory')) throw e;
      let gpuError: SimpleARError | null | undefined = this.#failure ?? classifyGpuError(e);
      // Our own typed errors (bad settings, …) and our own cancels are not the device's doing.
      if (!gpuError && !cancelled() && !(e instanceof SimpleARError)) {
        gpuError = await Promise.race([failed.catch((f: SimpleARError) => f), new Promise<undefined>((r) => setTimeout(r, LOSS_GRACE_MS))]);
      }
      if (gpuError) {
        this.fail(gpuError);
        throw gpuError;
      }
      throw e;
    } finally {
      this.#listeners.delete(listener!);
    }
  }
}
