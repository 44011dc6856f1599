/**
 * Every helper end to end: real git against a real git smart-HTTP server that accepts
 * only access tokens the real IdP calls active, plus docker, kubectl, Bazel, exec and
 * `setup git`, all through a real daemon.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, postConfGrant } from './support/daemon.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';
import { startGitServer } from './support/git-server.js';
import { run } from './support/run.js';

const GIT_HELPER = path.join(ROOT, 'bin', 'git-credential-tokend');
const DOCKER_HELPER = path.join(ROOT, 'bin', 'docker-credential-tokend');
const NATIVE_HELPER = path.join(ROOT, 'build', 'git-credential-tokend');
const FALLBACK_PASSWORD = 'fallback-password';

describe('credential helpers through a real daemon', () => {
  const idp = useIdp({ accessTokenTtl: 120 });
  const server = useServer(
    () =>
      startGitServer({ authorize: async (_user, password) => password === FALLBACK_PASSWORD || (await idp.introspect(password)).active }),
    { what: 'the git server' },
  );
  const { d, t: h } = useDaemon({ account: { idp, args: ['--host', '127.0.0.1'], grant: true } });
  let gitEnv: NodeJS.ProcessEnv;
  const git = (args: string[], cwd?: string) => run('git', args, { env: gitEnv, cwd: cwd ?? h.home });

  beforeAll(async () => {
    gitEnv = {
      PATH: process.env.PATH,
      HOME: h.home,
      TOKEND_HOME: h.home,
      TOKEND_NO_AUTOSTART: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 'T',
      GIT_AUTHOR_EMAIL: 't@example.test',
      GIT_COMMITTER_NAME: 'T',
      GIT_COMMITTER_EMAIL: 't@example.test',
      LANG: 'C',
    };
    // Our helper first; a fixed-password helper after it for hosts tokend does not serve.
    await git(['config', '--global', '--add', 'credential.helper', GIT_HELPER]);
    await git([
      'config',
      '--global',
      '--add',
      'credential.helper',
      `!f() { echo username=fallback; echo password=${FALLBACK_PASSWORD}; }; f`,
    ]);
  });

  it('clones and pushes with a token from tokend', async () => {
    await server.createRepo('app.git');
    const url = `${server.url}/app.git`;
    const clone = await git(['clone', url, 'app']);
    expect(clone.stderr).not.toMatch(/fatal/);
    expect(clone.code).toBe(0);
    expect(server.stats.lastUsername).toBe('oauth2');
    const work = path.join(h.home, 'app');
    fs.writeFileSync(path.join(work, 'new.txt'), 'hello\n');
    expect((await git(['add', 'new.txt'], work)).code).toBe(0);
    expect((await git(['commit', '-m', 'add'], work)).code).toBe(0);
    const push = await git(['push', 'origin', 'HEAD'], work);
    expect(push.stderr).not.toMatch(/fatal|rejected/);
    expect(push.code).toBe(0);
  });

  it('after the token is revoked at the IdP, git erase reaches the daemon and the next command gets a fresh token', async () => {
    await server.createRepo('rev.git');
    const url = `${server.url}/rev.git`;
    expect((await git(['clone', url, 'rev'])).code).toBe(0);
    const before = (await d.cli(['token', 'work'])).stdout.trim();
    // Revoke just this access token at the IdP (RFC 7009 revocation at oidc-provider
    // would revoke the whole grant, which is a different story: reauth_required).
    await (await idp.provider.AccessToken.find(before)).destroy();
    expect((await idp.introspect(before)).active).toBe(false);
    idp.resetStats();

    const failed = await git(['ls-remote', url]);
    expect(failed.code).not.toBe(0); // git 2.39 gives up on this command after erase
    expect(d.logs).toContain('token reported as rejected');

    const ok = await git(['ls-remote', url]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(idp.stats.refreshes).toBe(1);
    const after = (await d.cli(['token', 'work'])).stdout.trim();
    expect(after).not.toBe(before);
    expect((await idp.introspect(after)).active).toBe(true);
  });

  it('lets git fall through to the next helper for a host with no account', async () => {
    await server.createRepo('other.git');
    const url = `${server.url.replace('127.0.0.1', 'localhost')}/other.git`;
    const r = await git(['ls-remote', url]);
    expect(r.code).toBe(0);
    expect(server.stats.lastUsername).toBe('fallback');
  });

  it('answers git get with nothing and exit 0 when the daemon is unreachable', async () => {
    const r = await run(GIT_HELPER, ['get'], {
      env: { ...gitEnv, TOKEND_SOCKET: path.join(h.home, 'nowhere.sock') },
      stdin: 'protocol=https\nhost=127.0.0.1\n\n',
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/tokend/);
  });

  it('serves docker, kubectl and Bazel through their own protocols', async () => {
    const token = (await d.cli(['token', 'work'])).stdout.trim();

    const docker = await run(DOCKER_HELPER, ['get'], { env: gitEnv, stdin: 'https://127.0.0.1\n' });
    expect(docker.code).toBe(0);
    expect(JSON.parse(docker.stdout)).toMatchObject({ Secret: token });
    const miss = await run(DOCKER_HELPER, ['get'], { env: gitEnv, stdin: 'registry.example.com\n' });
    expect(miss.code).toBe(1);
    expect(miss.stdout.trim()).toBe('credentials not found in native keychain');

    const info = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', spec: { interactive: false } });
    const kube = await runCli(['kubectl-credential', 'work'], { env: { ...h.env, KUBERNETES_EXEC_INFO: info } });
    expect(kube.stderr).toBe('');
    expect(kube.code).toBe(0);
    const cred = JSON.parse(kube.stdout);
    expect(cred).toMatchObject({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token } });
    expect(cred.status.expirationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const bazel = await runCli(['bazel-credential', 'get'], { env: h.env, stdin: '{"uri":"https://127.0.0.1/some/artifact"}' });
    expect(bazel.code).toBe(0);
    const b = JSON.parse(bazel.stdout);
    expect(b.headers.Authorization).toEqual([`Bearer ${token}`]);
    expect(b.expires).toMatch(/:\d\dZ$/); // whole seconds: Bazel rejects milliseconds
  });

  it('tokend token --url picks the account by host', async () => {
    const byUrl = await d.cli(['token', '--url', `${server.url}/app.git`]);
    expect(byUrl.code).toBe(0);
    expect(byUrl.stdout.trim()).toBe((await d.cli(['token', 'work'])).stdout.trim());
    const none = await d.cli(['token', '--url', 'https://nothing.example.org/x']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no account serves');
  });

  it('tokend exec passes the token in the environment only, and the exit status through', async () => {
    const token = (await d.cli(['token', 'work'])).stdout.trim();
    const r = await d.cli([
      'exec',
      'work',
      '--env',
      'MY_TOKEN',
      '--',
      process.execPath,
      '-e',
      'process.stdout.write(process.env.MY_TOKEN); process.exit(7)',
    ]);
    expect(r.stdout).toBe(token);
    expect(r.code).toBe(7);
    const missing = await d.cli(['exec', 'work', '--', path.join(h.home, 'no-such-program')]);
    expect(missing.code).toBe(127);
  });

  it('tokend setup git puts tokend first and keeps the other helpers, idempotently', async () => {
    const home = fs.mkdtempSync(path.join(h.home, 'sg-'));
    const env = { ...h.env, HOME: home, GIT_CONFIG_NOSYSTEM: '1' };
    await run('git', ['config', '--global', 'credential.helper', 'cache'], { env });
    const first = await runCli(['setup', 'git', '--global'], { env });
    expect(first.code).toBe(0);
    const again = await runCli(['setup', 'git', '--global'], { env });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('already');
    const helpers = (await run('git', ['config', '--global', '--get-all', 'credential.helper'], { env })).stdout.trim().split('\n');
    expect(helpers).toEqual([GIT_HELPER, 'cache']);
  });

  it.runIf(fs.existsSync(NATIVE_HELPER))(
    'tokend setup git --native names build/git-credential-tokend, which real git clones through; plain setup goes back to the sh helper',
    async () => {
      const home = fs.mkdtempSync(path.join(h.home, 'sgn-'));
      const env = { ...gitEnv, HOME: home };
      await run('git', ['config', '--global', 'credential.helper', 'cache'], { env });
      const setup = await runCli(['setup', 'git', '--global', '--native', '--json'], { env });
      expect(setup.code, setup.stderr).toBe(0);
      expect(JSON.parse(setup.stdout).helpers).toEqual([NATIVE_HELPER, 'cache']);
      await server.createRepo('native.git');
      const clone = await run('git', ['clone', `${server.url}/native.git`, path.join(home, 'native')], { env });
      expect(clone.code, clone.stderr).toBe(0);
      expect(server.stats.lastUsername).toBe('oauth2');
      const back = await runCli(['setup', 'git', '--global'], { env });
      expect(back.code, back.stderr).toBe(0);
      expect((await run('git', ['config', '--global', '--get-all', 'credential.helper'], { env })).stdout.trim().split('\n')).toEqual([
        GIT_HELPER,
        'cache',
      ]);
    },
  );
});

describe('tokend token fast path', () => {
  const idp = useIdp();
  const { d, t: h } = useDaemon({ account: { idp } });

  it('gives the same answers as the node client: the token, exit 1 for an unknown account, exit 3 for a login', async () => {
    expect(fs.existsSync(path.join(ROOT, 'build', 'tokend-fast'))).toBe(true);
    const bin = path.join(ROOT, 'bin', 'tokend');
    // bin/tokend run as a program takes the sh fast path; `node bin/tokend` never does.
    const direct = (args: string[]) => run(bin, args, { env: h.env });
    const viaNode = (args: string[]) => d.cli(args);

    const noGrant = await direct(['token', 'work']);
    expect(noGrant.code).toBe(3);
    expect(noGrant.stderr).toContain('tokend login work');
    expect((await viaNode(['token', 'work'])).code).toBe(3);

    const unknown = await direct(['token', 'nobody']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no account named "nobody"');
    expect(unknown.stdout).toBe('');

    await postConfGrant(d, idp);
    const fast = await direct(['token', 'work']);
    expect(fast.code).toBe(0);
    const slow = await viaNode(['token', 'work']);
    expect(fast.stdout).toBe(slow.stdout);
    expect(fast.stdout).toMatch(/^\S+\n$/);

    // kubectl runs its plugin on every invocation: `tokend kubectl-credential NAME` is fast too.
    const info = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', spec: { interactive: false } });
    const kEnv = { ...h.env, KUBERNETES_EXEC_INFO: info };
    const kFast = await run(bin, ['kubectl-credential', 'work'], { env: kEnv });
    const kSlow = await runCli(['kubectl-credential', 'work'], { env: kEnv });
    expect([kFast.code, kFast.stderr]).toEqual([0, '']);
    expect(JSON.parse(kFast.stdout)).toEqual(JSON.parse(kSlow.stdout));
    expect(JSON.parse(kFast.stdout).status.token).toBe(fast.stdout.trim());
  });
});
