/**
 * git and docker the way current versions speak to helpers, through the real shims, a real
 * daemon and the real IdP: git 2.46+'s `capability[]=authtype` (fed as git 2.46 writes it:
 * the machines run git 2.39, which never sends it) answered with an ephemeral Bearer
 * credential; real git 2.39 still getting username and password; `tokend setup git` making a
 * path-scoped account work with real git (useHttpPath); `tokend doctor` spotting a storage
 * helper after tokend, shown keeping a real token; docker `store` refusing a registry no
 * account serves.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, postConfGrant, putConfAccount } from './support/daemon.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';
import { startGitServer } from './support/git-server.js';
import { run } from './support/run.js';

const GIT_HELPER = path.join(ROOT, 'bin', 'git-credential-tokend');
const DOCKER_HELPER = path.join(ROOT, 'bin', 'docker-credential-tokend');

describe('git and docker helpers, the modern way', () => {
  const idp = useIdp({ accessTokenTtl: 600 });
  const server = useServer(() => startGitServer({ authorize: async (_user, password) => (await idp.introspect(password)).active }), {
    what: 'the git server',
  });
  let port: number;
  beforeAll(() => {
    port = server.port;
  });
  // `work` serves the git server's whole origin; `scoped` only its repository `scoped.git`.
  const { d, t: h } = useDaemon({
    account: { idp, args: () => ['--host', `127.0.0.1:${port}`, '--host', 'registry.example.com'], grant: true },
  });
  /** A fresh HOME for git (its own ~/.gitconfig) for each test that configures git. */
  const gitEnv = (home: string): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    TOKEND_HOME: h.home,
    TOKEND_NO_AUTOSTART: '1',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
    LANG: 'C',
  });
  const newHome = () => fs.mkdtempSync(path.join(h.home, 'user-'));

  beforeAll(async () => {
    await server.createRepo('app');
    await server.createRepo('scoped');
  });

  it('git 2.46+ (capability[]=authtype): the shim answers an ephemeral Bearer credential that the IdP calls active', async () => {
    // What git 2.46 writes for a first `get` after a 401 (credential.c credential_write).
    const stdin = `capability[]=authtype\ncapability[]=state\nprotocol=http\nhost=127.0.0.1:${port}\nwwwauth[]=Basic realm="test"\n\n`;
    const r = await run(GIT_HELPER, ['get'], { env: gitEnv(newHome()), stdin });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual(['capability[]=authtype', 'authtype=Bearer']);
    expect(lines[2]).toMatch(/^credential=\S+$/);
    expect(lines[3]).toBe('ephemeral=1');
    expect(lines[4]).toMatch(/^password_expiry_utc=\d+$/);
    expect(r.stdout).not.toMatch(/^(username|password)=/m);
    const token = lines[2]!.slice('credential='.length);
    expect((await idp.introspect(token)).active).toBe(true);
    expect(token).toBe((await d.cli(['token', 'work'])).stdout.trim());
  });

  it('git 2.46+ erase carries the refused Bearer credential back: the daemon drops it and the next get is a fresh token', async () => {
    const env = gitEnv(newHome());
    const get = `capability[]=authtype\ncapability[]=state\nprotocol=http\nhost=127.0.0.1:${port}\n\n`;
    const first = (await run(GIT_HELPER, ['get'], { env, stdin: get })).stdout.match(/^credential=(.*)$/m)![1]!;
    const expiry = (await run(GIT_HELPER, ['get'], { env, stdin: get })).stdout.match(/^password_expiry_utc=(.*)$/m)![1]!;
    const erase = await run(GIT_HELPER, ['erase'], {
      env,
      stdin:
        `capability[]=authtype\ncapability[]=state\nprotocol=http\nhost=127.0.0.1:${port}\nauthtype=Bearer\ncredential=${first}\n` +
        `ephemeral=1\npassword_expiry_utc=${expiry}\nwwwauth[]=Bearer error="invalid_token"\n\n`,
    });
    expect(erase).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(d.logs).toContain('token reported as rejected');
    const second = (await run(GIT_HELPER, ['get'], { env, stdin: get })).stdout.match(/^credential=(.*)$/m)![1]!;
    expect(second).not.toBe(first);
    expect((await idp.introspect(second)).active).toBe(true);
  });

  it('real git 2.39 sends no capability and gets username and password (Basic): clone works', async () => {
    const home = newHome();
    const env = gitEnv(home);
    await run('git', ['config', '--global', 'credential.helper', GIT_HELPER], { env });
    const version = await run('git', ['version'], { env });
    const clone = await run('git', ['clone', `${server.url}/app.git`, path.join(home, 'app')], { env });
    expect(clone.stderr).not.toMatch(/fatal/);
    expect(clone.code).toBe(0);
    // git before 2.46 cannot send a Bearer credential: it authenticated with Basic, user oauth2.
    if (/^git version 2\.(\d|[1-3]\d|4[0-5])\./.test(version.stdout)) expect(server.stats.lastUsername).toBe('oauth2');
  });

  it('tokend setup git makes a path-scoped account work with real git (useHttpPath for its URL), idempotently, with --json', async () => {
    const home = newHome();
    const env = gitEnv(home);
    const scopedUrl = `${server.url}/scoped.git`;
    // Only `scoped` may serve /scoped.git: `work` serves the other paths of this origin.
    await putConfAccount(d, idp.issuer, 'scoped', { hosts: [`127.0.0.1:${port}/scoped.git`] });
    await postConfGrant(d, idp, 'scoped');
    try {
      const scopedToken = (await d.cli(['token', 'scoped'])).stdout.trim();
      // Set by hand, without useHttpPath: git sends no path, so `work` (no path) answers, not `scoped`.
      await run('git', ['config', '--global', 'credential.helper', GIT_HELPER], { env });
      const fill = () => run('git', ['credential', 'fill'], { env, stdin: `url=${scopedUrl}\n\n` });
      expect((await fill()).stdout).not.toContain(`password=${scopedToken}\n`);

      const setup = await runCli(['setup', 'git', '--global', '--json'], { env });
      expect(setup.code, setup.stderr).toBe(0);
      const out = JSON.parse(setup.stdout);
      expect(out).toMatchObject({
        scope: 'global',
        helpers: [GIT_HELPER],
        use_http_path: [`https://127.0.0.1:${port}/scoped.git`, `http://127.0.0.1:${port}/scoped.git`],
        dry_run: false,
      });
      expect(out.commands).toEqual([
        `git config --global credential.https://127.0.0.1:${port}/scoped.git.useHttpPath true`,
        `git config --global credential.http://127.0.0.1:${port}/scoped.git.useHttpPath true`,
      ]);
      expect(setup.stderr).toContain('useHttpPath');
      expect((await run('git', ['config', '--global', '--type=bool', `credential.${scopedUrl}.useHttpPath`], { env })).stdout).toBe(
        'true\n',
      );

      // Now git sends the path, and the path-scoped account answers: a real clone with its token.
      expect((await fill()).stdout).toContain(`password=${scopedToken}\n`);
      const clone = await run('git', ['clone', scopedUrl, path.join(home, 'scoped')], { env });
      expect(clone.stderr).not.toMatch(/fatal/);
      expect(clone.code).toBe(0);
      // Other repositories of that origin are still `work`'s.
      expect((await run('git', ['ls-remote', `${server.url}/app.git`], { env })).code).toBe(0);

      const again = await runCli(['setup', 'git', '--global', '--json'], { env });
      expect(JSON.parse(again.stdout)).toMatchObject({ commands: [] });
      expect(again.stderr).toContain('already');
    } finally {
      await d.cli(['remove', 'scoped']);
    }
  });

  it('tokend doctor warns of a storage helper after tokend, which real git hands the token to; its fix stops that', async () => {
    const home = newHome();
    const env = gitEnv(home);
    const credFile = path.join(home, '.git-credentials');
    await run('git', ['config', '--global', '--add', 'credential.helper', GIT_HELPER], { env });
    await run('git', ['config', '--global', '--add', 'credential.helper', 'store'], { env });
    // git 2.39 sends `store` to every helper after a command that worked: the token lands in the file.
    expect((await run('git', ['ls-remote', `${server.url}/app.git`], { env })).code).toBe(0);
    const token = (await d.cli(['token', 'work'])).stdout.trim();
    expect(fs.readFileSync(credFile, 'utf8')).toContain(token);

    const doctor = await runCli(['doctor', '--json'], { env });
    const warn = JSON.parse(doctor.stdout).checks.find((c: { id: string }) => c.id === 'git:storage');
    expect(warn).toMatchObject({ status: 'warn', message: expect.stringContaining('git asks store after tokend') });
    expect(warn.message).toContain(`http://127.0.0.1:${port}`);
    expect(warn.message).not.toContain(token);

    // The fix, run as printed: for tokend's URLs, git asks tokend alone.
    for (const line of warn.fix.split('\n')) expect((await run('sh', ['-c', line], { env })).code).toBe(0);
    fs.rmSync(credFile);
    expect((await run('git', ['ls-remote', `${server.url}/app.git`], { env })).code).toBe(0);
    expect(fs.existsSync(credFile)).toBe(false);
    const after = JSON.parse((await runCli(['doctor', '--json'], { env })).stdout);
    expect(after.checks.find((c: { id: string }) => c.id === 'git:storage')).toBeUndefined();
    // Other hosts keep their storage helper.
    expect((await run('git', ['config', '--global', '--get-all', 'credential.helper'], { env })).stdout).toBe(`${GIT_HELPER}\nstore\n`);
  });

  it('docker store: a no-op for a registry an account serves; exit 1 with why on stdout for one it does not', async () => {
    const env = gitEnv(newHome());
    const secret = 'registry-password-never-echoed';
    const served = await run(DOCKER_HELPER, ['store'], {
      env,
      stdin: JSON.stringify({ ServerURL: 'registry.example.com', Username: 'u', Secret: secret }),
    });
    expect(served).toEqual({ code: 0, stdout: '', stderr: '' });
    const other = await run(DOCKER_HELPER, ['store'], {
      env,
      stdin: JSON.stringify({ ServerURL: 'https://index.docker.io/v1/', Username: 'u', Secret: secret }),
    });
    expect(other.code).toBe(1);
    expect(other.stdout).toMatch(
      /^tokend: no tokend account serves https:\/\/index\.docker\.io, and tokend keeps no registry passwords: this login is not saved/,
    );
    expect(other.stdout).not.toContain(secret);
    expect(d.logs).not.toContain(secret);
  });

  it('tokend doctor: docker with credsStore tokend (every registry) is a warning pointing to credHelpers; credHelpers is ok', async () => {
    const home = newHome();
    const env = { ...gitEnv(home), PATH: `${path.join(ROOT, 'bin')}${path.delimiter}${process.env.PATH}` };
    fs.mkdirSync(path.join(home, '.docker'));
    const write = (cfg: object) => fs.writeFileSync(path.join(home, '.docker', 'config.json'), JSON.stringify(cfg));
    const docker = async () =>
      JSON.parse((await runCli(['doctor', '--json'], { env })).stdout).checks.find((c: { id: string }) => c.id === 'docker');
    write({ credsStore: 'tokend' });
    expect(await docker()).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('credsStore'),
      fix: expect.stringContaining('credHelpers'),
    });
    write({ credHelpers: { 'registry.example.com': 'tokend' } });
    expect(await docker()).toMatchObject({ status: 'ok', message: 'docker uses tokend for registry.example.com (credHelpers)' });
  });
});
