// The source tree's layout rules (docs/architecture.md#dependency-order-inside-srccore): the folders
// of src/core depend on each other in one direction only (no folder-level import cycles), base/
// imports no other folder of src/core, and nothing in src/ or workers/ imports tests/ or tools/.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const CORE = join(ROOT, 'src/core');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The files a module imports or re-exports by relative path (static and dynamic), resolved. */
function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm)].map((m) => m[2]!);
  return specs.map((s) => resolve(dirname(file), s));
}

/** src/core's folder of a path inside it ('.' for a file at its top). */
const folderOf = (path: string): string => {
  const parts = relative(CORE, path).split(/[\\/]/);
  return parts.length > 1 ? parts[0]! : '.';
};

/** Folder → the folders it imports, with one example import each (for the failure message). */
function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of sourceFiles(CORE)) {
    const from = folderOf(file);
    for (const target of relativeImports(file)) {
      if (relative(CORE, target).startsWith('..')) continue;
      const to = folderOf(target);
      if (to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      if (!edges.has(to)) edges.set(to, `${relative(ROOT, file)} → ${relative(ROOT, target)}`);
      graph.set(from, edges);
    }
  }
  return graph;
}

/** Each folder-level cycle as its edges' example imports (empty when the graph is acyclic). */
function cycles(graph: Map<string, Map<string, string>>): string[][] {
  const found: string[][] = [];
  const reaches = (from: string, to: string, seen = new Set<string>()): boolean => {
    for (const next of graph.get(from)?.keys() ?? []) {
      if (next === to) return true;
      if (!seen.has(next) && (seen.add(next), reaches(next, to, seen))) return true;
    }
    return false;
  };
  for (const [from, edges] of graph) for (const [to, example] of edges) if (reaches(to, from)) found.push([`${from} → ${to}`, example]);
  return found;
}

describe('source layout', () => {
  it('src/core folders import each other in one direction only', () => {
    const graph = folderGraph();
    expect(graph.size).toBeGreaterThan(5); // the walk found the folders and their imports
    expect(cycles(graph)).toEqual([]);
  });

  it('src/core/base imports nothing else of src/core, and no file sits at src/core’s top', () => {
    const graph = folderGraph();
    expect([...(graph.get('base')?.values() ?? [])]).toEqual([]);
    expect(graph.has('.')).toBe(false);
  });

  it('the cycle check finds a cycle when there is one', () => {
    const graph = new Map([
      ['a', new Map([['b', 'a.ts → b.ts']])],
      ['b', new Map([['a', 'b.ts → a.ts']])],
    ]);
    expect(cycles(graph)).toHaveLength(2);
  });

  it('nothing in src/ or workers/ imports tests/ or tools/', () => {
    const outside = [join(ROOT, 'tests'), join(ROOT, 'tools')];
    const offending = [...sourceFiles(join(ROOT, 'src')), ...sourceFiles(join(ROOT, 'workers'))].flatMap((file) =>
      relativeImports(file)
        .filter((t) => outside.some((o) => !relative(o, t).startsWith('..')))
        .map((t) => `${relative(ROOT, file)} → ${relative(ROOT, t)}`),
    );
    expect(offending).toEqual([]);
  });
});
