import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { startIdp, CLIENTS, TEST_RESOURCE, type TestIdp } from './support/idp.js';
import { createOAuth2Driver, parseRetryAfter, toDriverError } from '../src/daemon/drivers/oauth2.js';
import { getDriver } from '../src/daemon/drivers/registry.js';
import { DriverError, type DriverContext } from '../src/daemon/drivers/driver.js';
import { AccountConfig, type AccountConfigInput } from '../src/protocol/api.js';
import { rejectionOf } from './support/rejection.js';

let idp: TestIdp;
/** Every token and secret the tests handle: no error message may contain any of them. */
const secrets = new Set<string>(Object.values(CLIENTS).flatMap((c) => (c.secret ? [c.secret] : [])));

beforeAll(async () => {
  idp = await startIdp();
});
afterAll(async () => {
  await idp?.close();
});
beforeEach(() => {
  idp.setFault(null);
  idp.resetStats();
});

function ctx(config: Partial<AccountConfigInput>, clientSecret?: string, signal: AbortSignal = AbortSignal.timeout(10_000)): DriverContext {
  return { name: 'work', config: AccountConfig.parse({ client_id: 'conf', ...config }), clientSecret, secret: () => undefined, signal };
}

/** The account config of a client registered at the test IdP, with its secret. */
function client(id: keyof typeof CLIENTS, extra: Partial<AccountConfigInput> = {}): DriverContext {
  return ctx({ issuer: idp.issuer, client_id: id, ...extra }, CLIENTS[id].secret);
}

async function issue(clientId: keyof typeof CLIENTS = 'conf', scope?: string) {
  const t = await idp.issueRefreshToken(clientId, scope);
  secrets.add(t.refresh_token).add(t.access_token);
  return t;
}

function remember<T extends { access_token: string; refresh_token?: string; id_token?: string }>(set: T): T {
  for (const v of [set.access_token, set.refresh_token, set.id_token]) if (v) secrets.add(v);
  return set;
}

/** Runs `p`, expects a DriverError, and checks that it carries no secret anywhere. */
async function failure(p: Promise<unknown>): Promise<DriverError> {
  const d = await rejectionOf(p, DriverError);
  const text = `${d.message} ${String(d.stack)} ${JSON.stringify(d)} ${String((d as { cause?: unknown }).cause ?? '')}`;
  for (const s of secrets) expect(text).not.toContain(s);
  return d;
}

/** A fetch that records the URLs it was asked for and can answer some itself. */
function recordingFetch(answer?: (url: string) => Response | Error | undefined) {
  const urls: string[] = [];
  const requests: { url: string; headers: Record<string, string>; body: string }[] = [];
  const f = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    urls.push(url);
    requests.push({ url, headers: (init?.headers ?? {}) as Record<string, string>, body: String(init?.body ?? '') });
    const a = answer?.(url);
    if (a instanceof Error) throw a;
    if (a) return a;
    return fetch(input, init);
  }) as typeof fetch;
  return { fetch: f, urls, requests };
}

