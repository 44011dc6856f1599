/**
 * The login pieces on their own, with fabricated answers: the RFC 8628 polling schedule,
 * the driver's device and browser steps (oauth4webapi request/process pairs), PKCE and
 * state, the browser page, and the CLI's flow choice and browser launching rules.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { browserCommands, canOpenBrowser, splitCommand } from '../src/client/browser.js';
import { DriverError, type DevicePoll, type DriverContext } from '../src/daemon/drivers/driver.js';
import { createOAuth2Driver } from '../src/daemon/drivers/oauth2.js';
import { browserSecrets, escapeHtml, page, stateMatches } from '../src/daemon/login-browser.js';
import { pollDeviceCode } from '../src/daemon/login-device.js';
import { AccountConfig, type AccountConfigInput } from '../src/protocol/api.js';
import { defaultLoginFlow } from '../src/protocol/rules.js';

// ---- RFC 8628 §3.5 polling schedule ------------------------------------------------------

/** Runs pollDeviceCode over scripted answers (1 ms per interval second); returns the outcome and every interval change. */
async function schedule(answers: Array<DevicePoll | Error>, opts: { interval?: number; expiresInMs?: number } = {}) {
  const changes: Array<[number, string]> = [];
  const pollTimes: number[] = [];
  let polls = 0;
  const expiresAt = Date.now() + (opts.expiresInMs ?? 10_000);
  const outcome = await pollDeviceCode({
    poll: async () => {
      pollTimes.push(Date.now());
      const a = answers[Math.min(polls++, answers.length - 1)]!;
      if (a instanceof Error) throw a;
      return a;
    },
    interval: opts.interval,
    unitMs: 1,
    expiresAt,
    signal: new AbortController().signal,
    onInterval: (s, why) => changes.push([s, why]),
  });
  return { outcome, changes, polls, pollTimes, expiresAt };
}

const pending: DevicePoll = { status: 'pending' };
const tokens: DevicePoll = { status: 'tokens', tokens: { access_token: 'at', token_type: 'Bearer' } };
const timeout = () => new DriverError('transient', 'the token endpoint did not answer in time (timed out)', { outcomeUnknown: true });

describe('device polling schedule (RFC 8628 §3.5)', () => {
  it('keeps polling on authorization_pending and returns the tokens', async () => {
    const r = await schedule([pending, pending, tokens]);
    expect(r.outcome).toEqual({ kind: 'tokens', tokens: { access_token: 'at', token_type: 'Bearer' } });
    expect(r.polls).toBe(3);
    expect(r.changes).toEqual([]);
  });

  it('adds 5 to the interval on every slow_down, cumulatively, from the default 5', async () => {
    const r = await schedule([{ status: 'slow_down' }, { status: 'slow_down' }, pending, tokens]);
    expect(r.changes).toEqual([
      [10, 'slow_down'],
      [15, 'slow_down'],
    ]);
  });

  it('takes the server’s new interval on slow_down when it sends one, but never polls faster', async () => {
    const r = await schedule([{ status: 'slow_down', interval: 12 }, { status: 'slow_down', interval: 3 }, tokens], { interval: 2 });
    expect(r.changes).toEqual([
      [12, 'slow_down'],
      [12, 'slow_down'],
    ]);
  });

  it('doubles the interval after each timeout, up to 60 s; a later slow_down still adds 5', async () => {
    const r = await schedule([timeout(), timeout(), timeout(), timeout(), timeout(), { status: 'slow_down' }, timeout(), tokens]);
    expect(r.changes.map(([s]) => s)).toEqual([10, 20, 40, 60, 60, 65, 65]);
    expect(r.outcome.kind).toBe('tokens');
  });

  it('stops with failed on access_denied or any other error, and expired on expired_token', async () => {
    const denied = await schedule([
      pending,
      new DriverError('config', 'answered access_denied', { oauthError: 'access_denied', status: 400 }),
    ]);
    expect(denied.outcome).toEqual({ kind: 'failed', error: { code: 'access_denied', message: 'answered access_denied' } });
    expect(denied.polls).toBe(2);
    const odd = await schedule([new DriverError('config', 'answered invalid_client', { oauthError: 'invalid_client', status: 401 })]);
    expect(odd.outcome).toMatchObject({ kind: 'failed', error: { code: 'invalid_client' } });
    const gone = await schedule([new DriverError('config', 'answered expired_token', { oauthError: 'expired_token', status: 400 })]);
    expect(gone.outcome).toMatchObject({ kind: 'expired', error: { code: 'expired_token' } });
    const bug = await schedule([new Error('boom')]);
    expect(bug.outcome).toMatchObject({ kind: 'failed', error: { code: 'internal' } });
  });

  it('expires when expires_in elapses and never polls after it', async () => {
    const r = await schedule([pending], { interval: 20, expiresInMs: 70 });
    expect(r.outcome.kind).toBe('expired');
    // About three polls (20, 40, 60 ms); timers and Date.now() round differently, so a
    // fourth may squeeze in just before the deadline, but none after it.
    expect(r.polls).toBeGreaterThanOrEqual(1);
    expect(r.polls).toBeLessThanOrEqual(4);
    for (const t of r.pollTimes) expect(t).toBeLessThan(r.expiresAt);
  });

  it('stops at once when aborted', async () => {
    const ac = new AbortController();
    const p = pollDeviceCode({ poll: async () => pending, unitMs: 1000, expiresAt: Date.now() + 60_000, signal: ac.signal });
    ac.abort();
    expect(await p).toEqual({ kind: 'stopped' });
  });
});

