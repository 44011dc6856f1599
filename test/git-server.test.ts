/**
 * The git smart-HTTP fixture itself, driven by the real `git` binary: a good password
 * clones and pushes, a bad one gets 401 and git gives up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startGitServer, type GitServer } from './support/git-server.js';
import { run, type Run } from './support/run.js';

let home: string;
let server: GitServer;
const seen: Array<{ username: string; password: string }> = [];

/** Real git, isolated: no system/global config, no prompts, HOME in a temp dir. */
function git(args: string[], cwd?: string): Promise<Run> {
  return run('git', args, {
    cwd: cwd ?? home,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      XDG_CONFIG_HOME: path.join(home, '.config'),
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 'Test',
      GIT_AUTHOR_EMAIL: 'test@example.test',
      GIT_COMMITTER_NAME: 'Test',
      GIT_COMMITTER_EMAIL: 'test@example.test',
      LANG: 'C',
    },
  });
}

/** `-c credential.helper=` resets the list (gitcredentials(7)), then a helper that prints fixed credentials. */
function withPassword(password: string): string[] {
  return ['-c', 'credential.helper=', '-c', `credential.helper=!f() { echo username=x; echo password=${password}; }; f`];
}

beforeAll(async () => {
  home = await mkdtemp(path.join(tmpdir(), 'tokend-git-test-'));
  server = await startGitServer({
    authorize: async (username, password) => {
      seen.push({ username, password });
      return password === 'good';
    },
  });
});

afterAll(async () => {
  await server?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

describe('git smart-HTTP test server', () => {
  it('clones with a good password from a credential helper', async () => {
    await server.createRepo('clone-ok');
    const r = await git([...withPassword('good'), 'clone', '--quiet', `${server.url}/clone-ok.git`, 'clone-ok']);
    expect(r.code, r.stderr).toBe(0);
    const log = await git(['log', '--format=%s'], path.join(home, 'clone-ok'));
    expect(log.stdout.trim()).toBe('initial');
    expect(server.stats.lastUsername).toBe('x');
    expect(seen.some((s) => s.username === 'x' && s.password === 'good')).toBe(true);
  });

  it('answers 401 to a bad password, and git fails without prompting', async () => {
    await server.createRepo('clone-bad');
    const before = server.stats.unauthorized;
    const r = await git([...withPassword('bad'), 'clone', '--quiet', `${server.url}/clone-bad.git`, 'clone-bad']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Authentication failed|401/);
    // The first request carries no credentials (401), the retry the bad ones (401 again).
    expect(server.stats.unauthorized - before).toBeGreaterThanOrEqual(2);
  });

  it('answers 401 with a Basic challenge when no credentials are sent', async () => {
    await server.createRepo('probe');
    const res = await fetch(`${server.url}/probe.git/info/refs?service=git-upload-pack`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Basic realm="test"');
  });

  it('accepts a push with a good password', async () => {
    await server.createRepo('push-ok');
    const dir = path.join(home, 'push-ok');
    expect((await git([...withPassword('good'), 'clone', '--quiet', `${server.url}/push-ok.git`, dir])).code).toBe(0);
    await writeFile(path.join(dir, 'new.txt'), 'pushed\n');
    expect((await git(['add', 'new.txt'], dir)).code).toBe(0);
    expect((await git(['commit', '--quiet', '-m', 'second'], dir)).code).toBe(0);
    const push = await git([...withPassword('good'), 'push', '--quiet', 'origin', 'main'], dir);
    expect(push.code, push.stderr).toBe(0);
    // What the server now has on main is the pushed commit.
    const remote = await git([...withPassword('good'), 'ls-remote', `${server.url}/push-ok.git`, 'refs/heads/main']);
    const local = await git(['rev-parse', 'HEAD'], dir);
    expect(remote.stdout.split('\t')[0]).toBe(local.stdout.trim());
  });

  it('pushes into an empty repository', async () => {
    await server.createRepo('push-empty', { empty: true });
    const dir = path.join(home, 'push-empty');
    expect((await git(['init', '--quiet', '--initial-branch=main', dir])).code).toBe(0);
    await writeFile(path.join(dir, 'a.txt'), 'a\n');
    expect((await git(['add', 'a.txt'], dir)).code).toBe(0);
    expect((await git(['commit', '--quiet', '-m', 'first'], dir)).code).toBe(0);
    const push = await git([...withPassword('good'), 'push', '--quiet', `${server.url}/push-empty.git`, 'main'], dir);
    expect(push.code, push.stderr).toBe(0);
  });

  it('refuses a push with a bad password', async () => {
    await server.createRepo('push-bad');
    const dir = path.join(home, 'push-bad');
    expect((await git([...withPassword('good'), 'clone', '--quiet', `${server.url}/push-bad.git`, dir])).code).toBe(0);
    await writeFile(path.join(dir, 'x.txt'), 'x\n');
    await git(['add', 'x.txt'], dir);
    await git(['commit', '--quiet', '-m', 'nope'], dir);
    const push = await git([...withPassword('bad'), 'push', '--quiet', 'origin', 'main'], dir);
    expect(push.code).not.toBe(0);
  });
});