describe('oauth2 driver against a real IdP', () => {
  it('discovers the issuer and refreshes with rotation; the old refresh token then fails with invalid_grant', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    const set = remember(await driver.refresh(client('conf'), t.refresh_token, {}));
    expect(set.access_token).toBeTruthy();
    expect(set.access_token).not.toBe(t.access_token);
    expect(set.token_type).toBe('Bearer');
    expect(set.expires_in).toBe(60);
    expect(set.scope).toBe('openid offline_access api');
    expect(set.id_token).toBeTruthy();
    expect(set.refresh_token).toBeTruthy();
    expect(set.refresh_token).not.toBe(t.refresh_token);
    expect(idp.stats.refreshes).toBe(1);

    const err = await failure(driver.refresh(client('conf'), t.refresh_token, {}));
    expect(err.kind).toBe('invalid_grant');
    expect(err.oauthError).toBe('invalid_grant');
    expect(err.status).toBe(400);
    expect(err.outcomeUnknown).toBe(false);
    expect(idp.stats.replays).toBe(1);
    // RFC 9700 §4.14.2 as oidc-provider does it: the replay revoked the whole grant.
    expect((await failure(driver.refresh(client('conf'), set.refresh_token!, {}))).kind).toBe('invalid_grant');
  });

  it('authenticates with client_secret_post when the account says so, else with client_secret_basic', async () => {
    const rec = recordingFetch();
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    const t = await issue('conf-post');
    const set = remember(
      await driver.refresh(client('conf-post', { token_endpoint_auth_method: 'client_secret_post' }), t.refresh_token, {}),
    );
    expect(set.refresh_token).not.toBe(t.refresh_token);
    const post = rec.requests.at(-1)!;
    expect(post.headers.authorization).toBeUndefined();
    expect(new URLSearchParams(post.body).get('client_secret')).toBe(CLIENTS['conf-post'].secret);

    // No method configured + a secret: Basic (RFC 6749 §2.3.1). oidc-provider accepts either
    // secret method whatever the client registered, so this one succeeds too.
    remember(await driver.refresh(client('conf-post'), set.refresh_token!, {}));
    const basic = rec.requests.at(-1)!;
    expect(basic.headers.authorization).toMatch(/^Basic /);
    expect(new URLSearchParams(basic.body).get('client_secret')).toBeNull();
  });

  it('refreshes for a public client (none) with client_id in the body', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('cli');
    const set = remember(await driver.refresh(client('cli'), t.refresh_token, {}));
    expect(set.refresh_token).not.toBe(t.refresh_token);
    expect((await idp.introspect(set.access_token)).client_id).toBe('cli');
  });

  it('works from explicit endpoints without an issuer, and never asks for discovery', async () => {
    const rec = recordingFetch();
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    const t = await issue('conf');
    const c = ctx({ token_endpoint: `${idp.issuer}/token`, revocation_endpoint: `${idp.issuer}/token/revocation` }, CLIENTS.conf.secret);
    const set = remember(await driver.refresh(c, t.refresh_token, {}));
    expect(set.refresh_token).not.toBe(t.refresh_token);
    await driver.revoke(c, set.refresh_token!, 'refresh_token');
    expect(rec.urls).toEqual([`${idp.issuer}/token`, `${idp.issuer}/token/revocation`]);
    expect(await idp.introspect(set.refresh_token!)).toMatchObject({ active: false });
  });

  it('accepts an id_token whose issuer differs from the token endpoint origin when no issuer is configured', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    // Same server under another name: the id_token says iss=http://127.0.0.1:PORT.
    const c = ctx({ token_endpoint: `http://localhost:${idp.port}/token` }, CLIENTS.conf.secret);
    const set = remember(await driver.refresh(c, t.refresh_token, {}));
    expect(set.id_token).toBeTruthy();
  });

  it('explicit endpoints override discovered ones', async () => {
    const rec = recordingFetch();
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    const t = await issue('conf');
    const c = client('conf', { token_endpoint: `http://localhost:${idp.port}/token` });
    remember(await driver.refresh(c, t.refresh_token, {}));
    expect(rec.urls).toEqual([`${idp.issuer}/.well-known/openid-configuration`, `http://localhost:${idp.port}/token`]);
  });

  it('narrows the scope on refresh (RFC 6749 §6)', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    const set = remember(await driver.refresh(client('conf'), t.refresh_token, { scope: 'openid' }));
    expect(set.scope).toBe('openid');
    expect((await idp.introspect(set.access_token)).scope).toBe('openid');
    // A scope outside the grant is a configuration error, not a dead grant.
    const err = await failure(driver.refresh(client('conf'), set.refresh_token!, { scope: 'openid email' }));
    expect(err.kind).toBe('config');
    expect(err.oauthError).toBe('invalid_scope');
  });

  it('sends the audience as an RFC 8707 resource and gets a token for it', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    const set = remember(await driver.refresh(client('conf'), t.refresh_token, { audience: TEST_RESOURCE }));
    expect(set.access_token).not.toBe(t.access_token);
    const info = await idp.introspect(set.access_token);
    expect(info).toMatchObject({ active: true, aud: TEST_RESOURCE, scope: 'api' });

    // The account's own audience applies when the request names none.
    const set2 = remember(await driver.refresh(client('conf', { audience: TEST_RESOURCE }), set.refresh_token!, {}));
    expect((await idp.introspect(set2.access_token)).aud).toBe(TEST_RESOURCE);

    const err = await failure(driver.refresh(client('conf'), set2.refresh_token!, { audience: 'https://unknown.example.test' }));
    expect(err.kind).toBe('config');
    expect(err.oauthError).toBe('invalid_target');
  });

  it('obtains a token with client_credentials (RFC 6749 §4.4)', async () => {
    const driver = createOAuth2Driver();
    const set = remember(await driver.recover(client('svc', { scopes: ['api'] }), {}));
    expect(set.refresh_token).toBeUndefined();
    expect(set.scope).toBe('api');
    expect(set.token_type).toBe('Bearer');
    expect(await idp.introspect(set.access_token)).toMatchObject({ active: true, client_id: 'svc' });

    const bound = remember(await driver.recover(client('svc'), { scope: 'api', audience: TEST_RESOURCE }));
    expect((await idp.introspect(bound.access_token)).aud).toBe(TEST_RESOURCE);
    expect(idp.stats.grants.client_credentials).toBe(2);
  });

  it('reports a bad client secret as a config error without the secret', async () => {
    const driver = createOAuth2Driver();
    const wrong = 'wrong-secret-1234';
    secrets.add(wrong);
    const t = await issue('conf');
    for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
      const c = ctx({ issuer: idp.issuer, token_endpoint_auth_method: method }, wrong);
      const err = await failure(driver.refresh(c, t.refresh_token, {}));
      expect(err.kind).toBe('config');
      expect(err.oauthError).toBe('invalid_client');
      expect(err.status).toBe(401);
      expect(err.message).toContain('invalid_client');
    }
    const cc = await failure(driver.recover(ctx({ issuer: idp.issuer, client_id: 'svc' }, wrong), {}));
    expect(cc.kind).toBe('config');
    // The refresh token was never spent.
    remember(await driver.refresh(client('conf'), t.refresh_token, {}));
  });

  it('refuses a secret-based method without a secret before any request', async () => {
    const rec = recordingFetch();
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    const c = ctx({ token_endpoint: `${idp.issuer}/token`, token_endpoint_auth_method: 'client_secret_basic' });
    const err = await failure(driver.refresh(c, 'some-refresh-token', {}));
    expect(err.kind).toBe('config');
    expect(rec.urls).toEqual([]);
  });

  it('revokes a refresh token (RFC 7009), after which refresh fails with invalid_grant', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    await driver.revoke(client('conf'), t.refresh_token, 'refresh_token');
    const err = await failure(driver.refresh(client('conf'), t.refresh_token, {}));
    expect(err.kind).toBe('invalid_grant');
    // Revoking garbage is fine too (RFC 7009 §2.2).
    await driver.revoke(client('conf'), 'not-a-token', 'access_token');
  });

  it('does nothing on revoke when there is no revocation endpoint', async () => {
    const rec = recordingFetch();
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    await driver.revoke(ctx({ token_endpoint: `${idp.issuer}/token` }, CLIENTS.conf.secret), 'x-token', 'access_token');
    expect(rec.urls).toEqual([]);
  });

  it('caches discovery per issuer and per driver instance', async () => {
    const rec = recordingFetch();
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    const t = await issue('conf');
    const a = remember(await driver.refresh(client('conf'), t.refresh_token, {}));
    remember(await driver.refresh(client('conf'), a.refresh_token!, {}));
    expect(rec.urls.filter((u) => u.includes('/.well-known/')).length).toBe(1);
    const other = recordingFetch();
    await createOAuth2Driver({ fetch: other.fetch }).metadata(client('conf'));
    expect(other.urls.filter((u) => u.includes('/.well-known/')).length).toBe(1);
  });

  it('does not cache a failed discovery', async () => {
    let fail = true;
    const rec = recordingFetch((url) => (fail && url.includes('/.well-known/') ? new TypeError('fetch failed') : undefined));
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    const err = await failure(driver.metadata(client('conf')));
    expect(err.kind).toBe('transient');
    fail = false;
    const as = await driver.metadata(client('conf'));
    expect(as.token_endpoint).toBe(`${idp.issuer}/token`);
  });

  it('falls back to RFC 8414 metadata when OIDC discovery is missing', async () => {
    const rec = recordingFetch((url) =>
      url.endsWith('/.well-known/openid-configuration') ? new Response('nope', { status: 404 }) : undefined,
    );
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    const as = await driver.metadata(client('conf'));
    expect(as.issuer).toBe(idp.issuer);
    expect(rec.urls).toEqual([`${idp.issuer}/.well-known/openid-configuration`, `${idp.issuer}/.well-known/oauth-authorization-server`]);
  });

  it('refuses metadata that names another issuer (RFC 8414 §3.3)', async () => {
    const driver = createOAuth2Driver();
    const err = await failure(driver.metadata(ctx({ issuer: `http://localhost:${idp.port}` })));
    expect(err.kind).toBe('config');
    expect(err.message).toContain('different issuer');
  });
});

