// Encodes generated images as PNG off the main thread: deflating a 1024² image takes a few
// hundred milliseconds, long enough to freeze the page if done there.
import * as Comlink from 'comlink';
import type { GenerationSettings } from '../core/engine/settings.ts';
import { encodeImagePng } from './image-export.ts';

const api = {
  encode(rgba: Uint8Array, width: number, height: number, settings: GenerationSettings, model: string, keptRows?: number): Uint8Array {
    const png = encodeImagePng(rgba, width, height, settings, model, keptRows);
    return Comlink.transfer(png, [png.buffer as ArrayBuffer]);
  },
};

export type PngEncoderApi = typeof api;
Comlink.expose(api);
