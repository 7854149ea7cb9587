// The repository documents itself: every reference in its comments and markdown resolves inside
// it. Fails when a file in src/ tests/ tools/ workers/ bench/ docs/ or README.md
//  - cites the team's private notes (their section numbers or file names) instead of docs/;
//  - cites docs/<file>.md#<anchor> (or links a markdown file / heading) that does not exist;
//  - names a path of one particular machine (a home or scratch folder);
// and when a comment or document names a repository file (src/…/x.ts, tests/…, tools/…) that is
// not there, or docs/ a folder that is not.
// Fixture data (tests/fixtures/) is not scanned. The patterns below are assembled from pieces so
// that this file, which is scanned too, does not match them itself.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const SCANNED = ['src', 'tests', 'tools', 'workers', 'bench', 'docs', 'README.md'];
const SKIPPED_DIRS = new Set(['node_modules', 'tmp', 'dist', '__pycache__', '.git']);
const SKIPPED_PREFIXES = ['tests/fixtures/'];
const TEXT = /\.(ts|tsx|js|mjs|cjs|py|sh|md|html|css|json)$/;

/** Repository-relative paths (forward slashes) of the text files to scan. */
function scannedFiles(): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const abs = join(ROOT, rel);
    if (!existsSync(abs)) return;
    if (statSync(abs).isDirectory()) {
      for (const name of readdirSync(abs).sort()) {
        if (SKIPPED_DIRS.has(name)) continue;
        const child = rel ? `${rel}/${name}` : name;
        if (SKIPPED_PREFIXES.some((p) => `${child}/`.startsWith(p))) continue;
        walk(child);
      }
    } else if (TEXT.test(rel)) out.push(rel);
  };
  for (const top of SCANNED) walk(top);
  return out;
}

const read = (rel: string): string => readFileSync(join(ROOT, rel), 'utf8');

/** GitHub's heading anchor: lower case, punctuation dropped, spaces → '-'; repeats get -1, -2… */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

const anchorCache = new Map<string, Set<string>>();
function anchorsOf(rel: string): Set<string> {
  let a = anchorCache.get(rel);
  if (!a) anchorCache.set(rel, (a = headingAnchors(read(rel))));
  return a;
}

/** Why `target` (a repository-relative path, maybe with #anchor) does not resolve, or null. */
function brokenTarget(target: string): string | null {
  const [path, anchor] = target.split('#') as [string, string | undefined];
  const clean = path.replace(/\/$/, '');
  if (clean && !existsSync(join(ROOT, clean))) return `${clean} does not exist`;
  if (anchor !== undefined && clean.endsWith('.md') && !anchorsOf(clean).has(anchor)) {
    return `${clean} has no heading #${anchor}`;
  }
  return null;
}