describe('oauth2 driver failures', () => {
  it('turns a 500 into a transient error with the status', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    idp.setFault({ kind: '500' });
    const err = await failure(driver.refresh(client('conf'), t.refresh_token, {}));
    expect(err).toMatchObject({ kind: 'transient', status: 500, outcomeUnknown: false });
    expect(err.retryAfterMs).toBeUndefined();
    expect(idp.stats).toMatchObject({ tokenRequests: 1, faulted: 1, refreshes: 0 });
    // The fault answered before the provider saw the request: the refresh token is still good.
    idp.setFault(null);
    remember(await driver.refresh(client('conf'), t.refresh_token, {}));
  });

  it('honours Retry-After on 429, in seconds and as an HTTP-date', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    idp.setFault({ kind: '429', retryAfter: '7' });
    const err = await failure(driver.refresh(client('conf'), t.refresh_token, {}));
    expect(err).toMatchObject({ kind: 'transient', status: 429, retryAfterMs: 7000 });

    idp.setFault({ kind: '429', retryAfter: new Date(Date.now() + 30_000).toUTCString() });
    const dated = await failure(driver.refresh(client('conf'), t.refresh_token, {}));
    expect(dated.retryAfterMs).toBeGreaterThan(27_000);
    expect(dated.retryAfterMs).toBeLessThanOrEqual(30_000);

    idp.setFault({ kind: '429' });
    expect((await failure(driver.refresh(client('conf'), t.refresh_token, {}))).retryAfterMs).toBeUndefined();
    expect(idp.lastTokenRequestAt).toHaveLength(3);
  });

  it('treats a 200 with a garbage body as transient', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    idp.setFault({ kind: 'garbage' });
    const err = await failure(driver.refresh(client('conf'), t.refresh_token, {}));
    expect(err.kind).toBe('transient');
    expect(err.message).toContain('answered 200 with a body that is not a valid token response');
  });

  it('treats a 200 JSON body without access_token as transient', async () => {
    const driver = createOAuth2Driver({
      fetch: (async () => Response.json({ token_type: 'Bearer' })) as unknown as typeof fetch,
    });
    const c = ctx({ token_endpoint: `${idp.issuer}/token` }, CLIENTS.conf.secret);
    expect((await failure(driver.refresh(c, 'rt-xyz-1', {}))).kind).toBe('transient');
  });

  it('gives up on a hanging server when the signal aborts, with the outcome unknown', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    idp.setFault({ kind: 'hang' });
    const started = Date.now();
    const err = await failure(
      driver.refresh(ctx({ issuer: idp.issuer }, CLIENTS.conf.secret, AbortSignal.timeout(300)), t.refresh_token, {}),
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(err).toMatchObject({ kind: 'transient', outcomeUnknown: true });
    expect(idp.stats.faulted).toBe(1);
  });

  it('marks a connection reset after sending as outcome unknown', async () => {
    const driver = createOAuth2Driver();
    const t = await issue('conf');
    idp.setFault({ kind: 'reset', times: 1 });
    const err = await failure(driver.refresh(client('conf'), t.refresh_token, {}));
    expect(err).toMatchObject({ kind: 'transient', outcomeUnknown: true });
    // times: 1 healed it.
    remember(await driver.refresh(client('conf'), t.refresh_token, {}));
  });

  it('marks a refused connection as transient but certainly not sent', async () => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r));
    const driver = createOAuth2Driver();
    const err = await failure(
      driver.refresh(ctx({ token_endpoint: `http://127.0.0.1:${port}/token` }, CLIENTS.conf.secret), 'rt-123456', {}),
    );
    expect(err).toMatchObject({ kind: 'transient', outcomeUnknown: false });
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('maps an injected invalid_grant to kind invalid_grant', async () => {
    const driver = createOAuth2Driver();
    idp.setFault({ kind: 'invalid_grant' });
    const err = await failure(driver.refresh(client('conf'), 'whatever-token', {}));
    expect(err).toMatchObject({ kind: 'invalid_grant', oauthError: 'invalid_grant', status: 400 });
    expect(err.message).toContain('test says no');
  });

  it('scrubs a token the server echoes in error_description', async () => {
    const rt = 'echoed-refresh-token-0123456789';
    secrets.add(rt);
    const driver = createOAuth2Driver({
      fetch: (async () =>
        Response.json(
          { error: 'invalid_grant', error_description: `refresh token ${rt} is unknown` },
          { status: 400 },
        )) as unknown as typeof fetch,
    });
    const err = await failure(driver.refresh(ctx({ token_endpoint: 'https://as.example.test/token' }, 'a-client-secret'), rt, {}));
    expect(err.kind).toBe('invalid_grant');
    expect(err.message).toContain('[redacted]');
  });

  it('refuses plain http to a non-loopback host before sending anything', async () => {
    const rec = recordingFetch();
    const driver = createOAuth2Driver({ fetch: rec.fetch });
    const byIssuer = await failure(driver.refresh(ctx({ issuer: 'http://idp.example.test/realm' }, 's3cret-value'), 'rt-abcdef', {}));
    expect(byIssuer.kind).toBe('config');
    expect(byIssuer.message).toBe('refusing plain http to a non-loopback host: http://idp.example.test');
    const byEndpoint = await failure(
      driver.refresh(ctx({ token_endpoint: 'http://10.0.0.1:8080/token' }, 's3cret-value'), 'rt-abcdef', {}),
    );
    expect(byEndpoint.message).toBe('refusing plain http to a non-loopback host: http://10.0.0.1:8080');
    expect(rec.urls).toEqual([]);
  });
});

