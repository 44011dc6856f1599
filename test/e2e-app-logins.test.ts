/**
 * Logins an app drives (an offline-token vault keyed by task, a desktop app with a deep
 * link), against the real oidc-provider: a task label on a login and the list filtered by
 * it; a private-use-scheme redirect (RFC 8252 §7.1) whose callback the app hands to the
 * daemon, state checked, code exchanged with the daemon's own PKCE verifier and secret;
 * `on_reauth: "login"` starting the login by itself when a grant is refused.
 */
import { describe, expect, it } from 'vitest';
import { putConfAccount, postConfGrant } from './support/daemon.js';
import { startDaemon, tapEvents, waitFor } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import { TEST_APP_REDIRECT_URI } from './support/idp.js';

const idp = useIdp();
const { t } = useDaemon({ lifetime: 'test', launch: startDaemon });

const account = (extra: Record<string, unknown> = {}) => ({
  issuer: idp.issuer,
  client_id: 'conf',
  client_secret: 'conf-secret',
  scopes: ['openid', 'offline_access', 'api'],
  ...extra,
});

describe('logins an app drives', () => {
  it('labels a login with the app’s task and lists logins by task, account and status', async () => {
    expect((await t.d.request('PUT', '/v1/accounts/vault', account({ flow: 'device' }))).status).toBe(201);
    const started = await t.d.request('POST', '/v1/accounts/vault/login', { task: 'task-42' });
    expect(started.status).toBe(202);
    expect(started.json).toMatchObject({ task: 'task-42', status: 'pending', flow: 'device' });
    const byTask = await t.d.request('GET', '/v1/logins?task=task-42');
    expect(byTask.json.logins.map((l: { id: string }) => l.id)).toEqual([started.json.id]);
    expect((await t.d.request('GET', '/v1/logins?task=other')).json.logins).toEqual([]);
    await idp.approveDevice(started.json.user_code);
    const done = await waitFor(
      async () => (await t.d.request('GET', `/v1/logins?task=task-42&status=active`)).json.logins[0],
      'the login to succeed',
    );
    expect(done).toMatchObject({ id: started.json.id, account: 'vault', task: 'task-42' });
    expect((await t.d.request('GET', '/v1/logins?status=bogus')).status).toBe(400);
    expect((await t.d.cli(['token', 'vault'])).code).toBe(0);
  });

  it('finishes a deep-link login from the callback URL the app hands over, checking state', async () => {
    expect((await t.d.request('PUT', '/v1/accounts/desk', account({ redirect_uri: TEST_APP_REDIRECT_URI }))).status).toBe(201);
    const login = (await t.d.request('POST', '/v1/accounts/desk/login', { flow: 'browser' })).json;
    const auth = new URL(login.authorization_url);
    expect(auth.searchParams.get('redirect_uri')).toBe(TEST_APP_REDIRECT_URI);
    // The OS hands the app this URL; the test captures it without following it.
    const callback = await idp.authorize(auth);
    expect(callback.protocol).toBe('com.example.tokend:');

    const forged = new URL(callback.href);
    forged.searchParams.set('state', 'not-ours');
    const refused = await t.d.request('POST', `/v1/logins/${login.id}/callback`, { url: forged.href });
    expect(refused.status).toBe(400);
    expect(refused.json.error.message).toContain('state');
    const elsewhere = await t.d.request('POST', `/v1/logins/${login.id}/callback`, {
      url: callback.href.replace('/oauth2redirect', '/other'),
    });
    expect(elsewhere.status).toBe(400);
    expect((await t.d.request('GET', `/v1/logins/${login.id}`)).json.status).toBe('pending');

    const ok = await t.d.request('POST', `/v1/logins/${login.id}/callback`, { url: callback.href });
    expect(ok.status).toBe(200);
    expect(ok.json.status).toBe('active');
    const tok = await t.d.request('POST', '/v1/token', { account: 'desk' });
    expect((await idp.introspect(tok.json.access_token)).active).toBe(true);
    // Handing the same callback again changes nothing.
    expect((await t.d.request('POST', `/v1/logins/${login.id}/callback`, { url: callback.href })).status).toBe(409);
  });

  it('with on_reauth "login", starts the login itself when the grant is refused', async () => {
    await putConfAccount(t.d, idp.issuer, 'app');
    expect((await t.d.request('PATCH', '/v1/accounts/app', { flow: 'device', on_reauth: 'login' })).status).toBe(200);
    await postConfGrant(t.d, idp, 'app');
    const tap = await tapEvents(t.d.socket);
    idp.setFault({ kind: 'invalid_grant', times: 1 });
    expect((await t.d.cli(['refresh', 'app'])).code).toBe(3);
    const pending = await waitFor(() => tap.events.find((e) => e.type === 'login.pending'), 'login.pending');
    tap.close();
    expect(pending).toMatchObject({ account: 'app', flow: 'device' });
    expect(typeof pending.user_code).toBe('string');
    const view = (await t.d.request('GET', '/v1/accounts/app')).json;
    expect(view.status).toBe('login_pending');
    expect(view.login.user_code).toBe(pending.user_code);
  });
});
