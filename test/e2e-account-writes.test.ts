/**
 * What `tokend add` / `tokend set` check before saving, and what a partial update keeps:
 * a wrong issuer, an unreachable one, a client-credentials account without its secret or
 * with a wrong one are refused with the fix named; `check=false` saves offline.
 */
import http from 'node:http';
import { beforeAll, describe, expect, it } from 'vitest';
import { Tokend } from '../src/sdk/index.js';
import { addConfAccount, postConfGrant } from './support/daemon.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';
import { listenOnLoopback } from './support/loopback.js';

const idp = useIdp();
/** An issuer URL whose discovery answers 404: a typo in the realm. */
const notFound = useServer(() => listenOnLoopback(http.createServer((_req, res) => res.writeHead(404).end('not here'))));
let notFoundUrl: string;
beforeAll(() => {
  notFoundUrl = `${notFound.url}/realms/typo`;
});
// Each test starts its daemon.
const { d, start: daemon } = useDaemon({ lifetime: 'manual' });

describe('account writes', () => {
  it('refuses an issuer whose discovery answers 404, naming the fix; saves it with check=false', async () => {
    await daemon();
    const body = { issuer: notFoundUrl, client_id: 'cli' };
    const r = await d.request('PUT', '/v1/accounts/typo', body);
    expect(r.status).toBe(400);
    expect(r.json.error.message).toContain('was not saved');
    expect(r.json.error.message).toContain('404');
    expect(r.json.error.message).toContain('--issuer');
    expect(r.json.error.message).toContain('--no-check');
    expect((await d.request('GET', '/v1/accounts/typo')).status).toBe(404);
    expect((await d.request('PUT', '/v1/accounts/typo?check=false', body)).status).toBe(201);
  });

  it('refuses an unreachable issuer as unavailable, not as a bad config', async () => {
    await daemon();
    const r = await d.request('PUT', '/v1/accounts/gone', { issuer: 'http://127.0.0.1:9', client_id: 'cli' });
    expect(r.status).toBe(503);
    expect(r.json.error.message).toContain('--no-check');
  });

  it('refuses a client-credentials account without a secret, and one with a wrong secret', async () => {
    await daemon();
    const base = { issuer: idp.issuer, client_id: 'svc', flow: 'client-credentials', scopes: ['api'] };
    const none = await d.request('PUT', '/v1/accounts/ci', base);
    expect(none.status).toBe(400);
    expect(none.json.error.message).toContain('--client-secret-stdin');
    const wrong = await d.request('PUT', '/v1/accounts/ci', { ...base, client_secret: 'nope' });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error.message).toContain('invalid_client');
    expect(wrong.json.error.message).not.toContain('nope');
    const right = await d.request('PUT', '/v1/accounts/ci', { ...base, client_secret: 'svc-secret' });
    expect(right.status).toBe(201);
    expect(right.json.status).toBe('active');
    // The check's token is kept: the first `tokend token` costs no second call.
    const calls = idp.stats.grants.client_credentials ?? 0;
    expect((await d.cli(['token', 'ci'])).code).toBe(0);
    expect(idp.stats.grants.client_credentials ?? 0).toBe(calls);
  });

  it('PATCH changes only the given fields and keeps the grant and the secret', async () => {
    await daemon();
    await addConfAccount(d, idp.issuer, 'w', ['--host', 'git.example.test']);
    await postConfGrant(d, idp, 'w');
    const r = await d.request('PATCH', '/v1/accounts/w', { hosts: ['git.example.test', 'api.example.test'], client_secret: 'conf-secret' });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      issuer: idp.issuer,
      client_id: 'conf',
      hosts: ['git.example.test', 'api.example.test'],
      has_client_secret: true,
      has_refresh_token: true,
    });
    expect((await d.cli(['refresh', 'w'])).code).toBe(0);
    const moved = await d.request('PATCH', '/v1/accounts/w', { client_id: 'cli' });
    expect(moved.status).toBe(409);
    expect((await d.request('PATCH', '/v1/accounts/nobody', { hosts: [] })).status).toBe(404);
    expect((await d.request('PATCH', '/v1/accounts/w', { hosts: 'x' })).status).toBe(400);
  });
});