describe('id_token checks on fabricated token responses', () => {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const idToken = (claims: object) => `${b64({ alg: 'RS256' })}.${b64(claims)}.c2ln`;
  const answering = (body: object) => createOAuth2Driver({ fetch: (async () => Response.json(body)) as unknown as typeof fetch });
  const c = () => ctx({ token_endpoint: 'https://as.example.test/token' }, 'client-secret-x');
  const now = () => Math.floor(Date.now() / 1000);

  it('survives a local clock two hours ahead of the server by measuring its skew from iat', async () => {
    const iat = now() - 7200;
    const driver = answering({
      access_token: 'at-1',
      token_type: 'bearer',
      expires_in: 3600,
      id_token: idToken({ iss: 'https://as.example.test', aud: 'conf', sub: 'u', iat, exp: iat + 3600 }),
    });
    const set = await driver.refresh(c(), 'rt-1', {});
    expect(set).toMatchObject({ access_token: 'at-1', token_type: 'Bearer', expires_in: 3600 });
  });

  it('still refuses an id_token issued to another client', async () => {
    const driver = answering({
      access_token: 'at-2',
      token_type: 'Bearer',
      id_token: idToken({ iss: 'https://as.example.test', aud: 'someone-else', sub: 'u', iat: now(), exp: now() + 3600 }),
    });
    const err = await failure(driver.refresh(c(), 'rt-2', {}));
    expect(err.kind).toBe('config');
    expect(err.message).toContain('id_token');
  });

  it('refuses a token_type it cannot use', async () => {
    const err = await failure(answering({ access_token: 'at-3', token_type: 'mac' }).refresh(c(), 'rt-3', {}));
    expect(err.kind).toBe('config');
  });
});

