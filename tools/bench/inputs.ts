// What `npm run bench`'s sections run on: the repository's tiny fixtures, a full-size random
// checkpoint when one has been written, and a typical prompt.
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const FIXTURES = join(ROOT, 'tests/fixtures');
/** A full-size random checkpoint (`npm run fixtures:full -- --out DIR`), used when present. */
export const FULL_CHECKPOINT = process.env.SIMPLEAR_FULL ?? join(tmpdir(), 'simplear-full');
/** A typical prompt for the context length (its token count, both streams, sets P). */
export const SAMPLE_PROMPT = 'a red fox sitting in a snowy forest at dawn, soft light, highly detailed';
