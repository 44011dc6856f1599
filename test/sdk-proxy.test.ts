/**
 * The SDK's `fetch` through the real daemon's proxy to a real API that checks every token
 * at the real IdP: what an app sees, and that it never holds a token.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Tokend, TokendError } from '../src/sdk/index.js';
import { byteSource, startApi } from './support/api-server.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';

describe('fetch through the daemon, as an app', () => {
  const idp = useIdp({ accessTokenTtl: 120 });
  const api = useServer(() => startApi(idp), { what: 'the API' });
  const { d, t } = useDaemon({
    settings: { http_timeout_ms: 1500 },
    account: { idp, name: 'w', args: () => ['--api-base', api.base], grant: true },
  });
  let tokend: Tokend;
  beforeAll(() => {
    tokend = new Tokend({ env: t.env, userAgent: 'sdk-proxy-test' });
  });

  it("calls the API as the account: method, path, query, headers and body pass; the app's Authorization and Cookie do not", async () => {
    const res = await tokend.fetch('w', '/echo/items?q=a%20b', {
      method: 'POST',
      headers: { 'x-app': 'kept', authorization: 'Bearer the-app-has-none', cookie: 'session=app' },
      body: JSON.stringify({ hello: 1 }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-api')).toBe('yes');
    expect(res.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    const echo = await res.json();
    expect(echo).toMatchObject({ method: 'POST', path: '/api/echo/items', query: { q: 'a b' }, body: '{"hello":1}' });
    expect(echo.headers).toMatchObject({ 'x-app': 'kept', 'user-agent': 'sdk-proxy-test' });
    expect(echo.headers.cookie).toBeUndefined();
    const upstream = api.seen.at(-1)!;
    const served = (await d.request('POST', '/v1/token', { account: 'w' })).json.access_token;
    expect(upstream.headers.authorization).toBe(`Bearer ${served}`);
  });

  it('takes an absolute URL under api_base, and refuses one outside before sending it', async () => {
    const seen = api.seen.length;
    expect((await (await tokend.fetch('w', `${api.base}/echo/abs?x=1`)).json()).path).toBe('/api/echo/abs');
    await expect(tokend.fetch('w', 'https://elsewhere.example/api/echo')).rejects.toMatchObject({ code: 'invalid_request' });
    expect(api.seen.length).toBe(seen + 1);
  });

  it('streams 256 MiB down and 64 MiB up through the SDK', async () => {
    const size = 256 * 1024 * 1024;
    const res = await tokend.fetch('w', `/download?bytes=${size}`);
    let got = 0;
    for await (const chunk of res.body!) got += chunk.byteLength;
    expect(got).toBe(size);

    const up = await tokend.fetch('w', '/upload', { method: 'PUT', body: byteSource(64 * 1024 * 1024) });
    expect(await up.json()).toEqual({ bytes: 64 * 1024 * 1024 });
  });

  it('an upload refused before it is all sent: the app gets the reason, not EPIPE', async () => {
    const refused = await tokend
      .fetch('nobody', '/upload', { method: 'PUT', body: byteSource(256 * 1024 * 1024) })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TokendError);
    expect(refused).toMatchObject({ code: 'not_found', message: expect.stringContaining('no account named "nobody"') });
  });

  it("passes the API's server-sent events through as they arrive", async () => {
    const res = await tokend.fetch('w', '/events');
    const arrivals: number[] = [];
    const start = Date.now();
    for await (const chunk of res.body!) {
      for (const _ of new TextDecoder().decode(chunk).matchAll(/event: tick/g)) arrivals.push(Date.now() - start);
    }
    expect(arrivals).toHaveLength(3);
    expect(arrivals[2]! - arrivals[0]!).toBeGreaterThan(400);
  });

  it("a revoked token costs one refresh and the app sees only the API's answer", async () => {
    const before = (await d.request('POST', '/v1/token', { account: 'w' })).json.access_token;
    await (await idp.provider.AccessToken.find(before)).destroy();
    idp.resetStats();
    const res = await tokend.fetch('w', '/echo', { method: 'POST', body: '{"x":1}' });
    expect(res.status).toBe(200);
    expect(idp.stats.refreshes).toBe(1);
  });

  it("throws tokend's own refusals as TokendError, and hands back the API's errors as Responses", async () => {
    expect((await tokend.fetch('w', '/nothing-here')).status).toBe(404);
    await expect(tokend.fetch('nobody', '/x')).rejects.toMatchObject({ code: 'not_found', status: 404 });
    await d.request('PATCH', '/v1/accounts/w', { api_base: 'http://127.0.0.1:9/api' });
    try {
      const down = await tokend.fetch('w', '/echo').catch((e: unknown) => e);
      expect(down).toBeInstanceOf(TokendError);
      expect(down).toMatchObject({ code: 'upstream_failed', status: 502 });
    } finally {
      await d.request('PATCH', '/v1/accounts/w', { api_base: api.base });
    }
    await tokend.logout('w');
    await expect(tokend.fetch('w', '/echo')).rejects.toMatchObject({ code: 'reauth_required', status: 409 });
  });
});
