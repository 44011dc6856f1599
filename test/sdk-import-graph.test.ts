/**
 * `tokend/client` must load where the daemon's dependencies are not installed: its
 * compiled import graph holds node built-ins, the SDK and zod-free protocol modules only.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';
import { importGraph, SDK_PENDING_PACKAGES } from './support/sdk-graph.js';

const DIST = path.join(ROOT, 'dist');

describe('the SDK import graph (dist/sdk)', () => {
  const graph = importGraph(DIST, 'sdk/index.js');

  it('reaches only SDK and protocol modules, never the daemon, the CLI or zod', () => {
    expect(graph.modules.length).toBeGreaterThan(3);
    const outside = graph.modules.filter((m) => !m.startsWith(`sdk${path.sep}`) && !m.startsWith(`protocol${path.sep}`));
    expect(outside).toEqual([]);
    // api.ts holds the zod schemas; the SDK takes only its types, which compile away.
    expect(graph.modules).not.toContain(path.join('protocol', 'api.js'));
    expect(graph.packages.zod).toBeUndefined();
  });

  it('imports no package but the pending ones (test/support/sdk-graph.ts says why each is there)', () => {
    expect(Object.keys(graph.packages)).toEqual([...SDK_PENDING_PACKAGES].sort());
  });

  it('covers every file of dist/sdk, and each has its declarations', () => {
    const files = fs.readdirSync(path.join(DIST, 'sdk')).filter((f) => f.endsWith('.js'));
    expect(
      graph.modules
        .filter((m) => m.startsWith(`sdk${path.sep}`))
        .map((m) => path.basename(m))
        .sort(),
    ).toEqual(files.sort());
    for (const f of files) expect(fs.existsSync(path.join(DIST, 'sdk', f.replace(/\.js$/, '.d.ts'))), f).toBe(true);
  });
});