// The private notes' names and citation styles (see the file comment for why they are built).
const NOTES = ['SP' + 'EC', 'DES' + 'IGN', 'TEST' + 'ING', 'PE' + 'ERS', 'STY' + 'LE'];
const PRIVATE_CITATIONS: RegExp[] = [
  new RegExp(`\\b(${NOTES.join('|')})\\.md\\b`),
  new RegExp(`\\b${NOTES[0]} [A-E](\\.\\d+)*\\b`),
  new RegExp(`\\b${NOTES[1]} ["“]`),
  // Upstream line references by a private prefix, e.g. <prefix>:generate.py:31
  new RegExp('\\b(S' + 'A|C' + 'T):[\\w./-]+\\.py\\b'),
];
const MACHINE_PATH = new RegExp('(^|[^\\w.$-])/(' + ['wo' + 'rk', 't' + 'mp', 'ro' + 'ot', 'ho' + 'me', 'Us' + 'ers'].join('|') + ')/');
// Not inside a longer path or URL (an upstream project's docs/ folder is theirs).
const DOCS_CITATION = /(?<![\w/.-])docs\/([\w.-]+\.md)(#[\w-]+)?/g;
const MARKDOWN_LINK = /\]\(([^)\s]+)\)/g;
const DOCS_REPO_PATH = /`((?:src|tests|tools|workers|bench|docs|public)\/[^`\s*{}<>]*)`/g;
/** A repository file named anywhere (comments, strings, markdown): src/…/x.ts, tools/…/y.py, … */
const REPO_FILE = /(?<![\w./-])((?:src|tests|tools|workers|bench|docs|public)\/[\w./-]+\.(?:tsv|ts|py|md|sh|json|jit|cjs|html|css))(?![\w-])/g;

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split('\n').length;
}

describe('docs and references', () => {
  const files = scannedFiles();

  it('scans the tree (docs/ included)', () => {
    expect(files).toContain('docs/model.md');
    expect(files).toContain('docs/architecture.md');
    expect(files).toContain('docs/testing.md');
    expect(files).toContain('tests/unit/docs-links.test.ts');
    expect(files.some((f) => f.startsWith('tests/fixtures/'))).toBe(false);
  });

  it('cites no document outside the repository', () => {
    const found: string[] = [];
    for (const f of files) {
      read(f)
        .split('\n')
        .forEach((line, i) => {
          if (PRIVATE_CITATIONS.some((re) => re.test(line))) found.push(`${f}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(found).toEqual([]);
  });

  it('names no path of one particular machine', () => {
    const found: string[] = [];
    for (const f of files) {
      read(f)
        .split('\n')
        .forEach((line, i) => {
          if (MACHINE_PATH.test(line)) found.push(`${f}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(found).toEqual([]);
  });

  it('every docs/<file>.md#<anchor> citation resolves', () => {
    const broken: string[] = [];
    let citations = 0;
    for (const f of files) {
      const text = read(f);
      for (const m of text.matchAll(DOCS_CITATION)) {
        citations++;
        const why = brokenTarget(`docs/${m[1]}${m[2] ?? ''}`);
        if (why) broken.push(`${f}:${lineOf(text, m.index)}: ${m[0]}: ${why}`);
      }
    }
    expect(broken).toEqual([]);
    expect(citations).toBeGreaterThan(0);
  });

  it('every relative link in the markdown files resolves', () => {
    const broken: string[] = [];
    for (const f of files.filter((x) => x.endsWith('.md'))) {
      // Inline code is not a link: blank it out (same length, so line numbers stay right).
      const text = read(f).replace(/`[^`\n]*`/g, (code) => ' '.repeat(code.length));
      for (const m of text.matchAll(MARKDOWN_LINK)) {
        const target = m[1]!;
        if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
        const resolved = target.startsWith('#')
          ? `${f}${target}`
          : `${relative(ROOT, resolve(ROOT, dirname(f), target.split('#')[0]!)).replace(/\\/g, '/')}${target.includes('#') ? `#${target.split('#')[1]}` : ''}`;
        const why = brokenTarget(resolved);
        if (why) broken.push(`${f}:${lineOf(text, m.index)}: ${target}: ${why}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('every repository path docs/ names exists', () => {
    const missing: string[] = [];
    for (const f of files.filter((x) => x.startsWith('docs/'))) {
      const text = read(f);
      for (const m of text.matchAll(DOCS_REPO_PATH)) {
        if (!existsSync(join(ROOT, m[1]!.split('#')[0]!.replace(/\/$/, '')))) missing.push(`${f}:${lineOf(text, m.index)}: ${m[1]}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('every repository file a comment or document names exists', () => {
    const missing: string[] = [];
    for (const f of files) {
      const text = read(f);
      for (const m of text.matchAll(REPO_FILE)) {
        if (!existsSync(join(ROOT, m[1]!))) missing.push(`${f}:${lineOf(text, m.index)}: ${m[1]}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('recognises what it looks for', () => {
    const cites = (s: string) => PRIVATE_CITATIONS.some((re) => re.test(s));
    expect(cites(`// (${NOTES[0]} B.5.2)`)).toBe(true);
    expect(cites(`// see ${NOTES[1]}.md`)).toBe(true);
    expect(cites(`// ${NOTES[1]} "Key decisions" 4`)).toBe(true);
    expect(cites('// S' + 'A:generate.py:31-34')).toBe(true);
    expect(cites('SPECIAL_TOKENS.t2i; docs/model.md#cfg')).toBe(false);
    expect(MACHINE_PATH.test('read /' + 'ho' + 'me/someone/ckpt')).toBe(true);
    expect(MACHINE_PATH.test(' "/' + 't' + 'mp/simplear"')).toBe(true);
    expect(MACHINE_PATH.test('CKPT=${TMPDIR:-/' + 'tmp}/simplear-full; /usr/bin/chromium; tmp/x/')).toBe(false);
    expect(brokenTarget('docs/model.md#cfg')).toBeNull();
    expect(brokenTarget('docs' + '/model.md#no-such-heading')).toMatch(/no heading/);
    expect(brokenTarget('docs' + '/no-such-file.md')).toMatch(/does not exist/);
    expect([...('see ' + 'src/core/model/reference.ts and https://x.org/src/y.ts').matchAll(REPO_FILE)].map((m) => m[1])).toEqual(['src/core/model/reference.ts']);
  });

  it('computes anchors as GitHub does', () => {
    const a = headingAnchors('# Title\n## Reduction to 2D\n### generation_config.json\n```\n# not a heading\n```\n## CFG\n## CFG\n');
    expect([...a]).toEqual(['title', 'reduction-to-2d', 'generation_configjson', 'cfg', 'cfg-1']);
  });
});
