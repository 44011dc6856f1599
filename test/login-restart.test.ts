/**
 * Logins that outlive their daemon, against the real oidc-provider and real daemon
 * processes: a device login, a browser login on the loopback redirect and a deep-link login
 * started, the daemon stopped (SIGTERM) or killed (SIGKILL), started again, then approved:
 * each ends `active` with a working token. A callback handed over by URL finds its login by
 * state; a login's time (`ttl_s`) holds across a restart too.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokend } from '../src/sdk/index.js';
import { settled, sleep, startDaemon, startLogin } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import { TEST_APP_REDIRECT_URI } from './support/idp.js';

const idp = useIdp();
const { t } = useDaemon({ lifetime: 'test', launch: startDaemon, account: { idp } });

/** The account's token works at the IdP (RFC 7662). */
async function tokenWorks(account = 'work'): Promise<void> {
  const tok = await t.d.request('POST', '/v1/token', { account });
  expect(tok.status).toBe(200);
  expect((await idp.introspect(tok.json.access_token)).active).toBe(true);
}

async function restart(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  await t.d.stop(signal);
  await t.d.start();
}

async function addDeepLinkAccount(): Promise<void> {
  const put = await t.d.request('PUT', '/v1/accounts/desk', {
    issuer: idp.issuer,
    client_id: 'conf',
    client_secret: 'conf-secret',
    scopes: ['openid', 'offline_access', 'api'],
    redirect_uri: TEST_APP_REDIRECT_URI,
  });
  expect(put.status).toBe(201);
}

describe.each(['SIGTERM', 'SIGKILL'] as const)('a pending login across a daemon restart (%s)', (signal) => {
  it('a device login polls again with its stored device code and ends active once approved', async () => {
    const login = await startLogin(t.d, 'work', 'device');
    await restart(signal);
    const after = await t.d.request('GET', `/v1/logins/${login.id}`);
    expect(after.json).toMatchObject({ id: login.id, status: 'pending', user_code: login.user_code, expires_at: login.expires_at });
    expect(after.json.qr).toEqual(expect.any(String));
    await idp.approveDevice(login.user_code);
    expect(await settled(t.d, login.id)).toMatchObject({ status: 'active', error: null });
    await tokenWorks();
  });

  it('a browser login listens again on its loopback port and ends active once the browser comes back', async () => {
    const login = await startLogin(t.d, 'work', 'browser');
    await restart(signal);
    expect((await t.d.request('GET', `/v1/logins/${login.id}`)).json).toMatchObject({
      status: 'pending',
      authorization_url: login.authorization_url,
    });
    const back = await idp.authorize(login.authorization_url);
    expect(back.origin).toBe(new URL(new URL(login.authorization_url).searchParams.get('redirect_uri')!).origin);
    expect((await fetch(back)).status).toBe(200);
    expect((await settled(t.d, login.id)).status).toBe('active');
    await tokenWorks();
  });

  it('a deep-link login waits for its callback, which the app hands over by URL alone', async () => {
    await addDeepLinkAccount();
    const login = (await t.d.request('POST', '/v1/accounts/desk/login', { flow: 'browser', task: 'deep' })).json;
    await restart(signal);
    const callback = await idp.authorize(login.authorization_url);
    expect(callback.protocol).toBe('com.example.tokend:');
    const done = await t.d.request('POST', '/v1/logins/callback', { url: callback.href });
    expect(done.status).toBe(200);
    expect(done.json).toMatchObject({ id: login.id, status: 'active', task: 'deep', authorization_url: null });
    await tokenWorks('desk');
  });
});

