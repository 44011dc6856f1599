/**
 * The Real-Debrid, Cal.com and AMP drivers fed fabricated responses: what each answer means
 * (pending, slow_down, transient, invalid_grant, config), that no secret a step sent comes
 * back in a message, and what is sent. The end-to-end tests (e2e-real-debrid, e2e-cal-com,
 * e2e-amp) drive the same drivers through the daemon.
 */
import { describe, expect, it } from 'vitest';
import { AccountConfig, type AccountConfigInput } from '../src/protocol/api.js';
import { createAmpDriver } from '../src/daemon/drivers/amp.js';
import { createCalComDriver } from '../src/daemon/drivers/cal-com.js';
import { DriverError, type DriverContext } from '../src/daemon/drivers/driver.js';
import { jwtLifetime } from '../src/daemon/drivers/jwt-lifetime.js';
import { RD_SECRETS, createRealDebridDriver } from '../src/daemon/drivers/real-debrid.js';
import { getDriver } from '../src/daemon/drivers/registry.js';
import { rejectionOf } from './support/rejection.js';

const BASE = 'https://provider.example';

/** A fetch that answers from a list, and records what was asked. */
function scripted(...answers: Array<() => Response>) {
  const calls: Array<{ url: string; init: RequestInit }> = [];
  const fetch = (async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    const next = answers.shift();
    if (!next) throw new Error(`unexpected request to ${url}`);
    return next();
  }) as unknown as typeof globalThis.fetch;
  return { fetch, calls };
}

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}) =>
  () =>
    new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
const text = (status: number, body: string) => () => new Response(body, { status });

function ctx(config: Partial<AccountConfigInput>, secrets: Record<string, string> = {}, extra: Partial<DriverContext> = {}): DriverContext {
  return {
    name: 'acct',
    config: AccountConfig.parse({ base_url: BASE, ...config }),
    clientSecret: secrets.client_secret,
    secret: (n) => secrets[n],
    signal: AbortSignal.timeout(5_000),
    ...extra,
  };
}

const failure = (p: Promise<unknown>) => rejectionOf(p, DriverError);

describe('the registry', () => {
  it('has the three provider drivers besides oauth2', () => {
    for (const name of ['oauth2', 'real-debrid', 'cal-com', 'amp']) expect(getDriver(name)?.name).toBe(name);
  });
});

