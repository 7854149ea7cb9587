// The page's handle on the PNG worker (png-encoder.worker.ts), started on first use. If the
// worker cannot start, images are encoded on the main thread instead (a slower page, the same file).
import * as Comlink from 'comlink';
import type { GenerationSettings } from '../core/engine/settings.ts';
import { encodeImagePng } from './image-export.ts';
import type { PngEncoderApi } from './png-encoder.worker.ts';

interface Connection {
  remote: Comlink.Remote<PngEncoderApi>;
  /** Rejects when the worker fails to load or dies (Comlink calls would otherwise hang). */
  failed: Promise<never>;
}

export class PngEncoder {
  #connection: Connection | undefined;
  #broken = false;

  /** PNG bytes of `rgba` (copied to the worker, left intact here) with the settings as text chunks. */
  async encode(rgba: Uint8Array, width: number, height: number, settings: GenerationSettings, model: string, keptRows?: number): Promise<Uint8Array> {
    if (!this.#broken) {
      try {
        const { remote, failed } = this.#connect();
        return await Promise.race([remote.encode(rgba, width, height, settings, model, keptRows), failed]);
      } catch {
        this.#broken = true;
      }
    }
    return encodeImagePng(rgba, width, height, settings, model, keptRows);
  }

  #connect(): Connection {
    if (this.#connection) return this.#connection;
    const worker = new Worker(new URL('./png-encoder.worker.ts', import.meta.url), { type: 'module', name: 'simplear-png' });
    const failed = new Promise<never>((_, reject) =>
      worker.addEventListener('error', (event) => {
        event.preventDefault();
        worker.terminate();
        reject(new Error(event.message || 'the PNG worker could not start'));
      }),
    );
    failed.catch(() => {});
    this.#connection = { remote: Comlink.wrap<PngEncoderApi>(worker), failed };
    return this.#connection;
  }
}
