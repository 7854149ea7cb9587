// `generate --prompts FILE`: the prompts of a run, one per line, as plain text or as JSONL objects
// with a "prompt" field (GenEval's evaluation_metadata.jsonl). Blank lines are skipped, so a
// prompt's index counts prompts, not lines; errors name the file's line (from 1).
import { readFile } from 'node:fs/promises';
import { SimpleARError } from '../core/base/errors.ts';

export interface PromptEntry {
  /** Position among the file's prompts, from 0: the GenEval folder's number. */
  index: number;
  /** The file's line, from 1 (for messages). */
  line: number;
  prompt: string;
  /** What metadata.jsonl records: the JSONL object as given, or { prompt } for plain text. */
  metadata: Record<string, unknown>;
}

function bad(file: string, problem: string, details: Record<string, unknown> = {}): never {
  throw new SimpleARError('InvalidSettings', `${file}: ${problem}`, { file, field: 'prompts', ...details });
}

/**
 * JSONL when the name ends in .jsonl or the first non-blank line starts with "{" (a plain-text
 * prompt rarely does); then every line must be a JSON object with a non-empty string "prompt".
 */
export function parsePromptFile(text: string, file: string): PromptEntry[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const firstLine = lines.find((l) => l.trim() !== '');
  const jsonl = /\.jsonl$/i.test(file) || (firstLine?.trimStart().startsWith('{') ?? false);
  const entries: PromptEntry[] = [];
  lines.forEach((raw, i) => {
    const lineNo = i + 1;
    if (raw.trim() === '') return;
    if (!jsonl) {
      const prompt = raw.trim();
      entries.push({ index: entries.length, line: lineNo, prompt, metadata: { prompt } });
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      bad(file, `line ${lineNo}: not valid JSON (${(e as Error).message})`, { line: lineNo });
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      bad(file, `line ${lineNo}: expected a JSON object with a "prompt" field`, { line: lineNo });
    }
    const metadata = value as Record<string, unknown>;
    const prompt = metadata.prompt;
    if (typeof prompt !== 'string' || prompt.trim() === '') {
      bad(file, `line ${lineNo}: the object has no "prompt" string`, { line: lineNo });
    }
    entries.push({ index: entries.length, line: lineNo, prompt, metadata });
  });
  if (entries.length === 0) bad(file, 'no prompts (the file is empty)');
  return entries;
}

export async function readPromptFile(file: string): Promise<PromptEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    return bad(file, `cannot read (${(e as Error).message})`);
  }
  return parsePromptFile(text, file);
}
