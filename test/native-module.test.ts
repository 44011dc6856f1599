/**
 * An install where better-sqlite3's install script never ran (npm 12 blocks dependency
 * install scripts unless allowed; README, Install): its native module is not there. The
 * daemon must stop with one sentence naming the fix, not a stack trace. The tree is a copy
 * of this checkout's built package (bin, dist, build, package.json) whose node_modules links
 * every dependency but better-sqlite3, copied without its build/ folder: what npm leaves
 * when it skips the script.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tokendEnv } from './support/daemon.js';
import { run } from './support/run.js';

describe('better-sqlite3 not built', () => {
  let work: string;
  let pkg: string;
  let home: string;

  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-native-'));
    pkg = path.join(work, 'tokend');
    home = path.join(work, 'home');
    for (const part of ['bin', 'dist', 'build', 'package.json'])
      fs.cpSync(path.join(ROOT, part), path.join(pkg, part), { recursive: true });
    const modules = path.join(pkg, 'node_modules');
    fs.mkdirSync(modules);
    const ours = fs.realpathSync(path.join(ROOT, 'node_modules'));
    for (const entry of fs.readdirSync(ours)) {
      if (entry === 'better-sqlite3' || entry === '.bin') continue;
      fs.symlinkSync(path.join(ours, entry), path.join(modules, entry));
    }
    // Its JavaScript as npm unpacks it, without what the install script builds (and the C sources it builds from).
    const skip = new Set(['build', 'deps', 'src'].map((d) => path.join(ours, 'better-sqlite3', d)));
    fs.cpSync(path.join(ours, 'better-sqlite3'), path.join(modules, 'better-sqlite3'), {
      recursive: true,
      filter: (src) => !skip.has(src),
    });
  });
  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('the daemon stops with the fix named: the install flag npm 12 needs, or npm rebuild where it is; no stack trace', async () => {
    const env = tokendEnv(home);
    const r = await run(process.execPath, [path.join(pkg, 'bin', 'tokend'), 'daemon'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("better-sqlite3's native module is not built for this Node (Could not locate the bindings file)");
    expect(r.stderr).toContain('npm install -g tokend --allow-scripts=tokend,better-sqlite3');
    expect(r.stderr).toContain(`cd ${pkg} && npm rebuild better-sqlite3`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stderr).not.toContain('Tried:'); // nor the loader's list of paths
  });

  it('an app or the CLI starting it finds the same sentence in the log it is pointed at', async () => {
    const env = { ...tokendEnv(home) };
    delete env.TOKEND_NO_AUTOSTART;
    const r = await run(process.execPath, [path.join(pkg, 'bin', 'tokend'), 'list'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('tokend did not start');
    const log = fs.readFileSync(path.join(home, 'state', 'tokend.log'), 'utf8');
    expect(log).toContain('npm install -g tokend --allow-scripts=tokend,better-sqlite3');
  });
});
