// The "Images" field: how many images one Generate makes (image i with seed s + i). Checked by the
// engine's own rule (resolveCount), so the page refuses what the engine would, with its message.
import { resolveCount } from '../core/engine/settings.ts';

/** The request's count for the field's text: empty = 1; anything else must be a whole number 1–8 (else InvalidSettings naming `count`). */
export function countFromField(text: string): number {
  const t = text.trim();
  // Decimal digits only ("0x2" and "1e0" are numbers to Number() but not a count a person types).
  return resolveCount(t === '' ? undefined : /^[\d.\s+-]+$/.test(t) ? Number(t) : Number.NaN);
}
