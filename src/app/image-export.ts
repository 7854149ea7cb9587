// A generated image as a file: an RGB PNG whose text chunks carry the settings (the same keys the
// CLI writes), and the settings as text to copy. Pure, apart from making a Blob.
import { encodePng, rgbaToRgb } from '../core/image/png.ts';
import { pngText } from '../core/image/png-metadata.ts';
import type { GenerationSettings } from '../core/engine/settings.ts';

export function encodeImagePng(rgba: Uint8Array, width: number, height: number, settings: GenerationSettings, model: string, keptRows?: number): Uint8Array {
  // Level 1: a 1024² image encodes in a fraction of the time, for a slightly larger file.
  return encodePng({ width, height, channels: 3, data: rgbaToRgb(rgba) }, { text: pngText(settings, model, keptRows), level: 1 });
}

export function pngBlob(bytes: Uint8Array): Blob {
  return new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'image/png' });
}

/** The settings as JSON, in the shape `simplear.client.generate()` and the CLI's options take. */
export function settingsJson(settings: GenerationSettings, model: string): string {
  return JSON.stringify({ ...settings, model }, null, 2);
}

/** A file name that says what the image is: "simplear-a-red-fox-in-the-snow-1234.png". */
export function imageFileName(settings: GenerationSettings): string {
  const words = settings.prompt
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 48)
    .replace(/-$/, '');
  return `simplear-${words || 'image'}-${settings.seed}.png`;
}
