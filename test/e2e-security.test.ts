import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DaemonProcess, putConfAccount, postConfGrant } from './support/daemon.js';
import { useDaemon, useIdp } from './support/fixtures.js';

function mode(p: string): string {
  return (fs.statSync(p).mode & 0o777).toString(8);
}

function allFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

describe('security', () => {
  const idp = useIdp({ accessTokenTtl: 60 });
  const { d, t: home } = useDaemon({ lifetime: 'test' });

  it('makes every folder 0700 and every file 0600, the socket included', async () => {
    await putConfAccount(d, idp.issuer);
    await postConfGrant(d, idp);
    for (const dir of ['config', 'data', 'run']) expect(mode(path.join(home.home, dir))).toBe('700');
    const files = allFiles(home.home);
    expect(files.map((f) => path.relative(home.home, f)).sort()).toEqual(
      expect.arrayContaining(['config/config.json', 'config/key', 'data/tokend.db', 'data/tokend.db-wal', 'data/tokend.db-shm']),
    );
    for (const f of files) expect([f, mode(f)]).toEqual([f, '600']);
    expect(fs.statSync(d.socket).isSocket()).toBe(true);
    expect(mode(d.socket)).toBe('600');
  });

  it('keeps tokens and secrets out of the database, config and logs', async () => {
    await putConfAccount(d, idp.issuer);
    const issued = await postConfGrant(d, idp);
    const served = new Set<string>();
    for (let i = 0; i < 3; i++) {
      served.add((await d.cli(['token', 'work'])).stdout.trim());
      expect((await d.cli(['refresh', 'work'])).code).toBe(0);
    }
    served.add((await d.cli(['token', 'work'])).stdout.trim());
    await d.stop('SIGTERM');
    const secrets = [issued.refresh_token, issued.access_token, 'conf-secret', ...served, ...idp.issuedRefreshTokens()];
    expect(secrets.length).toBeGreaterThan(6);
    const haystacks = [...allFiles(home.home).map((f) => [f, fs.readFileSync(f).toString('latin1')]), ['daemon log', d.logs]];
    for (const [name, text] of haystacks) {
      for (const s of secrets) expect({ name, leaked: text.includes(s) }).toEqual({ name, leaked: false });
    }
    expect(d.logs).toContain('token refreshed'); // the log is not empty: it does talk about refreshes
  });

  it('refuses a second daemon, naming the first; takes over a stale lock after SIGKILL', async () => {
    const second = new DaemonProcess(home.home, home.env);
    await expect(second.start()).rejects.toThrow(/exited with 1/);
    expect(second.logs).toContain(`pid ${d.child!.pid}`);
    expect(second.logs).toContain(d.socket);
    await d.stop('SIGKILL');
    const third = new DaemonProcess(home.home, home.env);
    await third.start();
    expect((await third.request('GET', '/v1/health')).json.pid).toBe(third.child!.pid);
    await third.stop('SIGTERM');
  });

  it('refuses to start when a file is readable by others, and says how to fix it', async () => {
    await d.stop('SIGTERM');
    const cfg = path.join(home.home, 'config', 'config.json');
    fs.chmodSync(cfg, 0o644);
    const again = new DaemonProcess(home.home, home.env);
    await expect(again.start()).rejects.toThrow(/exited with 1/);
    expect(again.logs).toContain(cfg);
    expect(again.logs).toContain('chmod 600');
  });

  it('shuts down cleanly on SIGTERM: exit 0, socket removed', async () => {
    expect(await d.stop('SIGTERM')).toBe(0);
    expect(fs.existsSync(d.socket)).toBe(false);
    expect(d.logs).toContain('tokend stopped');
  });
});

describe('bad input', () => {
  const { d } = useDaemon();

  const cases: Array<[string, string, string, string | Buffer | object | undefined, number, string]> = [
    ['malformed JSON', 'POST', '/v1/token', '{"account": ', 400, 'invalid_request'],
    ['wrong types', 'POST', '/v1/token', { account: 'x', min_ttl: 'soon' }, 400, 'invalid_request'],
    ['unknown fields', 'POST', '/v1/token', { account: 'x', evil: true }, 400, 'invalid_request'],
    ['no account, url or host', 'POST', '/v1/token', {}, 400, 'invalid_request'],
    ['a 1 MiB body', 'POST', '/v1/token', Buffer.alloc(1024 * 1024, 'a'), 413, 'payload_too_large'],
    ['an unknown account', 'POST', '/v1/token', { account: 'nobody' }, 404, 'not_found'],
    ['an unknown account by path', 'GET', '/v1/accounts/nobody', undefined, 404, 'not_found'],
    ['a name with ..', 'PUT', '/v1/accounts/..%2Fx', { client_id: 'a', issuer: 'https://x.example' }, 400, 'invalid_request'],
    [
      'a name of 300 chars',
      'PUT',
      `/v1/accounts/${'a'.repeat(300)}`,
      { client_id: 'a', issuer: 'https://x.example' },
      400,
      'invalid_request',
    ],
    ['an empty name', 'PUT', '/v1/accounts/', { client_id: 'a' }, 404, 'not_found'],
    ['an invalid name in a token request', 'POST', '/v1/token', { account: '../x' }, 400, 'invalid_request'],
    ['an account without endpoints', 'PUT', '/v1/accounts/x', { client_id: 'a' }, 400, 'invalid_request'],
    [
      'plain http to a remote issuer',
      'PUT',
      '/v1/accounts/x',
      { client_id: 'a', issuer: 'http://idp.example.com' },
      400,
      'invalid_request',
    ],
    ['an unknown route', 'GET', '/v1/nope', undefined, 404, 'not_found'],
  ];
  for (const [what, method, url, body, status, code] of cases) {
    it(`answers ${what} with ${status} ${code}, and stays healthy`, async () => {
      const r = await d.request(method, url, body);
      expect(r.status).toBe(status);
      expect(r.json?.error?.code).toBe(code);
      expect(typeof r.json.error.message).toBe('string');
      expect(r.json.error.message).not.toMatch(/ZodError|at .*\.js:\d+/);
      expect((await d.request('GET', '/v1/health')).status).toBe(200);
    });
  }

  it('names the offending field', async () => {
    const r = await d.request('POST', '/v1/token', { account: 'x', min_ttl: 'soon' });
    expect(r.json.error.message).toContain('min_ttl');
  });

  it('CLI: bad usage exits 2, an unknown account exits 1, errors on stderr only', async () => {
    const usage = await d.cli(['token']);
    expect(usage.code).toBe(2);
    expect(usage.stdout).toBe('');
    const unknown = await d.cli(['token', 'nobody']);
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toContain('nobody');
    const bad = await d.cli(['token', '../x']);
    expect(bad.code).toBe(2);
    const help = await d.cli(['token', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: tokend token');
  });
});
