// The settings of a generated image as PNG text chunks: one table, shared by the CLI and the
// page, so a PNG from either says the same things under the same keys.
import type { GenerationSettings } from '../engine/settings.ts';

export const SOFTWARE = 'simplear-web';

/** The PNG text chunks of a generated image; `keptRows`: the latent rows it kept from an earlier image (redraw below a row). */
export function pngText(s: GenerationSettings, model: string, keptRows?: number): Record<string, string> {
  return {
    prompt: s.prompt,
    'negative prompt': s.negativePrompt ?? '(default)',
    seed: String(s.seed),
    size: `${s.size}x${s.size}`,
    cfg: String(s.cfg),
    ...(s.repetitionPenalty !== undefined ? { 'repetition penalty': String(s.repetitionPenalty) } : {}),
    temperature: String(s.temperature),
    'top-k': String(s.topK),
    'top-p': String(s.topP),
    ...(s.sjd ? { sjd: `window ${s.sjd.window}` } : {}),
    ...(keptRows ? { 'kept rows': String(keptRows) } : {}),
    model,
    Software: SOFTWARE,
  };
}