describe('write-time checks of URLs', () => {
  it('refuses an api_base with a query, a fragment or a user and password, never echoing the password', async () => {
    await daemon();
    const base = { issuer: idp.issuer, client_id: 'conf' };
    for (const apiBase of [
      'https://api.example.test/v1?key=abc',
      'https://api.example.test/v1#top',
      'https://me:hunter2@api.example.test/v1',
    ]) {
      const r = await d.request('PUT', '/v1/accounts/q?check=false', { ...base, api_base: apiBase });
      expect(r.status).toBe(400);
      expect(r.json.error.message).toContain('api_base');
      expect(r.json.error.message).not.toContain('hunter2');
    }
    const cli = await d.cli([
      'add',
      'q',
      '--issuer',
      idp.issuer,
      '--client-id',
      'conf',
      '--api-base',
      'https://api.example.test/v1?key=abc',
      '--no-check',
    ]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain('api_base');
    expect((await d.request('GET', '/v1/accounts/q')).status).toBe(404);
    const userinfo = await d.request('PUT', '/v1/accounts/q?check=false', {
      ...base,
      token_endpoint: 'https://me:hunter2@idp.example.test/token',
    });
    expect(userinfo.status).toBe(400);
    expect(userinfo.json.error.message).not.toContain('hunter2');
  });

  it('connects a loopback name (localhost.) to 127.0.0.1 without asking DNS; refuses plain http to a name under .localhost', async () => {
    await daemon();
    // `localhost.` is no name the system resolver here knows: only the pinned way reaches the IdP.
    const port = new URL(idp.issuer).port;
    const add = await d.cli(
      [
        'add',
        'lo',
        '--token-endpoint',
        `http://localhost.:${port}/token`,
        '--client-id',
        'conf',
        '--client-secret-stdin',
        '--api-base',
        `http://localhost.:${new URL(notFound.url).port}/api`,
        '--scope',
        'openid offline_access api',
      ],
      'conf-secret\n',
    );
    expect(add.code).toBe(0);
    const issued = await idp.issueRefreshToken('conf');
    const imp = await d.cli(['import', 'lo', '--refresh-token-stdin'], issued.refresh_token);
    expect(imp.code, imp.stderr).toBe(0);
    expect((await d.cli(['token', 'lo'])).code).toBe(0);
    // The API proxy too: the upstream's own 404 comes back, not a failure to reach it.
    const api = await d.request('GET', '/v1/proxy/lo/anything');
    expect(api.status).toBe(404);
    expect(api.text).toBe('not here');
    expect(api.headers['x-tokend-error']).toBeUndefined();

    const sub = await d.request('PUT', '/v1/accounts/sub?check=false', {
      token_endpoint: `http://idp.localhost:${port}/token`,
      client_id: 'conf',
    });
    expect(sub.status).toBe(400);
    expect(sub.json.error.message).toContain('plain http');
  });
});

describe('clearing a field', () => {
  it("PATCH with null, `tokend set --api-base ''` and the SDK's updateAccount clear an optional field", async () => {
    const t = await daemon();
    await addConfAccount(d, idp.issuer, 'w', ['--api-base', 'https://api.example.test/v1', '--audience', 'https://api.example.test']);
    const before = (await d.request('GET', '/v1/accounts/w')).json;
    expect(before).toMatchObject({ api_base: 'https://api.example.test/v1', audience: 'https://api.example.test' });

    const cli = await d.cli(['set', 'w', '--api-base', '', '--json']);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout).api_base).toBeUndefined();

    const patched = await d.request('PATCH', '/v1/accounts/w', { audience: null });
    expect(patched.status).toBe(200);
    expect(patched.json.audience).toBeUndefined();
    expect(patched.json).toMatchObject({ has_client_secret: true, client_id: 'conf', issuer: idp.issuer });

    const sdk = new Tokend({ env: t.env, userAgent: 'account-writes-test' });
    await sdk.updateAccount('w', { api_base: 'https://api2.example.test' });
    const view = await sdk.updateAccount('w', { api_base: null });
    expect(view.api_base).toBeUndefined();
    // A field with a default goes back to it; a required one cannot be cleared away.
    expect((await d.request('PATCH', '/v1/accounts/w', { scopes: null })).json.scopes).toEqual([]);
    expect((await d.request('PATCH', '/v1/accounts/w', { client_id: null })).status).toBe(400);
  });
});
