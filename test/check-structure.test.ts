/**
 * scripts/check-structure.mjs, the check `npm run lint` (and so CI) runs, on trees made
 * for it: each finding is file:line and a reason, and any finding exits 1.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';
import { run } from './support/run.js';

const SCRIPT = path.join(ROOT, 'scripts', 'check-structure.mjs');
const made: string[] = [];

/** A repository holding `files` (paths relative to it). */
function tree(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokend-structure-'));
  made.push(dir);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

const check = (dir: string) => run(process.execPath, [SCRIPT, dir], { env: process.env });
const findings = (stdout: string) => stdout.split('\n').filter((l) => l && !l.startsWith('check-structure:'));

afterEach(() => {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('scripts/check-structure.mjs', () => {
  it('passes a tree with no long file, no cycle and no bench row in a comment; tests may be long', async () => {
    const r = await check(
      tree({
        'src/a.ts': "import { b } from './b.js';\n// RFC 6749 §6: a refresh may rotate the refresh token.\nexport const a = () => b;\n",
        'src/b.ts': "export const b = 'row 7 of a string is no comment';\nexport const re = /\\/\\/ row 9/;\n",
        'src/c.ts': 'export const c = 1;\n'.repeat(800),
        'test/long.test.ts': '// fine\n'.repeat(900),
      }),
    );
    expect(findings(r.stdout)).toEqual([]);
    expect(r.code).toBe(0);
  });

  it('fails on a source file over 800 lines', async () => {
    const r = await check(tree({ 'src/daemon/big.ts': 'export const x = 1;\n'.repeat(801) }));
    expect(findings(r.stdout)).toEqual(['src/daemon/big.ts:801: 801 lines, over the 800 a source file may have: split it by concern']);
    expect(r.code).toBe(1);
  });

  it('fails on an import cycle, through type-only, export-from and dynamic imports, naming each edge', async () => {
    const r = await check(
      tree({
        'src/a.ts': "import type { B } from './b/index.js';\nexport type A = B;\n",
        'src/b/index.ts': "export * from './c.js';\nexport type B = string;\n",
        'src/b/c.ts': "\n\nexport const load = () => import('../a.js');\n",
        'src/other.ts': "import type { A } from './a.js';\nexport type O = A;\n",
      }),
    );
    expect(findings(r.stdout)).toEqual(['src/a.ts:1: import cycle: src/a.ts:1 → src/b/index.ts:1 → src/b/c.ts:3 → src/a.ts']);
    expect(r.code).toBe(1);
  });

  it('fails on a comment citing a bench row, on its line, even across a line break; code and strings do not count', async () => {
    const r = await check(
      tree({
        'src/x.ts': [
          "export const label = 'bench row 3';",
          '/**',
          ' * Parsed once: parsing it again was a tenth of',
          ' * start-up (bench/, row',
          ' * 7).',
          ' */',
          'export const y = 1; // faster: rows 5 and 9',
          '',
        ].join('\n'),
      }),
    );
    expect(findings(r.stdout)).toEqual([
      'src/x.ts:4: a comment cites a bench row ("row 7"): rows are renumbered; say why in words, or cite a rule or an RFC',
      'src/x.ts:7: a comment cites a bench row ("rows 5"): rows are renumbered; say why in words, or cite a rule or an RFC',
    ]);
    expect(r.code).toBe(1);
  });
});