describe('real-debrid driver', () => {
  const rdCtx = (secrets: Record<string, string> = {}) =>
    ctx({ driver: 'real-debrid', client_id: 'X245A4XAIBGVM', flow: 'device' }, secrets);
  const creds = json(200, { client_id: 'USERCLIENT', client_secret: 'user-client-secret' });

  it.each([
    ['a 403 with an empty body', json(403, {}), 'pending'],
    ['a 403 in the documented error shape', json(403, { error: 'permission_denied', error_code: 9 }), 'pending'],
    ['a 400 in the documented error shape', json(400, { error: 'bad_token', error_code: 8 }), 'pending'],
    ['slow down (error_code 5)', json(400, { error: 'slow_down', error_code: 5 }), 'slow_down'],
  ])('reads %s while polling as %s', async (_what, answer, status) => {
    const { fetch } = scripted(answer);
    expect(await createRealDebridDriver({ fetch }).pollDeviceLogin!(rdCtx(), 'device-code-secret')).toEqual({ status });
  });

  it.each([
    ['429 with Retry-After', json(429, { error: 'too_many_requests', error_code: 34 }, { 'retry-after': '9' }), 'transient', 9000],
    [
      'too many requests as a 400 (error_code 34)',
      json(400, { error: 'too_many_requests', error_code: 34 }, { 'retry-after': '3' }),
      'transient',
      3000,
    ],
    ['a 503', text(503, 'maintenance'), 'transient', undefined],
    ['a 404', json(404, { error: 'unknown_ressource', error_code: 7 }), 'config', undefined],
    ['a missing parameter (error_code 1)', json(400, { error: 'missing_parameter', error_code: 1 }), 'config', undefined],
    ['a 400 that is not the documented shape', text(400, '<html>bad request</html>'), 'config', undefined],
  ])('reads %s while polling as a %s failure', async (_what, answer, kind, retryAfterMs) => {
    const { fetch } = scripted(answer);
    const err = await failure(createRealDebridDriver({ fetch }).pollDeviceLogin!(rdCtx(), 'device-code-secret'));
    expect(err.kind).toBe(kind);
    expect(err.retryAfterMs).toBe(retryAfterMs);
  });

  it('asks for the tokens with the per-user credentials as soon as they come, and hands them over as secrets', async () => {
    const { fetch, calls } = scripted(
      creds,
      json(200, { access_token: 'AT', expires_in: 3600, token_type: 'bearer', refresh_token: 'RT' }),
    );
    const poll = await createRealDebridDriver({ fetch }).pollDeviceLogin!(rdCtx(), 'device-code-secret');
    expect(poll).toEqual({
      status: 'tokens',
      tokens: {
        access_token: 'AT',
        token_type: 'Bearer',
        expires_in: 3600,
        refresh_token: 'RT',
        secrets: { [RD_SECRETS.clientId]: 'USERCLIENT', [RD_SECRETS.clientSecret]: 'user-client-secret' },
      },
    });
    expect(calls[0].url).toBe(`${BASE}/oauth/v2/device/credentials?client_id=X245A4XAIBGVM&code=device-code-secret`);
    expect(calls[1].url).toBe(`${BASE}/oauth/v2/token`);
    expect(Object.fromEntries(new URLSearchParams(String(calls[1].init.body)))).toEqual({
      client_id: 'USERCLIENT',
      client_secret: 'user-client-secret',
      code: 'device-code-secret',
      grant_type: 'http://oauth.net/grant_type/device/1.0',
    });
  });

  it('after a transient failure of the token exchange, asks for the tokens again without asking for the credentials again', async () => {
    const { fetch, calls } = scripted(
      creds,
      text(502, 'bad gateway'),
      json(200, { access_token: 'AT', expires_in: 60, token_type: 'Bearer' }),
    );
    const driver = createRealDebridDriver({ fetch });
    expect((await failure(driver.pollDeviceLogin!(rdCtx(), 'dc'))).kind).toBe('transient');
    expect((await driver.pollDeviceLogin!(rdCtx(), 'dc')).status).toBe('tokens');
    expect(calls.map((c) => new URL(c.url).pathname)).toEqual(['/oauth/v2/device/credentials', '/oauth/v2/token', '/oauth/v2/token']);
  });

  it('refreshes with the refresh token in `code`; a refused one is invalid_grant, and the message holds none of the secrets sent', async () => {
    const secrets = { [RD_SECRETS.clientId]: 'USERCLIENT', [RD_SECRETS.clientSecret]: 'user-client-secret' };
    const echo = json(401, { error: 'bad_token user-client-secret the-refresh-token', error_code: 8 });
    const { fetch, calls } = scripted(json(200, { access_token: 'AT2', expires_in: 3600, token_type: 'Bearer' }), echo);
    const driver = createRealDebridDriver({ fetch });
    expect(await driver.refresh(rdCtx(secrets), 'the-refresh-token', {})).toEqual({
      access_token: 'AT2',
      token_type: 'Bearer',
      expires_in: 3600,
    });
    expect(new URLSearchParams(String(calls[0].init.body)).get('code')).toBe('the-refresh-token');
    const err = await failure(driver.refresh(rdCtx(secrets), 'the-refresh-token', {}));
    expect(err.kind).toBe('invalid_grant');
    expect(err.message).toContain('error_code 8');
    for (const s of ['user-client-secret', 'the-refresh-token']) expect(err.message).not.toContain(s);
  });

  it('cannot refresh without the per-user credentials a login stores, and sends nothing', async () => {
    const { fetch, calls } = scripted();
    const err = await failure(createRealDebridDriver({ fetch }).refresh(rdCtx(), 'rt', {}));
    expect(err.kind).toBe('invalid_grant');
    expect(err.message).toContain('tokend login acct');
    expect(calls).toEqual([]);
  });

  it('maps the device code answer (verification_url) to RFC 8628 names', async () => {
    const { fetch, calls } = scripted(
      json(200, {
        device_code: 'dc',
        user_code: 'ABCD',
        interval: 5,
        expires_in: 1800,
        verification_url: 'https://real-debrid.com/device',
      }),
    );
    expect(await createRealDebridDriver({ fetch }).startDeviceLogin!(rdCtx())).toEqual({
      device_code: 'dc',
      user_code: 'ABCD',
      verification_uri: 'https://real-debrid.com/device',
      expires_in: 1800,
      interval: 5,
    });
    expect(calls[0].url).toBe(`${BASE}/oauth/v2/device/code?client_id=X245A4XAIBGVM&new_credentials=yes`);
  });
});

