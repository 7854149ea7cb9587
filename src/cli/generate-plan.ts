// Which files a `generate` run writes: one prompt (--prompt --out, `--count` numbering the files)
// or a prompt file in GenEval's layout (--prompts --out-dir):
//   DIR/<5-digit prompt index>/metadata.jsonl     that prompt's line, as JSON
//   DIR/<5-digit prompt index>/samples/<4-digit image>.png
// A prompt-file run resumes: an image counts as done when its final PNG exists.
import { readFile, stat } from 'node:fs/promises';
import { join, parse } from 'node:path';
import type { GenerationSettings } from '../core/engine/settings.ts';
import { decodePng } from '../core/image/png.ts';
import type { PromptEntry } from './prompt-file.ts';

export interface ImageTarget {
  /** The image's number within its prompt (seed s + i). */
  i: number;
  png: string;
  tokens?: string;
}

export interface PromptJob {
  /** The prompt's settings; `seed` is image 0's. */
  settings: GenerationSettings;
  /** Every image of the prompt, done or not. */
  targets: ImageTarget[];
  /** GenEval's per-prompt metadata.jsonl (prompt-file runs). */
  metadata?: { path: string; text: string };
  /** Where the prompt came from, for messages ("prompts.txt:3"). */
  source?: string;
}

/** `path` with "-i" before its extension: cat.png → cat-0.png. */
export function numberedPath(path: string, i: number): string {
  const { dir, name, ext } = parse(path);
  return join(dir, `${name}-${i}${ext}`);
}

/** One prompt: with count 1 the files as given, else <stem>-<i> for each image. */
export function singlePromptJob(settings: GenerationSettings, count: number, out: string, tokensOut?: string): PromptJob {
  const targets = Array.from({ length: count }, (_, i): ImageTarget => {
    const name = (path: string) => (count === 1 ? path : numberedPath(path, i));
    return { i, png: name(out), ...(tokensOut ? { tokens: name(tokensOut) } : {}) };
  });
  return { settings, targets };
}

export function promptFolder(outDir: string, index: number): string {
  return join(outDir, String(index).padStart(5, '0'));
}

export function samplePath(outDir: string, index: number, i: number): string {
  return join(promptFolder(outDir, index), 'samples', `${String(i).padStart(4, '0')}.png`);
}

export function promptFileJob(entry: PromptEntry, settings: GenerationSettings, count: number, outDir: string, file: string): PromptJob {
  return {
    settings,
    targets: Array.from({ length: count }, (_, i) => ({ i, png: samplePath(outDir, entry.index, i) })),
    metadata: { path: join(promptFolder(outDir, entry.index), 'metadata.jsonl'), text: `${JSON.stringify(entry.metadata)}\n` },
    source: `${file}:${entry.line}`,
  };
}

/** The targets whose final PNG does not exist yet. */
export async function missingTargets(job: PromptJob): Promise<ImageTarget[]> {
  const exists = await Promise.all(job.targets.map((t) => stat(t.png).then((s) => s.isFile(), () => false)));
  return job.targets.filter((_, k) => !exists[k]);
}

/**
 * A prompt resumed without --seed keeps the seed it drew: s = the seed an image already made
 * records, less its number. Undefined when none is made (or it records none).
 */
export async function resumedSeed(job: PromptJob, missing: readonly ImageTarget[]): Promise<number | undefined> {
  const made = job.targets.find((t) => !missing.includes(t));
  if (!made) return undefined;
  const recorded = await readFile(made.png).then((bytes) => decodePng(new Uint8Array(bytes)).text.seed, () => undefined);
  const seed = recorded !== undefined && /^\d+$/.test(recorded) ? Number(recorded) : NaN;
  if (!Number.isInteger(seed) || seed > 0xffffffff) return undefined;
  return (seed - made.i + 2 ** 32) % 2 ** 32;
}
