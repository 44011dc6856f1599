/**
 * What `tokend add` / `tokend set` check before saving, and what a partial update keeps:
 * a wrong issuer, an unreachable one, a client-credentials account without its secret or
 * with a wrong one are refused with the fix named; `check=false` saves offline.
 */
import http from 'node:http';
import { beforeAll, describe, expect, it } from 'vitest';
import { addConfAccount, importConfGrant } from './support/daemon.js';
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
    await importConfGrant(d, idp, 'w');
    const r = await d.request('PATCH', '/v1/accounts/w', { hosts: ['git.example.test', 'api.example.test'], client_secret: 'conf-secret' });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ issuer: idp.issuer, client_id: 'conf', hosts: ['git.example.test', 'api.example.test'], has_client_secret: true, has_refresh_token: true });
    expect((await d.cli(['refresh', 'w'])).code).toBe(0);
    const moved = await d.request('PATCH', '/v1/accounts/w', { client_id: 'cli' });
    expect(moved.status).toBe(409);
    expect((await d.request('PATCH', '/v1/accounts/nobody', { hosts: [] })).status).toBe(404);
    expect((await d.request('PATCH', '/v1/accounts/w', { hosts: 'x' })).status).toBe(400);
  });
});
