/**
 * The SDK's compiled import graph: every module `dist/sdk/index.js` reaches, and every
 * package it imports. `tokend/client` promises zero runtime dependencies, so the only
 * packages allowed are node's built-ins.
 */
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';

/**
 * Packages the SDK still reaches, each with the reason. Empty is the goal; the tests
 * assert the graph against exactly this list, so when a reason goes away, so must its line.
 */
export const SDK_PENDING_PACKAGES: readonly string[] = [];

export interface ImportGraph {
  /** Every module reached, relative to `distRoot`, sorted. */
  modules: string[];
  /** Every package (not a node built-in) imported anywhere in the graph, sorted, with who imports it. */
  packages: Record<string, string[]>;
}

// tsc's output: `import … from '…'`, `export … from '…'`, `import '…'`, `import('…')`.
const SPECIFIER =
  /(?:^|[\s;])(?:import|export)\s[^'";]*?\bfrom\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Walk the graph from `entry` (a .js file under `distRoot`). */
export function importGraph(distRoot: string, entry: string): ImportGraph {
  const seen = new Set<string>();
  const packages: Record<string, string[]> = {};
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = fs.readFileSync(file, 'utf8');
    for (const m of source.matchAll(SPECIFIER)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      if (spec.startsWith('.')) {
        visit(path.resolve(path.dirname(file), spec));
        continue;
      }
      if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
      const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      (packages[pkg] ??= []).push(path.relative(distRoot, file));
    }
  };
  visit(path.resolve(distRoot, entry));
  return {
    modules: [...seen].map((f) => path.relative(distRoot, f)).sort(),
    packages: Object.fromEntries(Object.entries(packages).sort()),
  };
}
