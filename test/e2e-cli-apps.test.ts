/**
 * The CLI of the daemon's newer features, against the real daemon and IdP: cancelling a
 * login, a denied login in `status`, `set` changing one thing, a move refused then done
 * with --replace-grant, --no-check, and `tokend api` through the proxy.
 */
import { describe, expect, it } from 'vitest';
import { putConfAccount, postConfGrant } from './support/daemon.js';
import { startApi } from './support/api-server.js';
import { settled, startDaemon } from './support/fake-as.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';

const idp = useIdp();
const api = useServer(() => startApi(idp), { what: 'the API' });
const { t } = useDaemon({ lifetime: 'test', launch: startDaemon });

describe('CLI of logins', () => {
  it('login --cancel stops a real pending login; approving it later changes nothing; status says cancelled', async () => {
    await putConfAccount(t.d, idp.issuer, 'w');
    const started = await t.d.cli(['login', 'w', '--flow', 'device', '--no-wait', '--json']);
    const login = JSON.parse(started.stdout);
    const cancel = await t.d.cli(['login', 'w', '--cancel']);
    expect(cancel.code, cancel.stderr).toBe(0);
    await idp.approveDevice(login.user_code);
    const after = await settled(t.d, login.id);
    expect(after).toMatchObject({ status: 'failed', error: { code: 'cancelled' } });
    const status = await t.d.cli(['status', 'w']);
    expect(status.code).toBe(3);
    expect(status.stdout).toMatch(/cancelled/);
  });

  it('status shows a denied device login with its reason, and exits 3', async () => {
    await putConfAccount(t.d, idp.issuer, 'w');
    const login = JSON.parse((await t.d.cli(['login', 'w', '--flow', 'device', '--no-wait', '--json'])).stdout);
    await idp.denyDevice(login.user_code);
    await settled(t.d, login.id);
    const status = await t.d.cli(['status', 'w']);
    expect(status.code).toBe(3);
    expect(status.stdout).toMatch(/access_denied/);
  });
});

describe('CLI of account changes', () => {
  it('set --client-secret-stdin changes only the secret; the grant stays', async () => {
    await putConfAccount(t.d, idp.issuer, 'w', { hosts: ['git.example.test'] });
    await postConfGrant(t.d, idp, 'w');
    const set = await t.d.cli(['set', 'w', '--client-secret-stdin'], 'conf-secret\n');
    expect(set.code, set.stderr).toBe(0);
    const view = JSON.parse((await t.d.cli(['status', 'w', '--json'])).stdout);
    expect(view).toMatchObject({ hosts: ['git.example.test'], has_refresh_token: true, has_client_secret: true, status: 'active' });
    expect((await t.d.cli(['refresh', 'w'])).code).toBe(0);
  });

  it('a change of client is refused (exit 1) until --replace-grant, which revokes the grant at the IdP', async () => {
    await putConfAccount(t.d, idp.issuer, 'w');
    await postConfGrant(t.d, idp, 'w');
    const rt = idp.issuedRefreshTokens().at(-1)!;
    const refused = await t.d.cli(['set', 'w', '--client-id', 'conf-post']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('--replace-grant');
    expect((await idp.introspect(rt)).active).toBe(true);
    const moved = await t.d.cli(['set', 'w', '--client-id', 'conf-post', '--replace-grant']);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stderr).toMatch(/revoked there and dropped/);
    expect((await idp.introspect(rt)).active).toBe(false);
    expect((await t.d.cli(['status', 'w'])).code).toBe(3);
  });

  it('add --no-check saves an account whose issuer cannot be reached; without it the add fails', async () => {
    const args = ['add', 'off', '--issuer', 'http://127.0.0.1:9', '--client-id', 'cli'];
    const checked = await t.d.cli(args);
    expect(checked.code).toBe(1);
    expect(checked.stderr).toContain('--no-check');
    expect((await t.d.cli([...args, '--no-check'])).code).toBe(0);
  });
});

describe('tokend api', () => {
  it('calls the account API through the proxy: body on stdout, exit 0; a 404 exits 1 with the status; no token in argv or output', async () => {
    await putConfAccount(t.d, idp.issuer, 'w', { api_base: api.base });
    await postConfGrant(t.d, idp, 'w');
    const get = await t.d.cli(['api', 'w', '/echo/me?x=1', '--json']);
    expect(get.code, get.stderr).toBe(0);
    expect(JSON.parse(get.stdout)).toMatchObject({ method: 'GET', path: '/api/echo/me', query: { x: '1' } });
    const post = await t.d.cli(['api', 'w', '/echo', '-d', '{"a":1}', '-H', 'Content-Type: application/json']);
    expect(JSON.parse(post.stdout)).toMatchObject({ method: 'POST', body: '{"a":1}' });
    const put = await t.d.cli(['api', 'w', '/echo', '-X', 'PUT', '-d', '@-'], 'from stdin');
    expect(JSON.parse(put.stdout)).toMatchObject({ method: 'PUT', body: 'from stdin' });
    const missing = await t.d.cli(['api', 'w', '/nope']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('HTTP 404');
    const none = await t.d.cli(['api', 'ghost', '/x']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no account named "ghost"');
    for (const tok of idp.issuedAccessTokens()) expect(get.stdout + get.stderr + post.stdout).not.toContain(tok);
  });

  it('exits 3 when the account needs a login', async () => {
    await putConfAccount(t.d, idp.issuer, 'w', { api_base: api.base });
    const r = await t.d.cli(['api', 'w', '/echo']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('tokend login w');
  });
});
