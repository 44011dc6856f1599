/**
 * The client starts fast because of what it does not load: node built-ins and src/protocol
 * only, and no zod until a rare command asks for it with a dynamic import. This walks the
 * static imports of the built client (dist/), as node loads them at start-up.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';

const DIST = path.join(ROOT, 'dist');

/** Every module `entry` loads before its first line runs: its static imports, transitively. */
function staticGraph(entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const text = fs.readFileSync(file, 'utf8');
    // `import x from '…'`, `import '…'`, `export … from '…'`; not `import('…')`, which runs later.
    for (const m of text.matchAll(/^\s*(?:import|export)\s(?:[^'";]*?\sfrom\s)?['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(path.resolve(path.dirname(file), spec));
      else if (!spec.startsWith('node:')) packages.add(spec);
    }
  };
  visit(entry);
  return { files: [...files].map((f) => path.relative(DIST, f)).sort(), packages: [...packages].sort() };
}

describe('what the client loads at start-up', () => {
  it.each(['client/helper-main.js', 'client/cli.js', 'client/doctor.js'])('%s: node built-ins and src/protocol only', (entry) => {
    const { files, packages } = staticGraph(path.join(DIST, entry));
    expect(packages).toEqual([]);
    expect(files.filter((f) => !f.startsWith('client/') && !f.startsWith('protocol/'))).toEqual([]);
    // The config schema (zod) is imported by `tokend doctor` only when it reads config.json.
    expect(files).not.toContain('protocol/config-file.js');
  });
});