// ---- driver steps with fabricated responses -----------------------------------------------

function ctx(config: Partial<AccountConfigInput>, clientSecret?: string): DriverContext {
  return {
    name: 'work',
    config: AccountConfig.parse({ client_id: 'app', token_endpoint: 'https://as.example/token', ...config }),
    clientSecret,
    secret: () => undefined,
    signal: AbortSignal.timeout(5000),
  };
}

/** A fetch that answers from `answer` and records the requests. */
function fakeFetch(answer: (url: string, body: URLSearchParams) => Response) {
  const requests: Array<{ url: string; body: URLSearchParams; headers: Headers }> = [];
  const f = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    const body = new URLSearchParams(String(init?.body ?? ''));
    requests.push({ url, body, headers: new Headers(init?.headers) });
    return answer(url, body);
  }) as typeof fetch;
  return { fetch: f, requests };
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

describe('oauth2 driver: device steps', () => {
  it('asks the device endpoint with client_id, scope and resource, and passes the interval on', async () => {
    const f = fakeFetch(() =>
      json(200, {
        device_code: 'dc-secret',
        user_code: 'ABCD-EFGH',
        verification_uri: 'https://as.example/device',
        expires_in: 600,
        interval: 7,
      }),
    );
    const driver = createOAuth2Driver({ fetch: f.fetch });
    const da = await driver.startDeviceLogin(
      ctx({
        device_authorization_endpoint: 'https://as.example/device/auth',
        scopes: ['openid', 'offline_access'],
        audience: 'https://api.example',
      }),
    );
    expect(da).toEqual({
      device_code: 'dc-secret',
      user_code: 'ABCD-EFGH',
      verification_uri: 'https://as.example/device',
      expires_in: 600,
      interval: 7,
    });
    expect(f.requests[0]!.url).toBe('https://as.example/device/auth');
    expect(Object.fromEntries(f.requests[0]!.body)).toEqual({
      client_id: 'app',
      scope: 'openid offline_access',
      resource: 'https://api.example',
    });
  });

  it('says which option sets a missing device endpoint', async () => {
    const driver = createOAuth2Driver({ fetch: fakeFetch(() => json(500, {})).fetch });
    const err = await driver.startDeviceLogin(ctx({})).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).kind).toBe('config');
    expect((err as DriverError).message).toContain('--device-endpoint');
  });

  it('reads authorization_pending, slow_down (with and without interval) as answers, and the rest as errors', async () => {
    const answers = [
      json(400, { error: 'authorization_pending' }),
      json(400, { error: 'slow_down' }),
      json(400, { error: 'slow_down', interval: 15 }),
      json(400, { error: 'access_denied', error_description: 'no' }),
      json(429, { error: 'rate_limited' }, { 'retry-after': '3' }),
      json(200, { access_token: 'at', token_type: 'bearer', expires_in: 60, refresh_token: 'rt' }),
    ];
    const f = fakeFetch(() => answers.shift()!);
    const driver = createOAuth2Driver({ fetch: f.fetch });
    const c = ctx({}, 'client-secret');
    expect(await driver.pollDeviceLogin(c, 'dc-secret')).toEqual({ status: 'pending' });
    expect(await driver.pollDeviceLogin(c, 'dc-secret')).toEqual({ status: 'slow_down' });
    expect(await driver.pollDeviceLogin(c, 'dc-secret')).toEqual({ status: 'slow_down', interval: 15 });
    const denied = (await driver.pollDeviceLogin(c, 'dc-secret').catch((e: unknown) => e)) as DriverError;
    expect(denied.oauthError).toBe('access_denied');
    const limited = (await driver.pollDeviceLogin(c, 'dc-secret').catch((e: unknown) => e)) as DriverError;
    expect(limited).toMatchObject({ kind: 'transient', status: 429, retryAfterMs: 3000 });
    expect(await driver.pollDeviceLogin(c, 'dc-secret')).toEqual({
      status: 'tokens',
      tokens: { access_token: 'at', token_type: 'Bearer', expires_in: 60, refresh_token: 'rt' },
    });
    const body = f.requests[0]!.body;
    expect(body.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:device_code');
    expect(body.get('device_code')).toBe('dc-secret');
    expect(f.requests[0]!.headers.get('authorization')).toMatch(/^Basic /); // the confidential client authenticates
    for (const e of [denied, limited]) expect(`${e.message} ${e.stack}`).not.toContain('dc-secret');
  });
});