describe('cal-com driver', () => {
  const calCtx = (secret = 'client-secret-value') =>
    ctx({ driver: 'cal-com', client_id: 'cl1', managed_user_id: 42 }, { client_secret: secret });
  const keys = (at: number) =>
    json(200, {
      status: 'success',
      data: { accessToken: 'AT', accessTokenExpiresAt: at, refreshToken: 'RT2', refreshTokenExpiresAt: 1_900_000_000_000 },
    });
  const calError = (status: number, message: string) =>
    json(status, { status: 'error', timestamp: 'now', path: '/', error: { code: 'BadRequestException', message } });

  it('refreshes with the client secret header and the refresh token in JSON; expiries are epoch ms', async () => {
    const { fetch, calls } = scripted(keys(1_800_000_000_000));
    const set = await createCalComDriver({ fetch }).refresh(calCtx(), 'RT1', {});
    expect(set).toEqual({
      access_token: 'AT',
      token_type: 'Bearer',
      expires_at: 1_800_000_000_000,
      refresh_token: 'RT2',
      refresh_expires_at: 1_900_000_000_000,
    });
    expect(calls[0].url).toBe(`${BASE}/v2/oauth/cl1/refresh`);
    expect(calls[0].init.headers).toMatchObject({
      'x-cal-secret-key': 'client-secret-value',
      'x-cal-client-id': 'cl1',
      'content-type': 'application/json',
    });
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ refreshToken: 'RT1' });
    expect(calls[0].init.redirect).toBe('manual');
  });

  it.each([
    ['400 "Invalid refresh token"', calError(400, 'Invalid refresh token'), 'invalid_grant'],
    ['400 "Invalid OAuthClient credentials."', calError(400, 'Invalid OAuthClient credentials.'), 'config'],
    ['401', calError(401, 'Invalid OAuth client credentials'), 'config'],
    ['a 429', calError(429, 'Too Many Requests'), 'transient'],
    ['a 500', calError(500, 'Internal server error'), 'transient'],
    [
      'a 302 (never followed: the secret header must not go elsewhere)',
      () => new Response(null, { status: 302, headers: { location: 'https://elsewhere.example/' } }),
      'config',
    ],
  ])('reads %s as %s', async (_what, answer, kind) => {
    const { fetch } = scripted(answer);
    const err = await failure(createCalComDriver({ fetch }).refresh(calCtx(), 'RT1', {}));
    expect(err.kind).toBe(kind);
    expect(err.message).not.toContain('client-secret-value');
  });

  it('force-refreshes the managed user as its recover step, and can only with the secret', async () => {
    const { fetch, calls } = scripted(keys(1_800_000_000));
    const driver = createCalComDriver({ fetch });
    expect(driver.canRecover!(calCtx())).toBe(true);
    expect(driver.canRecover!(ctx({ driver: 'cal-com', client_id: 'cl1', managed_user_id: 42 }))).toBe(false);
    const set = await driver.recover!(calCtx(), {});
    expect(set.expires_at).toBe(1_800_000_000_000); // a value that can only be seconds is taken as seconds
    expect(calls[0].url).toBe(`${BASE}/v2/oauth-clients/cl1/users/42/force-refresh`);
    expect(driver.recoverOnAdd).toBe(false);
    expect(driver.staleStatuses).toEqual([498]);
  });

  it('validates what it needs', () => {
    const driver = createCalComDriver();
    expect(driver.validate!(AccountConfig.parse({ driver: 'cal-com', base_url: BASE, managed_user_id: 1 }))).toMatch(/^client_id/);
    expect(driver.validate!(AccountConfig.parse({ driver: 'cal-com', base_url: BASE, client_id: 'c' }))).toMatch(/^managed_user_id/);
    expect(
      driver.validate!(AccountConfig.parse({ driver: 'cal-com', base_url: BASE, client_id: 'c', managed_user_id: 1 })),
    ).toBeUndefined();
  });
});