describe('toDriverError on fabricated responses', () => {
  const step = { endpoint: 'token' as const, url: 'https://as.example.test/token?x=secret-query' };
  const translate = (err: unknown, res?: Response) => {
    try {
      toDriverError(err, res, step);
    } catch (e) {
      return e as DriverError;
    }
    throw new Error('toDriverError returned');
  };

  it('reads Retry-After on a 503 and never shows the query string', () => {
    const res = new Response('<html>down</html>', { status: 503, headers: { 'retry-after': '120' } });
    const err = translate(undefined, res);
    expect(err).toMatchObject({ kind: 'transient', status: 503, retryAfterMs: 120_000 });
    expect(err.message).toBe('the token endpoint at https://as.example.test/token answered HTTP 503');
  });

  it('passes a DriverError through untouched', () => {
    const original = new DriverError('config', 'x');
    expect(translate(original)).toBe(original);
  });

  it('calls an AbortError transient with the outcome unknown', () => {
    expect(translate(new DOMException('aborted', 'AbortError'))).toMatchObject({ kind: 'transient', outcomeUnknown: true });
  });
});

describe('parseRetryAfter (RFC 9110 §10.2.3)', () => {
  const now = Date.UTC(2026, 0, 1, 0, 0, 0);
  it('reads delay-seconds', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
  });
  it('reads an HTTP-date in all three forms, relative to now', () => {
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Thursday, 01-Jan-26 00:01:00 GMT', now)).toBe(60_000);
    expect(parseRetryAfter('Thu Jan  1 00:00:05 2026', now)).toBe(5_000);
  });
  it('gives 0 for a date in the past and undefined for anything else', () => {
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('1.5', now)).toBeUndefined();
    expect(parseRetryAfter('-3', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
  });
});