describe('oauth2 driver: browser steps', () => {
  const params = { redirect_uri: 'http://127.0.0.1:5555/callback', state: 'st-123', code_challenge: 'ch-456' };

  it('builds the authorization URL with PKCE S256, state and the loopback redirect; prompt=consent only with offline_access', async () => {
    const driver = createOAuth2Driver({ fetch: fakeFetch(() => json(500, {})).fetch });
    const withOffline = new URL(
      await driver.authorizationUrl(
        ctx({
          authorization_endpoint: 'https://as.example/authorize?tenant=t1',
          scopes: ['openid', 'offline_access'],
          audience: 'https://api.example',
        }),
        params,
      ),
    );
    expect(withOffline.origin + withOffline.pathname).toBe('https://as.example/authorize');
    expect(Object.fromEntries(withOffline.searchParams)).toEqual({
      tenant: 't1', // the endpoint's own query stays (RFC 6749 §3.1)
      response_type: 'code',
      client_id: 'app',
      redirect_uri: params.redirect_uri,
      scope: 'openid offline_access',
      state: 'st-123',
      code_challenge: 'ch-456',
      code_challenge_method: 'S256',
      resource: 'https://api.example',
      prompt: 'consent',
    });
    const plain = new URL(
      await driver.authorizationUrl(ctx({ authorization_endpoint: 'https://as.example/authorize', scopes: ['repo'] }), params),
    );
    expect(plain.searchParams.has('prompt')).toBe(false);
    expect(plain.searchParams.has('resource')).toBe(false);
  });

  it('refuses a plain-http authorization endpoint on another host', async () => {
    const driver = createOAuth2Driver();
    const c = ctx({});
    c.config = { ...c.config, authorization_endpoint: 'http://as.example/authorize' };
    await expect(driver.authorizationUrl(c, params)).rejects.toMatchObject({ kind: 'config' });
  });

  it('checks state before exchanging, and turns error=access_denied into the provider’s code', async () => {
    const f = fakeFetch(() => json(200, { access_token: 'at', token_type: 'Bearer' }));
    const driver = createOAuth2Driver({ fetch: f.fetch });
    const c = ctx({ authorization_endpoint: 'https://as.example/authorize' });
    const p = { redirect_uri: params.redirect_uri, state: 'st-123', code_verifier: 'v'.repeat(43) };
    const wrong = (await driver
      .exchangeCode(c, new URL(`${params.redirect_uri}?code=c1&state=other`), p)
      .catch((e: unknown) => e)) as DriverError;
    expect(wrong).toBeInstanceOf(DriverError);
    expect(wrong.message).toContain('state');
    const denied = (await driver
      .exchangeCode(c, new URL(`${params.redirect_uri}?error=access_denied&error_description=nope&state=st-123`), p)
      .catch((e: unknown) => e)) as DriverError;
    expect(denied).toMatchObject({ kind: 'config', oauthError: 'access_denied' });
    expect(f.requests).toHaveLength(0); // neither reached the token endpoint

    // Without a configured issuer there is no issuer to compare `iss` with: it is ignored.
    const set = await driver.exchangeCode(c, new URL(`${params.redirect_uri}?code=c1&state=st-123&iss=https://whoever.example`), p);
    expect(set.access_token).toBe('at');
    const body = f.requests[0]!.body;
    expect(Object.fromEntries(body)).toMatchObject({
      grant_type: 'authorization_code',
      code: 'c1',
      redirect_uri: params.redirect_uri,
      code_verifier: 'v'.repeat(43),
      client_id: 'app',
    });
  });
});

// ---- PKCE, state, page ----------------------------------------------------------------------

