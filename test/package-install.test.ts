/**
 * tokend installed as a user installs it: `npm pack`, then `npm install -g --prefix <an
 * empty folder> <the tarball>`, its dependencies from the npm registry, and everything
 * after runs from that prefix alone: `tokend token` against a real IdP grant with the
 * daemon started by autostart from the installed tree, the git helper through real git
 * against a real git server, docker's helper; then a build/tokend-fast that cannot execute
 * here (built for another architecture, or exiting 126), and an install on a machine
 * without a C compiler, where every command still answers, through node.
 *
 * What is real and what is a shortcut:
 * - real: the tarball `npm pack` makes (its file list checked); npm's global install into
 *   an empty prefix (its bin and man links); dependencies resolved and fetched from the
 *   registry (npm's cache reused: --prefer-offline); the package's own `install` script
 *   run by npm (`npm rebuild -g tokend`), building build/tokend-fast with this machine's
 *   compiler; the installed programs run as programs; autostart; the IdP; git.
 * - shortcut, so `npm test` stays minutes shorter: the install runs with --ignore-scripts,
 *   so better-sqlite3 does not compile from source (~2 min here). This checkout's built
 *   better_sqlite3.node (same node, same architecture, same better-sqlite3 version: checked;
 *   on a version mismatch its whole package folder) is copied into the installed tree, and
 *   then npm runs tokend's own install script as it would have. TOKEND_TEST_REAL_INSTALL=1
 *   skips the shortcut: a plain `npm install -g` that runs every install script.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, socketRequest } from './support/daemon.js';
import { startGitServer, type GitServer } from './support/git-server.js';
import { startIdp, type TestIdp } from './support/idp.js';
import { run } from './support/run.js';

const exec = promisify(execFile);
const REAL = process.env.TOKEND_TEST_REAL_INSTALL === '1';
const npm = (args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) =>
  exec('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline'], { maxBuffer: 32 << 20, ...opts });

/** `file` (an ELF executable) patched to say it is for another machine: execve refuses it (ENOEXEC, "Exec format error"). */
function foreignElf(file: string, to: string): void {
  const b = fs.readFileSync(file);
  expect(b.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
  const machine = b.readUInt16LE(18);
  b.writeUInt16LE(machine === 0xb7 ? 0x3e : 0xb7, 18); // aarch64 ⇄ x86-64
  fs.writeFileSync(to, b, { mode: 0o755 });
}

describe('the package, installed from its tarball into an empty prefix', { timeout: 120_000 }, () => {
  let work: string;
  let tarball: string;
  let packed: string[];
  let prefix: string;
  let pkg: string;
  let env: NodeJS.ProcessEnv;
  let idp: TestIdp;
  let server: GitServer;
  const tokend = (args: string[], stdin?: string) => run(path.join(prefix, 'bin', 'tokend'), args, { env, stdin });
  const daemonPid = async () => JSON.parse((await tokend(['status', '--json'])).stdout).daemon.pid as number;

  beforeAll(
    async () => {
      work = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-inst-'));
      // dist/ and man/ are built by `npm test`; --ignore-scripts skips `prepare` building them again.
      const p = JSON.parse((await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT })).stdout)[0];
      tarball = path.join(work, p.filename);
      packed = p.files.map((f: { path: string }) => f.path);
      prefix = path.join(work, 'prefix');
      pkg = path.join(prefix, 'lib', 'node_modules', 'tokend');
      await npm(['install', '-g', '--prefix', prefix, tarball, ...(REAL ? [] : ['--ignore-scripts'])], { cwd: work });
      if (!REAL) {
        const theirs = path.join(pkg, 'node_modules', 'better-sqlite3');
        const ours = path.join(ROOT, 'node_modules', 'better-sqlite3');
        const version = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
        if (version(theirs) === version(ours)) {
          fs.mkdirSync(path.join(theirs, 'build', 'Release'), { recursive: true });
          fs.copyFileSync(
            path.join(ours, 'build', 'Release', 'better_sqlite3.node'),
            path.join(theirs, 'build', 'Release', 'better_sqlite3.node'),
          );
        } else {
          fs.rmSync(theirs, { recursive: true });
          fs.cpSync(ours, theirs, { recursive: true });
        }
        // What npm would have run at install, for tokend alone.
        await npm(['rebuild', '-g', '--prefix', prefix, 'tokend'], { cwd: work });
      }
      const home = path.join(work, 'h');
      fs.mkdirSync(home, { mode: 0o700 });
      env = {
        PATH: `${path.join(prefix, 'bin')}${path.delimiter}${process.env.PATH}`,
        HOME: home,
        TOKEND_HOME: path.join(home, 't'),
        TOKEND_LOG_LEVEL: 'debug',
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_TERMINAL_PROMPT: '0',
        LANG: 'C',
      };
      idp = await startIdp();
      server = await startGitServer({ authorize: async (_user, password) => (await idp.introspect(password)).active });
    },
    REAL ? 600_000 : 180_000,
  );

  afterAll(async () => {
    // The daemon autostart started (ours: under this test's TOKEND_HOME).
    const pid = await daemonPid().catch(() => undefined);
    if (pid) process.kill(pid, 'SIGTERM');
    await server?.close();
    await idp?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('the tarball: the license, README with every doc it links, the man page and the C source; no built client, no source maps', () => {
    for (const f of [
      'LICENSE',
      'README.md',
      'package.json',
      'man/tokend.1',
      'native/tokend-fast.c',
      'scripts/build-native.mjs',
      'bin/tokend',
      'bin/tokend-sh-lib',
      'bin/code-cache.cjs',
      'dist/daemon/main.bundle.cache',
    ]) {
      expect(packed).toContain(f);
    }
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const links = [...readme.matchAll(/\]\((?!https?:|#)([^)#]+)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(3);
    for (const l of links) expect(packed, l).toContain(l);
    expect(packed.filter((f) => f.startsWith('build/'))).toEqual([]);
    expect(packed.filter((f) => f.endsWith('.map'))).toEqual([]);
    const manifest = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8'));
    expect(manifest).toMatchObject({ license: 'MIT', man: ['./man/tokend.1'], scripts: { install: 'node scripts/build-native.mjs' } });
    expect(manifest.repository.url).toMatch(/^git\+https:\/\//);
    expect(fs.readFileSync(path.join(pkg, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} the tokend authors\n/);
  });

  it('installs the commands and the man page, and builds build/tokend-fast on this machine', async () => {
    for (const b of ['tokend', 'git-credential-tokend', 'docker-credential-tokend', 'bazel-credential-tokend']) {
      expect(fs.realpathSync(path.join(prefix, 'bin', b))).toBe(path.join(pkg, 'bin', b));
    }
    expect(fs.realpathSync(path.join(prefix, 'share', 'man', 'man1', 'tokend.1'))).toBe(path.join(pkg, 'man', 'tokend.1'));
    // Built by the install script, here: it runs (usage, exit 2).
    const fast = await run(path.join(pkg, 'build', 'tokend-fast'), [], { env });
    expect([fast.code, fast.stderr]).toEqual([2, 'usage: tokend-fast SOCKET PATH [ARG]\n']);
    expect((await tokend(['version'])).stdout).toBe(`${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version}\n`);
  });

  it("tokend setup cli: npm's tokend link points at build/tokend, --undo back; a client that cannot run here is never linked", async () => {
    // Before any account and with autostart off, so the tests after it find the tree as they expect.
    const quiet = { ...env, TOKEND_NO_AUTOSTART: '1' };
    const tk = (args: string[]) => run(path.join(prefix, 'bin', 'tokend'), args, { env: quiet });
    const link = path.join(prefix, 'bin', 'tokend');
    const viaSh = await tk(['token', 'work']);
    const set = await tk(['setup', 'cli']);
    expect(set.code, set.stderr).toBe(0);
    // npm's own relative form, so npm still sees the link as the package's (uninstall removes it).
    expect(fs.readlinkSync(link)).toBe('../lib/node_modules/tokend/build/tokend');
    expect(fs.realpathSync(link)).toBe(path.join(pkg, 'build', 'tokend-fast'));
    // No daemon: build/tokend hands the call to node, which says so as it did through sh.
    expect(viaSh.code).toBe(1);
    expect(await tk(['token', 'work'])).toEqual(viaSh);
    expect((await tk(['version'])).stdout).toBe(
      (await run(process.execPath, [path.join(pkg, 'bin', 'tokend'), 'version'], { env: quiet })).stdout,
    );
    const undo = await tk(['setup', 'cli', '--undo']);
    expect(undo.code, undo.stderr).toBe(0);
    expect(fs.readlinkSync(link)).toBe('../lib/node_modules/tokend/bin/tokend');

    // The tree copied from another architecture: nothing is linked, the sh script stays.
    const fast = path.join(pkg, 'build', 'tokend-fast');
    const good = `${fast}.good`;
    fs.copyFileSync(fast, good);
    try {
      foreignElf(good, fast);
      const refused = await tk(['setup', 'cli']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('does not run on this machine');
      expect(fs.readlinkSync(link)).toBe('../lib/node_modules/tokend/bin/tokend');
    } finally {
      fs.renameSync(good, fast);
    }
  });

  it('tokend token against a real IdP grant, the daemon autostarted from the installed tree', async () => {
    const add = await tokend(
      [
        'add',
        'work',
        '--issuer',
        idp.issuer,
        '--client-id',
        'conf',
        '--client-secret-stdin',
        '--scope',
        'openid offline_access api',
        '--host',
        '127.0.0.1',
      ],
      'conf-secret',
    );
    expect(add.code, add.stderr).toBe(0);
    // Nothing was running: the first command started the daemon, from the prefix's own files.
    const cmdline = fs.readFileSync(`/proc/${await daemonPid()}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toContain(path.join(pkg, 'bin', 'tokend'));
    const issued = await idp.issueRefreshToken('conf');
    expect((await tokend(['import', 'work', '--refresh-token-stdin'], issued.refresh_token)).code).toBe(0);
    const t = await tokend(['token', 'work']);
    expect([t.code, t.stderr]).toEqual([0, '']);
    expect((await idp.introspect(t.stdout.trim())).active).toBe(true);
  });

  it('the git helper through real git: tokend setup git --global, then a clone', async () => {
    const setup = await tokend(['setup', 'git', '--global']);
    expect(setup.code, setup.stderr).toBe(0);
    expect((await run('git', ['config', '--global', '--get-all', 'credential.helper'], { env })).stdout).toBe(
      `${path.join(pkg, 'bin', 'git-credential-tokend')}\n`,
    );
    await server.createRepo('app');
    const clone = await run('git', ['clone', `${server.url}/app.git`, path.join(work, 'app')], { env });
    expect(clone.stderr).not.toMatch(/fatal/);
    expect(clone.code).toBe(0);
    expect(server.stats.lastUsername).toBe('oauth2');
  });

  it('a build/tokend-fast that cannot execute here (another architecture, a script exiting 126): the shims answer through node', async () => {
    const fast = path.join(pkg, 'build', 'tokend-fast');
    const good = `${fast}.good`;
    fs.copyFileSync(fast, good);
    const token = (await tokend(['token', 'work'])).stdout;
    const gitGet = 'protocol=http\nhost=127.0.0.1\n\n';
    try {
      for (const make of [() => foreignElf(good, fast), () => fs.writeFileSync(fast, '#!/bin/sh\nexit 126\n', { mode: 0o755 })]) {
        make();
        expect((await run('sh', ['-c', '"$0"', fast], { env })).code).toBe(126); // what a shell gets: it cannot execute
        const t = await tokend(['token', 'work']);
        expect([t.code, t.stdout]).toEqual([0, token]);
        expect(t.stderr).toContain('tokend-fast cannot run here (exit 126); answering through node');
        const g = await run(path.join(prefix, 'bin', 'git-credential-tokend'), ['get'], { env, stdin: gitGet });
        expect(g.code).toBe(0);
        expect(g.stdout.startsWith(`username=oauth2\npassword=${token}password_expiry_utc=`), g.stdout).toBe(true);
        const dk = await run(path.join(prefix, 'bin', 'docker-credential-tokend'), ['get'], { env, stdin: '127.0.0.1' });
        expect([dk.code, JSON.parse(dk.stdout).Secret]).toEqual([0, token.trim()]);
        const clone = await run('git', ['ls-remote', `${server.url}/app.git`], { env });
        expect(clone.code, clone.stderr).toBe(0);
      }
    } finally {
      fs.renameSync(good, fast);
    }
  });

  it('without a C compiler (or with one whose output does not run here) the install script skips quietly and leaves no client; all still works', async () => {
    const fast = path.join(pkg, 'build', 'tokend-fast');
    const good = `${fast}.good`;
    fs.copyFileSync(fast, good);
    foreignElf(good, fast); // as if the tree had been copied from another machine
    // A PATH with node, npm and sh only: no cc, gcc or clang.
    const bare = path.join(work, 'bare-bin');
    fs.mkdirSync(bare);
    const which = async (cmd: string) => (await exec('sh', ['-c', `command -v ${cmd}`])).stdout.trim();
    for (const cmd of ['node', 'npm', 'sh']) fs.symlinkSync(fs.realpathSync(await which(cmd)), path.join(bare, cmd));
    try {
      const r = await exec(path.join(bare, 'npm'), ['rebuild', '-g', '--prefix', prefix, 'tokend', '--foreground-scripts'], {
        cwd: work,
        env: { ...env, PATH: bare, CC: '' },
      });
      expect(r.stderr).toContain('no C compiler found');
      expect(fs.existsSync(fast)).toBe(false);
      // curl, else node, answer instead.
      const t = await tokend(['token', 'work']);
      expect([t.code, t.stderr]).toEqual([0, '']);
      expect((await idp.introspect(t.stdout.trim())).active).toBe(true);
      expect((await run('git', ['ls-remote', `${server.url}/app.git`], { env })).code).toBe(0);
      // A compiler whose output does not run here ($CC a cross compiler): nothing is left for the shims either.
      const cross = path.join(work, 'cross-cc');
      fs.writeFileSync(cross, '#!/bin/sh\nwhile [ "$1" != -o ]; do shift; done\nprintf \'#!/bin/sh\\nexit 126\\n\' > "$2"\n', {
        mode: 0o755,
      });
      const c = await exec(path.join(bare, 'npm'), ['rebuild', '-g', '--prefix', prefix, 'tokend', '--foreground-scripts'], {
        cwd: work,
        env: { ...env, PATH: bare, CC: cross },
      });
      expect(c.stderr).toContain('does not run on this machine');
      expect(fs.readdirSync(path.join(pkg, 'build'))).toEqual(['tokend-fast.good']);
    } finally {
      fs.renameSync(good, fast);
    }
    // The socket is still the autostarted daemon's.
    expect((await socketRequest(path.join(env.TOKEND_HOME!, 'run', 'tokend.sock'), 'GET', '/v1/health')).status).toBe(200);
  });
});
