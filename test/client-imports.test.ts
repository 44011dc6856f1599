/**
 * The client starts fast because of what it does not load: node built-ins, src/protocol
 * and the SDK's transport and error (the one way to the daemon, shared with apps) only,
 * and no zod until a rare command asks for it with a dynamic import. This walks the
 * static imports of the built client (dist/), as node loads them at start-up.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';

const DIST = path.join(ROOT, 'dist');
/** What the client takes of the SDK: how to reach the daemon and what its errors are; not the SDK's API. */
const SDK_FOR_CLIENTS = ['sdk/errors.js', 'sdk/socket-transport.js'];

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
  it.each(['client/helper-main.js', 'client/cli.js', 'client/doctor.js'])(
    '%s: node built-ins, src/protocol and the SDK transport only',
    (entry) => {
      const { files, packages } = staticGraph(path.join(DIST, entry));
      expect(packages).toEqual([]);
      expect(files.filter((f) => !f.startsWith('client/') && !f.startsWith('protocol/') && !SDK_FOR_CLIENTS.includes(f))).toEqual([]);
      // The config schema (zod) is imported by `tokend doctor` only when it reads config.json.
      expect(files).not.toContain('protocol/config-file.js');
    },
  );
});

describe('one client of the daemon', () => {
  const sources = (dir: string): string[] =>
    fs
      .readdirSync(path.join(ROOT, 'src', dir), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => path.join(dir, f));
  const all = ['client', 'sdk', 'protocol', 'daemon'].flatMap(sources);
  const text = (f: string) => fs.readFileSync(path.join(ROOT, 'src', f), 'utf8');

  it("one class named TokendError (the SDK's, which the CLI throws too); the daemon's is ApiError", () => {
    expect(all.filter((f) => /\bclass TokendError\b/.test(text(f)))).toEqual([path.join('sdk', 'errors.ts')]);
    expect(all.filter((f) => /\bclass ApiError\b/.test(text(f)))).toEqual([path.join('daemon', 'errors.ts')]);
  });

  it('the CLI sends its requests through the SDK transport and reads error bodies with its one parser', () => {
    // The doctor's health probe is the one request of its own: a diagnosis with a deadline that tells a missing socket from a refusing one.
    const client = sources('client').filter((f) => f !== path.join('client', 'doctor', 'probe.ts'));
    expect(client.filter((f) => /http\.request\(|net\.createConnection\(|socketPath:/.test(text(f)))).toEqual([]);
    // A cast to the wire's error body is a parser of its own; errorFromAnswer (src/sdk/errors.ts) is the one.
    expect(client.filter((f) => /\bas \{ error\??: \{/.test(text(f)))).toEqual([]);
  });
});