describe('browser login helpers', () => {
  it('makes a 43-character verifier with its S256 challenge, and a fresh state each time (RFC 7636 §4.1–4.2)', () => {
    const a = browserSecrets();
    const b = browserSecrets();
    expect(a.code_verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.code_challenge).toBe(createHash('sha256').update(a.code_verifier).digest('base64url'));
    expect(a.state).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new Set([a.code_verifier, b.code_verifier, a.state, b.state]).size).toBe(4);
  });

  it('compares states exactly', () => {
    expect(stateMatches('abc', 'abc')).toBe(true);
    expect(stateMatches('abd', 'abc')).toBe(false);
    expect(stateMatches('ab', 'abc')).toBe(false);
    expect(stateMatches(null, 'abc')).toBe(false);
  });

  it('escapes everything it shows', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    const html = page('Signed in to <b>x</b>', 'error "<script>"');
    expect(html).not.toContain('<b>');
    expect(html).not.toContain('<script>');
    expect(html).toContain('Signed in to &lt;b&gt;x&lt;/b&gt;');
  });
});

// ---- CLI rules -----------------------------------------------------------------------------

describe('choosing the flow', () => {
  const cases: Array<[Record<string, string>, string, 'browser' | 'device']> = [
    [{ DISPLAY: ':0' }, 'linux', 'browser'],
    [{ WAYLAND_DISPLAY: 'wayland-0' }, 'linux', 'browser'],
    [{}, 'linux', 'device'],
    [{}, 'darwin', 'browser'],
    [{ DISPLAY: ':0', SSH_CONNECTION: '1.2.3.4 5 6.7.8.9 22' }, 'linux', 'device'],
    [{ SSH_TTY: '/dev/pts/1' }, 'darwin', 'device'],
  ];
  // One rule (src/protocol/rules.ts) that the CLI and the daemon both apply.
  it.each(cases)('%o on %s → %s', (env, platform, flow) => {
    expect(defaultLoginFlow(env, platform)).toBe(flow);
  });
});

describe('opening the browser', () => {
  const url = 'https://as.example/authorize?a=1&b=2';
  it('appends the URL to $BROWSER, or puts it where %s is, then falls back to the platform opener', () => {
    expect(browserCommands(url, { BROWSER: 'firefox --new-window' }, 'linux')).toEqual([
      ['firefox', '--new-window', url],
      ['xdg-open', url],
    ]);
    expect(browserCommands(url, { BROWSER: `"/opt/my browser/run" --url=%s --literal=100%%` }, 'linux')[0]).toEqual([
      '/opt/my browser/run',
      `--url=${url}`,
      '--literal=100%',
    ]);
    expect(browserCommands(url, { BROWSER: ['w3m', 'lynx'].join(path.delimiter) }, 'darwin')).toEqual([
      ['w3m', url],
      ['lynx', url],
      ['open', url],
    ]);
    expect(browserCommands(url, {}, 'linux')).toEqual([['xdg-open', url]]);
    // WSL: the Windows browser through wslview first, as gh does.
    expect(browserCommands(url, { WSL_DISTRO_NAME: 'Debian' }, 'linux')).toEqual([
      ['wslview', url],
      ['xdg-open', url],
    ]);
  });

  it('opens one only where a browser can show: $BROWSER, a display, macOS, Windows or WSL', () => {
    expect(canOpenBrowser({}, 'linux')).toBe(false);
    expect(canOpenBrowser({ SSH_CONNECTION: '1.2.3.4 5 6.7.8.9 22' }, 'linux')).toBe(false);
    expect(canOpenBrowser({ BROWSER: 'w3m' }, 'linux')).toBe(true);
    expect(canOpenBrowser({ DISPLAY: ':0' }, 'linux')).toBe(true);
    expect(canOpenBrowser({ WAYLAND_DISPLAY: 'wayland-0' }, 'linux')).toBe(true);
    expect(canOpenBrowser({ WSL_INTEROP: '/run/WSL/1_interop' }, 'linux')).toBe(true);
    expect(canOpenBrowser({}, 'darwin')).toBe(true);
    expect(canOpenBrowser({}, 'win32')).toBe(true);
  });

  it('splits a command line like a shell would, without running one', () => {
    expect(splitCommand(`a 'b c' "d \\"e\\"" f\\ g ''`)).toEqual(['a', 'b c', 'd "e"', 'f g', '']);
    expect(splitCommand('   ')).toEqual([]);
    expect(splitCommand('open -a "Google Chrome"')).toEqual(['open', '-a', 'Google Chrome']);
  });
});