describe('amp driver', () => {
  const jwt = (claims: object) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
  const ampCtx = (extra: Partial<DriverContext> = {}, config: Partial<AccountConfigInput> = {}) =>
    ctx({ driver: 'amp', username: 'ops', flow: 'password', ...config }, { password: 'hunter2-password' }, extra);

  it('obtains a token with the username and password; its scheme is `token`, its lifetime the JWT’s', async () => {
    const token = jwt({ iat: 1_000, exp: 1_000 + 86_400 });
    const { fetch, calls } = scripted(json(200, { token }));
    expect(await createAmpDriver({ fetch }).recover!(ampCtx(), {})).toEqual({
      access_token: token,
      token_type: 'token',
      expires_in: 86_400,
    });
    expect(calls[0].url).toBe(`${BASE}/user/obtain_token`);
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ username: 'ops', password: 'hunter2-password' });
  });

  it('reads a refused password as a config error naming the fix, without the password', async () => {
    const { fetch } = scripted(json(400, { non_field_errors: ['Unable to log in with provided credentials.'], echo: 'hunter2-password' }));
    const err = await failure(createAmpDriver({ fetch }).recover!(ampCtx(), {}));
    expect(err).toMatchObject({ kind: 'config', oauthError: 'invalid_grant', status: 400 });
    expect(err.message).toContain('tokend set acct --password-stdin');
    expect(err.message).toContain('Unable to log in');
    expect(err.message).not.toContain('hunter2-password');
  });

  it('with refresh_with_token presents the current token first, and obtains when that fails', async () => {
    const { fetch, calls } = scripted(json(404, { detail: 'Not found.' }), json(200, { token: 'opaque' }));
    const set = await createAmpDriver({ fetch }).recover!(ampCtx({ currentAccessToken: 'current-jwt' }, { refresh_with_token: true }), {});
    expect(set).toEqual({ access_token: 'opaque', token_type: 'token' }); // not a JWT: no known expiry
    expect(calls.map((c) => new URL(c.url).pathname)).toEqual(['/user/refresh_token', '/user/obtain_token']);
    expect(calls[0].init.headers).toMatchObject({ authorization: 'token current-jwt' });
  });

  it('refuses plain http to a host that is not loopback before sending the password', async () => {
    const { fetch, calls } = scripted();
    const err = await failure(createAmpDriver({ fetch }).recover!(ampCtx({}, { base_url: 'http://amp.example/api' }), {}));
    expect(err.kind).toBe('config');
    expect(calls).toEqual([]);
  });

  it('validates: a username, no client id, the password flow', () => {
    const driver = createAmpDriver();
    const v = (c: Partial<AccountConfigInput>) =>
      driver.validate!(AccountConfig.parse({ driver: 'amp', base_url: BASE, flow: 'password', username: 'u', ...c }));
    expect(v({})).toBeUndefined();
    expect(v({ username: undefined })).toMatch(/^username/);
    expect(v({ client_id: 'x' })).toMatch(/^client_id/);
    expect(v({ flow: 'device' })).toMatch(/^flow/);
  });
});

describe('jwtLifetime', () => {
  const jwt = (claims: object) => `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`;
  it('takes exp − iat when both are there, exp alone as a time, and nothing from what is not a JWT', () => {
    expect(jwtLifetime(jwt({ iat: 100, exp: 400 }))).toEqual({ expires_in: 300 });
    expect(jwtLifetime(jwt({ exp: 1_700_000_000 }))).toEqual({ expires_at: 1_700_000_000_000 });
    expect(jwtLifetime(jwt({ sub: 'x' }))).toEqual({});
    expect(jwtLifetime('opaque-token')).toEqual({});
    expect(jwtLifetime('a.not-base64-json.c')).toEqual({});
  });
});
