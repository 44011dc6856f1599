/**
 * The CLI's rough edges against the real daemon and a real OpenID Provider: status of an
 * account that needs a login, output into a closed pipe, Ctrl-C during a device login,
 * the --min-ttl clamp, and `setup git` with real git.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ROOT, TOKEND_BIN, addConfAccount, importConfGrant, tempHome } from './support/daemon.js';
import { spawnCli, startDaemon, waitFor } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import { run } from './support/run.js';

describe('the CLI against a real daemon', () => {
  // One IdP and one daemon for all; each test has accounts of its own.
  const idp = useIdp({ accessTokenTtl: 60 });
  const { t } = useDaemon({ launch: startDaemon });

  it('status NAME exits 3 for an account without a grant (no_grant), and says what to run', async () => {
    await addConfAccount(t.d, idp.issuer);
    const r = await t.d.cli(['status', 'work']);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^status: +no_grant$/m);
    expect(r.stderr).toContain('tokend login work');
    const j = await t.d.cli(['status', 'work', '--json']);
    expect(j.code).toBe(3);
    expect(JSON.parse(j.stdout)).toMatchObject({ name: 'work', status: 'no_grant' });

    await importConfGrant(t.d, idp);
    expect(await t.d.cli(['status', 'work'])).toMatchObject({ code: 0, stderr: '' });
  });

  describe('output into a closed pipe ends quietly', () => {
    beforeAll(async () => {
      // Several accounts, so status and list have more than a line to write.
      for (const name of ['a', 'b', 'c']) await addConfAccount(t.d, idp.issuer, name);
    });

    for (const args of [['status'], ['list'], ['--help']]) {
      it(`tokend ${args.join(' ')} | head -1`, async () => {
        const sh = await run('sh', ['-c', `"$TOKEND" ${args.join(' ')} | head -1`], { env: { ...t.env, TOKEND: TOKEND_BIN } });
        expect(sh.stderr).toBe('');
        expect(sh.code).toBe(0);
        expect(sh.stdout.split('\n')).toHaveLength(2);

        // The reader gone before the first byte is written: every write meets EPIPE.
        const child = spawn(TOKEND_BIN, args, { env: t.env, stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout.destroy();
        let stderr = '';
        child.stderr.on('data', (c) => (stderr += c));
        const code = await new Promise((resolve) => child.on('close', resolve));
        expect(stderr).toBe('');
        expect(code).toBe(0);
      });
    }
  });

  it('Ctrl-C while waiting for a device login exits 130, says how to follow and stop it, and the login goes on', async () => {
    await addConfAccount(t.d, idp.issuer, 'dev');
    const cli = spawnCli(['login', 'dev', '--flow', 'device'], t.env);
    const code = await waitFor(() => /enter the code:\s+(\S+)\n/.exec(cli.stderr())?.[1], 'the user code on stderr');
    await waitFor(() => cli.stderr().includes('Waiting for the sign-in'), 'the waiting message');
    cli.child.kill('SIGINT');
    const r = await cli.done;
    expect(r.code).toBe(130);
    expect(r.stdout).toBe('');
    const said = r.stderr.slice(r.stderr.indexOf('Waiting for the sign-in'));
    expect(said).toMatch(/goes on in the background/);
    expect(said).toContain('`tokend status dev` shows it');
    expect(said).toContain('`tokend login dev --cancel` stops it');

    // Still pending in the daemon: approving the code now signs the account in.
    expect((await t.d.cli(['status', 'dev'])).code).toBe(3);
    await idp.approveDevice(code);
    await waitFor(async () => (await t.d.cli(['token', 'dev'])).code === 0, 'a token after the approval');
  });

  it('--min-ttl beyond half the token lifetime: the token on stdout, one line on stderr saying so', async () => {
    await addConfAccount(t.d, idp.issuer, 'short');
    await importConfGrant(t.d, idp, 'short');
    const r = await t.d.cli(['token', 'short', '--min-ttl', '300']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\S+\n$/);
    expect((await idp.introspect(r.stdout.trim())).active).toBe(true);
    expect(r.stderr).toMatch(/^tokend: this token of "short" is valid for \d+ s, less than --min-ttl 300: .*clamped\n$/);

    const short = await t.d.cli(['token', 'short', '--min-ttl', '10']);
    expect(short).toMatchObject({ code: 0, stderr: '' });
  });
});

describe('tokend setup git with real git', () => {
  let h: ReturnType<typeof tempHome>;
  let env: NodeJS.ProcessEnv;
  const GIT_HELPER = path.join(ROOT, 'bin', 'git-credential-tokend');
  const git = (args: string[], cwd: string, stdin?: string) => run('git', args, { env, cwd, stdin });
  const setup = (args: string[], cwd: string) => run(TOKEND_BIN, ['setup', 'git', ...args], { env, cwd });

  beforeEach(() => {
    h = tempHome();
    const home = path.join(h.home, 'user');
    fs.mkdirSync(home);
    env = { ...h.env, HOME: home, GIT_CONFIG_NOSYSTEM: '1', XDG_CONFIG_HOME: path.join(home, '.config') };
  });
  afterEach(() => h.cleanup());

  it('outside a repository: suggests --global, exit 2, writes nothing', async () => {
    const outside = fs.mkdtempSync(path.join(h.home, 'nogit-'));
    const r = await setup([], outside);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')).toHaveLength(2);
    expect(r.stderr).toContain('not in a git repository');
    expect(r.stderr).toContain('--global');
    expect(fs.existsSync(path.join(env.HOME!, '.gitconfig'))).toBe(false);
  });

  it('in a repository: git asks tokend before the global helpers, each once', async () => {
    const repo = fs.mkdtempSync(path.join(h.home, 'repo-'));
    expect((await git(['init', '-q'], repo)).code).toBe(0);
    const log = path.join(h.home, 'global-helper.log');
    await git(
      ['config', '--global', 'credential.helper', `!f() { echo ran >> '${log}'; echo username=global; echo password=from-global; }; f`],
      repo,
    );

    const r = await setup([], repo);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('.git/config');
    expect((await setup([], repo)).stderr).toContain('already');

    // tokend (no daemon here) misses with a hint on stderr; git then asks the global helper, once.
    const fill = await git(['credential', 'fill'], repo, 'protocol=https\nhost=example.com\n\n');
    expect(fill.stdout).toContain('password=from-global');
    expect(fill.stderr).toContain('tokend');
    expect(fs.readFileSync(log, 'utf8')).toBe('ran\n');
    // The global config is untouched.
    expect((await git(['config', '--global', '--get-all', 'credential.helper'], repo)).stdout.split('\n').filter(Boolean)).toHaveLength(1);
    expect((await git(['config', '--local', '--get-all', 'credential.helper'], repo)).stdout.split('\n')[1]).toBe(GIT_HELPER);
  });
});
