/**
 * `npm run bench` itself, on the tests' own IdP, git server and daemon harness (which the
 * bench shares): a quick run of a few scenarios must print its table and --json with a
 * figure and a verdict in every row. Only the shape is checked, never a figure: speed is
 * measured by the bench, not asserted here.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './support/daemon.js';

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-bench-'));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

/** `node bench/run.mjs ARGS`; rejects, with `code` and `stderr`, when it exits non-zero. */
const bench = (args: string[]) =>
  promisify(execFile)(process.execPath, [path.join(ROOT, 'bench', 'run.mjs'), ...args], { cwd: ROOT, timeout: 5 * 60_000 });

describe('npm run bench', () => {
  it('runs the git helper (IdP, git server, main daemon, credential cache) and durable-refresh scenarios into one table and --json', async () => {
    const json = path.join(out, 'bench.json');
    const r = await bench(['--quick', '--only', '3,9', '--json', json]);
    const tableRows = r.stdout.split('\n').filter((l) => /^\| \d\./.test(l));
    expect(tableRows.map((l) => l.split(' | ')[0])).toEqual([
      '| 3. `git-credential-tokend get`',
      '| 9. durable refresh (`store.commitRefresh`)',
    ]);
    const report = JSON.parse(fs.readFileSync(json, 'utf8'));
    expect(report.failed).toBe(false);
    expect(report.rows.map((row: { id: number }) => row.id)).toEqual([30, 90]);
    for (const row of report.rows) {
      expect(row.verdict).toMatch(/^(pass|\*\*MISS\*\*)$/);
      expect(row.values.tokend).toBeGreaterThan(0);
      expect(row.values.baseline).toBeGreaterThan(0);
    }
    expect(Object.keys(report.raw).sort()).toEqual(['durable', 'helper']);
  });

  it('refuses a scenario that does not exist, with exit status 2', async () => {
    await expect(bench(['--only', '42'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('there is no scenario 42') });
  });
});
