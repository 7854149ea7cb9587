// `generate --keep-rows K --from <tokens.json>`: redraw below a row of an earlier image. The file
// is what `--tokens-out` writes (a JSON array of visual codes, raster order); it and K are checked
// against the image size before the bundle is opened, so a wrong file fails at once (exit 2).
import { readFile } from 'node:fs/promises';
import { SimpleARError } from '../core/base/errors.ts';
import { VISUAL_CODES } from '../core/base/model-spec.ts';
import { latentSide, resolveKeep, type KeptRows } from '../core/engine/settings.ts';
import { UsageError } from './command.ts';

function invalid(message: string): SimpleARError {
  return new SimpleARError('InvalidSettings', message, { field: 'keep' });
}

/** The codes of a --tokens-out file: a JSON array of whole numbers. */
export function parseTokensFile(text: string, file: string): number[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw invalid(`--from ${file}: not JSON (${(e as Error).message}); give a file that --tokens-out wrote`);
  }
  if (!Array.isArray(value) || value.length === 0 || !value.every((c) => typeof c === 'number' && Number.isInteger(c))) {
    throw invalid(`--from ${file}: expected a JSON array of visual codes (whole numbers), as --tokens-out writes`);
  }
  return value as number[];
}

/**
 * --keep-rows and --from together → the engine's `keep`, checked for an image of `size` px:
 * undefined when neither is given. Throws UsageError when only one is given, InvalidSettings for a
 * bad K or a file of another size (naming the size it was made at).
 */
export async function keptRowsFromOptions(keepRows: unknown, from: unknown, size: number): Promise<KeptRows | undefined> {
  if (keepRows === undefined && from === undefined) return undefined;
  if (from === undefined) throw new UsageError('--keep-rows needs --from <tokens.json> (the codes --tokens-out wrote)');
  if (keepRows === undefined) throw new UsageError('--from needs --keep-rows <K> (the latent rows to keep from the top)');
  const side = latentSide(size);
  const text = String(keepRows).trim();
  const rows = text === '' ? NaN : Number(text);
  if (!Number.isInteger(rows) || rows < 0 || rows > side - 1) {
    throw invalid(`keep: --keep-rows must be a whole number from 0 to ${side - 1} (a ${size} px image has ${side} latent rows; got ${text})`);
  }
  const file = String(from);
  let contents: string;
  try {
    contents = await readFile(file, 'utf8');
  } catch (e) {
    throw invalid(`--from ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const codes = parseTokensFile(contents, file);
  if (codes.length !== side * side) {
    const made = Math.sqrt(codes.length);
    const was = Number.isInteger(made) ? ` (a ${made * 16} px image: give --size ${made * 16})` : '';
    throw invalid(`keep: --from ${file} holds ${codes.length} codes${was}; a ${size} px image has ${side * side}`);
  }
  const keep = { codes, rows };
  // The engine checks again with the model's own count; this catches a foreign file early.
  resolveKeep(keep, side, VISUAL_CODES);
  return keep;
}
