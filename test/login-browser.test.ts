/**
 * The browser login (RFC 6749 §4.1 + RFC 7636 PKCE S256 + RFC 8252 loopback redirect) end to
 * end against the real oidc-provider. The test plays the browser: `idp.authorize()` follows
 * the IdP's redirects with a cookie jar through its auto-approving interaction, and the
 * test then requests the loopback callback URL itself.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { settled, spawnCli, startDaemon, startLogin, tapEvents, waitFor } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import { CLIENTS } from './support/idp.js';

describe('browser login against a real OpenID Provider', () => {
  const idp = useIdp();
  const { t } = useDaemon({ lifetime: 'test', launch: startDaemon, account: { idp } });

  it('signs in through a one-shot loopback listener with PKCE S256 and state, answers the browser, then serves tokens', async () => {
    const tap = await tapEvents(t.d.socket);
    const login = await startLogin(t.d, 'work', 'browser');
    expect(login).toMatchObject({ account: 'work', flow: 'browser', status: 'pending', user_code: null, verification_uri: null });
    const auth = new URL(login.authorization_url);
    expect(`${auth.origin}${auth.pathname}`).toBe(`${idp.issuer}/auth`);
    const q = auth.searchParams;
    expect(Object.fromEntries(q)).toMatchObject({
      response_type: 'code',
      client_id: 'conf',
      scope: 'openid offline_access api',
      code_challenge_method: 'S256',
      prompt: 'consent', // or oidc-provider drops offline_access (OIDC Core §11)
    });
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('state')!.length).toBeGreaterThanOrEqual(32);
    const redirect = new URL(q.get('redirect_uri')!);
    expect(redirect.hostname).toBe('127.0.0.1'); // RFC 8252 §8.3: the IP literal, not localhost
    expect(redirect.pathname).toBe('/callback');
    expect(Number(redirect.port)).toBeGreaterThan(0);

    const callback = await idp.authorize(auth);
    expect(callback.origin).toBe(redirect.origin);
    expect(callback.searchParams.get('state')).toBe(q.get('state'));
    expect(callback.searchParams.get('iss')).toBe(idp.issuer); // RFC 9207, checked by the daemon

    const page = await fetch(callback);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(await page.text()).toContain('Signed in to work');
    expect(await settled(t.d, login.id)).toMatchObject({ status: 'active', error: null });

    const tok = await t.d.cli(['token', 'work']);
    expect(tok.code).toBe(0);
    expect((await idp.introspect(tok.stdout.trim())).active).toBe(true);
    expect((await t.d.cli(['refresh', 'work'])).code).toBe(0); // offline_access survived: a refresh token came

    // One-shot: the listener is gone.
    await expect(fetch(`${redirect.origin}/callback`)).rejects.toThrow();
    await waitFor(() => tap.events.some((e) => e.type === 'login.succeeded'), 'login.succeeded');
    tap.close();
    expect(tap.events.find((e) => e.type === 'login.pending')).toMatchObject({
      flow: 'browser',
      authorization_url: login.authorization_url,
    });
  });

  it('sends the PKCE verifier the IdP checks: a wrong verifier is refused, the daemon’s exchange succeeds', async () => {
    const login = await startLogin(t.d, 'work', 'browser');
    const auth = new URL(login.authorization_url);
    const callback = await idp.authorize(auth);
    // An attacker holding the code but not the verifier gets nothing (RFC 7636 §4.6).
    const stolen = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`conf:${CLIENTS.conf.secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: callback.searchParams.get('code')!,
        redirect_uri: auth.searchParams.get('redirect_uri')!,
        code_verifier: 'A'.repeat(43),
      }),
    });
    expect(stolen.status).toBe(400);
    expect(await stolen.json()).toMatchObject({ error: 'invalid_grant' });

    const page = await fetch(callback);
    expect(page.status).toBe(200);
    expect((await settled(t.d, login.id)).status).toBe('active');
  });

  it('refuses a callback with a wrong or missing state; the login stays pending and the right callback still works', async () => {
    const login = await startLogin(t.d, 'work', 'browser');
    const callback = await idp.authorize(login.authorization_url);

    const forged = new URL(callback);
    forged.searchParams.set('state', 'x'.repeat(43));
    const refused = await fetch(forged);
    expect(refused.status).toBe(400);
    expect(await refused.text()).toMatch(/does not match/);
    const noState = new URL(callback);
    noState.searchParams.delete('state');
    expect((await fetch(noState)).status).toBe(400);
    expect((await t.d.request('GET', `/v1/logins/${login.id}`)).json.status).toBe('pending');
    expect(t.d.logs).toContain('state does not match');

    expect((await fetch(new URL('/elsewhere', callback))).status).toBe(404);
    const ok = await fetch(callback);
    expect(ok.status).toBe(200);
    expect((await settled(t.d, login.id)).status).toBe('active');
  });

  it('fails with the provider’s error when the browser comes back with error=access_denied, and escapes it in the page', async () => {
    const tap = await tapEvents(t.d.socket);
    const login = await startLogin(t.d, 'work', 'browser');
    const auth = new URL(login.authorization_url);
    const back = new URL(auth.searchParams.get('redirect_uri')!);
    back.search = new URLSearchParams({
      error: 'access_denied',
      error_description: '<script>alert(1)</script> the user said no',
      state: auth.searchParams.get('state')!,
      iss: idp.issuer,
    }).toString();
    const page = await fetch(back);
    expect(page.status).toBe(400);
    const html = await page.text();
    expect(html).toContain('Could not sign in to work');
    expect(html).toContain('access_denied');
    expect(html).toContain('&lt;script&gt;');
    expect(html).not.toContain('<script>');
    expect(await settled(t.d, login.id)).toMatchObject({ status: 'failed', error: { code: 'access_denied' } });
    const failed = await waitFor(() => tap.events.find((e) => e.type === 'login.failed'), 'login.failed');
    tap.close();
    expect(failed).toMatchObject({ account: 'work', flow: 'browser', status: 'failed', error: 'access_denied' });
  });

  it('refuses a callback that names another issuer (RFC 9207 mix-up defence)', async () => {
    const login = await startLogin(t.d, 'work', 'browser');
    const callback = await idp.authorize(login.authorization_url);
    const mixed = new URL(callback);
    mixed.searchParams.set('iss', 'https://evil.example');
    const page = await fetch(mixed);
    expect(page.status).toBe(400);
    expect(await page.text()).toContain('iss');
    expect((await settled(t.d, login.id)).status).toBe('failed');
    expect((await t.d.request('POST', '/v1/token', { account: 'work' })).json.error.code).toBe('reauth_required');
  });

  it('joins a pending login: two concurrent `tokend login` get one authorization URL', async () => {
    const [a, b] = await Promise.all([startLogin(t.d, 'work', 'browser'), startLogin(t.d, 'work', 'browser')]);
    expect(b.id).toBe(a.id);
    expect(b.authorization_url).toBe(a.authorization_url);
    const pending = await t.d.request('POST', '/v1/token', { account: 'work' });
    expect(pending.status).toBe(409);
    expect(pending.json.error).toMatchObject({ code: 'login_pending', login: { id: a.id, authorization_url: a.authorization_url } });
    await fetch(await idp.authorize(a.authorization_url));
    expect((await settled(t.d, a.id)).status).toBe('active');
  });

  it('opens $BROWSER with the URL, waits, and exits 0 once the browser comes back', async () => {
    const urlFile = path.join(t.home, 'browser-url.txt');
    const script = path.join(t.home, 'fake-browser.sh');
    fs.writeFileSync(script, `#!/bin/sh\nprintf '%s' "$1" > '${urlFile}'\n`, { mode: 0o755 });
    const cli = spawnCli(['login', 'work', '--flow', 'browser'], { ...t.env, BROWSER: script });
    const url = await waitFor(() => (fs.existsSync(urlFile) ? fs.readFileSync(urlFile, 'utf8') : undefined), 'the browser to be opened');
    expect(url).toMatch(new RegExp(`^${idp.issuer}/auth\\?`));
    expect(cli.stderr()).toContain('Opening a browser');
    await fetch(await idp.authorize(url));
    const r = await cli.done;
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('Signed in to "work"');
    expect((await t.d.cli(['token', 'work'])).code).toBe(0);
  });

  it('--no-browser only prints the URL', async () => {
    const urlFile = path.join(t.home, 'browser-url.txt');
    const script = path.join(t.home, 'fake-browser.sh');
    fs.writeFileSync(script, `#!/bin/sh\nprintf '%s' "$1" > '${urlFile}'\n`, { mode: 0o755 });
    const r = await t.d.cli(['login', 'work', '--flow', 'browser', '--no-browser', '--no-wait']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    const login = (await t.d.request('POST', '/v1/accounts/work/login', {})).json; // joins it
    expect(r.stderr).toContain(login.authorization_url);
    expect(fs.existsSync(urlFile)).toBe(false);
  });

  it('works for a public client (PKCE, no secret)', async () => {
    const add = await t.d.cli([
      'add',
      'pub',
      '--issuer',
      idp.issuer,
      '--client-id',
      'cli',
      '--scope',
      'openid offline_access api',
      '--flow',
      'browser',
    ]);
    expect(add.code).toBe(0);
    // No --flow: the account's flow wins over the CLI's default (device, without a display here).
    const r = await t.d.cli(['login', 'pub', '--no-wait', '--json']);
    expect(r.code).toBe(0);
    const login = JSON.parse(r.stdout);
    expect(login.flow).toBe('browser');
    expect((await fetch(await idp.authorize(login.authorization_url))).status).toBe(200);
    expect((await settled(t.d, login.id)).status).toBe('active');
    expect((await t.d.cli(['token', 'pub'])).code).toBe(0);
  });
});