describe('a callback handed over by URL (POST /v1/logins/callback)', () => {
  it('completes a loopback login whose redirect the app caught itself; the listener is closed after', async () => {
    const login = await startLogin(t.d, 'work', 'browser');
    const back = await idp.authorize(login.authorization_url);
    const done = await t.d.cli(['login', '--callback', back.href, '--json']);
    expect(done.code).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ id: login.id, status: 'active' });
    expect(done.stderr).toContain('Signed in to "work"');
    await tokenWorks();
    // The same callback again: the login is over (409), not unknown.
    const again = await t.d.request('POST', '/v1/logins/callback', { url: back.href });
    expect(again.status).toBe(409);
    expect(again.json.error.message).toContain('active');
    await expect(fetch(back)).rejects.toThrow(); // nothing listens on the port any more
  });

  it('answers 404 login_not_found for a state no login has, and 400 for a tampered redirect URI; the login stays pending', async () => {
    await addDeepLinkAccount();
    const login = (await t.d.request('POST', '/v1/accounts/desk/login', { flow: 'browser' })).json;
    const callback = await idp.authorize(login.authorization_url);

    const forged = new URL(callback.href);
    forged.searchParams.set('state', 'not-a-state-of-ours');
    const unknown = await t.d.request('POST', '/v1/logins/callback', { url: forged.href });
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe('login_not_found');
    const noState = await t.d.request('POST', '/v1/logins/callback', { url: `${TEST_APP_REDIRECT_URI}?code=x` });
    expect(noState.status).toBe(400);
    expect(noState.json.error.message).toContain('state');

    const elsewhere = await t.d.request('POST', '/v1/logins/callback', { url: callback.href.replace('/oauth2redirect', '/other') });
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.json.error.message).toContain('redirect_uri');
    const otherScheme = await t.d.request('POST', '/v1/logins/callback', {
      url: callback.href.replace('com.example.tokend:', 'com.evil.app:'),
    });
    expect(otherScheme.status).toBe(400);
    expect((await t.d.request('GET', `/v1/logins/${login.id}`)).json.status).toBe('pending');

    // The SDK's call, by URL alone, finishes it.
    const tokend = new Tokend({ env: t.env });
    expect(await tokend.completeLogin(callback.href)).toMatchObject({ id: login.id, status: 'active' });
    await tokenWorks('desk');
  });

  it('keeps no state in clear in the database', async () => {
    const login = await startLogin(t.d, 'work', 'browser');
    const state = new URL(login.authorization_url).searchParams.get('state')!;
    const dir = path.join(t.home, 'data');
    for (const f of fs.readdirSync(dir).filter((n) => n.startsWith('tokend.db'))) {
      expect(fs.readFileSync(path.join(dir, f)).includes(state), f).toBe(false);
    }
  });
});

describe('how long a login waits', () => {
  it('ttl_s sets the expiry; more than the maximum is a 400 naming it; another flow while one is pending is a 409', async () => {
    const tooLong = await t.d.request('POST', '/v1/accounts/work/login', { flow: 'browser', ttl_s: 8 * 86400 });
    expect(tooLong.status).toBe(400);
    expect(tooLong.json.error.message).toContain(String(7 * 86400));
    const login = await startLogin(t.d, 'work', 'browser', ['--ttl', '2d']);
    expect(Date.parse(login.expires_at) - Date.parse(login.created_at)).toBe(2 * 86400_000);

    const other = await t.d.request('POST', '/v1/accounts/work/login', { flow: 'device' });
    expect(other.status).toBe(409);
    expect(other.json.error).toMatchObject({ code: 'login_pending', login: { id: login.id, flow: 'browser' } });
    expect(other.json.error.message).toContain(`browser login pending (${login.id})`);
    const same = await t.d.request('POST', '/v1/accounts/work/login', { flow: 'browser' });
    expect(same.json.id).toBe(login.id);
    // `tokend login work` without --flow joins it, whatever this terminal would pick.
    const joined = await t.d.cli(['login', 'work', '--no-wait', '--json']);
    expect(joined.code).toBe(0);
    expect(JSON.parse(joined.stdout).id).toBe(login.id);
  });

  it('the account default applies, and a login whose time passed while the daemon was down is expired right after start', async () => {
    const set = await t.d.cli(['set', 'work', '--login-ttl', '2s']);
    expect(set.code, set.stderr).toBe(0);
    expect((await t.d.cli(['set', 'work', '--login-ttl', 'soon'])).code).toBe(2);
    const login = await startLogin(t.d, 'work', 'browser');
    expect(Date.parse(login.expires_at) - Date.parse(login.created_at)).toBe(2000);
    await t.d.stop('SIGKILL');
    await sleep(Math.max(0, Date.parse(login.expires_at) - Date.now()) + 100);
    await t.d.start();
    expect((await t.d.request('GET', `/v1/logins/${login.id}`)).json).toMatchObject({
      status: 'expired',
      error: { code: 'expired' },
      authorization_url: null,
    });
  });
});