describe('driver registry', () => {
  it('finds oauth2 by name and nothing else', () => {
    expect(getDriver('oauth2')?.name).toBe('oauth2');
    expect(getDriver('nope')).toBeUndefined();
  });
});

describe('test IdP fixture', () => {
  it("revokes any client's token at the IdP and counts refreshes and their errors from provider events", async () => {
    const driver = createOAuth2Driver();
    const t = await issue('cli');
    await idp.revokeAtIdp(t.refresh_token);
    expect(await idp.introspect(t.refresh_token)).toMatchObject({ active: false });
    await failure(driver.refresh(client('cli'), t.refresh_token, {}));
    expect(idp.stats.refreshErrors).toEqual([{ error: 'invalid_grant', detail: expect.any(String) }]);
    expect(idp.stats.tokenRequests).toBe(1);
    expect(idp.issuedRefreshTokens()).toContain(t.refresh_token);
    expect(idp.issuedAccessTokens()).toContain(t.access_token);
    idp.resetStats();
    expect(idp.stats).toMatchObject({ tokenRequests: 0, refreshes: 0, replays: 0, refreshErrors: [] });
  });
});

describe('test IdP fixture: logins', () => {
  it('plays the browser for an authorization code flow with PKCE (RFC 7636, RFC 8252 loopback)', async () => {
    const verifier = 'test-verifier-0123456789-0123456789-0123456789';
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const redirect = 'http://127.0.0.1:54321/callback';
    const url = new URL(`${idp.issuer}/auth`);
    url.search = new URLSearchParams({
      client_id: 'cli',
      response_type: 'code',
      redirect_uri: redirect,
      scope: 'openid offline_access',
      prompt: 'consent',
      state: 'st-1',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    }).toString();
    const back = await idp.authorize(url);
    expect(back.origin + back.pathname).toBe(redirect);
    expect(back.searchParams.get('state')).toBe('st-1');
    expect(back.searchParams.get('iss')).toBe(idp.issuer);
    const res = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        client_id: 'cli',
        code: back.searchParams.get('code')!,
        redirect_uri: redirect,
        code_verifier: verifier,
      }),
    });
    const body = (await res.json()) as { refresh_token?: string };
    expect(res.status).toBe(200);
    expect(body.refresh_token).toBeTruthy();
  });

  it('approves and denies device codes (RFC 8628 §3.3, §3.5)', async () => {
    const start = async () => {
      const res = await fetch(`${idp.issuer}/device/auth`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'client_id=cli&scope=openid%20offline_access',
      });
      return (await res.json()) as { device_code: string; user_code: string };
    };
    const poll = async (device_code: string) => {
      const res = await fetch(`${idp.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', client_id: 'cli', device_code }),
      });
      return (await res.json()) as { error?: string; refresh_token?: string };
    };
    const a = await start();
    expect((await poll(a.device_code)).error).toBe('authorization_pending');
    await idp.approveDevice(a.user_code);
    expect((await poll(a.device_code)).refresh_token).toBeTruthy();
    const b = await start();
    await idp.denyDevice(b.user_code.toLowerCase());
    expect((await poll(b.device_code)).error).toBe('access_denied');
    expect(idp.stats.tokenRequests).toBe(3);
  });
});
