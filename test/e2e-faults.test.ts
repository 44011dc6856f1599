import http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sleep, postConfGrant } from './support/daemon.js';
import { useDaemon, useIdp } from './support/fixtures.js';

/** Read SSE events from the daemon until `until` matches one. */
function waitForEvent(socket: string, type: string, timeoutMs = 10_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path: '/v1/events', headers: { host: 'tokend' } }, (res) => {
      let buf = '';
      res.on('data', (c) => {
        buf += c;
        for (const block of buf.split('\n\n')) {
          const ev = /^event: (.+)$/m.exec(block)?.[1];
          const data = /^data: (.+)$/m.exec(block)?.[1];
          if (ev === type && data) {
            clearTimeout(timer);
            req.destroy();
            resolve(JSON.parse(data));
          }
        }
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no ${type} event`));
    }, timeoutMs);
    req.on('error', () => undefined);
    req.end();
  });
}

describe('provider faults', () => {
  const idp = useIdp({ accessTokenTtl: 4 });
  // Every test starts without a fault (set before its daemon imports the grant) and leaves none behind.
  beforeEach(() => idp.setFault(null));
  afterEach(() => idp.setFault(null));
  const { d } = useDaemon({
    lifetime: 'test',
    // Backoffs long enough that a CLI started on a loaded machine still meets the one in force.
    settings: { http_timeout_ms: 800, backoff_initial_ms: 1000, backoff_max_ms: 2000, proactive_refresh: false },
    account: { idp, grant: true },
  });
  // The counters count the test's own calls, not the import's.
  beforeEach(() => idp.resetStats());

  for (const fault of [{ kind: '500' }, { kind: 'garbage' }, { kind: 'hang' }, { kind: 'reset' }] as const) {
    it(`keeps serving the cached token through a ${fault.kind} from the token endpoint, then answers 503 upstream_unavailable`, async () => {
      const first = (await d.request('POST', '/v1/token', { account: 'work' })).json;
      const cached = first.access_token;
      idp.setFault(fault);

      const forced = await d.request('POST', '/v1/accounts/work/refresh');
      expect(forced.status).toBe(503);
      expect(forced.json.error.code).toBe('upstream_unavailable');
      expect(idp.stats.faulted).toBe(1);

      // Still valid: asking for more than it has left gets it anyway rather than an error.
      const during = await d.request('POST', '/v1/token', { account: 'work', min_ttl: 3600 });
      expect(during.status).toBe(200);
      expect(during.json.access_token).toBe(cached);
      // A token valid now: active, though its refresh failed.
      expect((await d.request('GET', '/v1/accounts/work')).json).toMatchObject({ status: 'active', last_error: expect.any(String) });

      // The cached token expires (4 s after the import made it; the steps above took some of that).
      await sleep(Math.max(0, Date.parse(first.expires_at) - Date.now()) + 200);
      const expired = await d.request('POST', '/v1/token', { account: 'work' });
      expect(expired.status).toBe(503);
      expect(expired.json.error.code).toBe('upstream_unavailable');
      expect(expired.json.error.message).toContain('work');
      // No valid token, and the refresh keeps failing: not active, and no login would help.
      // Read before the CLI runs: a CLI slow to start on a loaded machine can outlast the
      // backoff (2 s), after which the account says no retry_at until the next attempt.
      const failing = (await d.request('GET', '/v1/accounts/work')).json;
      expect(failing).toMatchObject({
        status: 'refresh_failing',
        last_error: expect.any(String),
        retry_at: expect.any(String),
      });
      const cli = await d.cli(['token', 'work']);
      expect(cli.code).toBe(1);
      expect(cli.stdout).toBe('');
      // The reason (the provider's answer, or a store's fault) and when it tries again: refused
      // during the backoff, or (a CLI slow to start on a loaded machine) the attempt after it failing.
      expect(cli.stderr).toMatch(
        /(cannot be refreshed now \(last attempt: .+\)|is unavailable \(could not refresh the token\): .+); next attempt in \d+ s/,
      );
      expect((await d.cli(['status', 'work'])).code).toBe(1);

      idp.setFault(null);
      // Past the backoff in force: the one read above, or a later one if the CLI's own attempt failed.
      const retryAt = (await d.request('GET', '/v1/accounts/work')).json.retry_at ?? failing.retry_at;
      await sleep(Math.max(0, Date.parse(retryAt) - Date.now()) + 200);
      const healed = await d.request('POST', '/v1/token', { account: 'work' });
      expect(healed.status).toBe(200);
      expect(healed.json.access_token).not.toBe(cached);
      expect((await d.request('GET', '/v1/accounts/work')).json).toMatchObject({ status: 'active', last_error: null, retry_at: null });
      expect((await d.request('GET', '/v1/health')).status).toBe(200);
      expect(idp.stats.replays).toBe(0);
    });
  }

  it('honours Retry-After on 429: no request before it has passed', async () => {
    idp.setFault({ kind: '429', retryAfter: '2' });
    const forced = await d.request('POST', '/v1/accounts/work/refresh');
    expect(forced.status).toBe(503);
    expect(forced.json.error.retry_after).toBeGreaterThanOrEqual(2);
    expect(forced.headers['retry-after']).toBeDefined();
    const t0 = idp.lastTokenRequestAt[0];
    // Hammer it for 3 s, asking for more than the cached token has: only the gate answers.
    const end = Date.now() + 3_000;
    while (Date.now() < end) {
      await d.request('POST', '/v1/token', { account: 'work', min_ttl: 3600 });
      await sleep(50);
    }
    const times = idp.lastTokenRequestAt;
    expect(times.length).toBeGreaterThanOrEqual(2);
    expect(times.length).toBeLessThanOrEqual(3);
    expect(times[1] - t0).toBeGreaterThanOrEqual(1_900);
  });

  it('turns invalid_grant into reauth_required: exit 3, a 409, an event, no retry loop', async () => {
    const eventP = waitForEvent(d.socket, 'account.reauth_required');
    await sleep(100);
    idp.setFault({ kind: 'invalid_grant' });
    const cli = await d.cli(['refresh', 'work']);
    expect(cli.code).toBe(3);
    expect(cli.stderr).toContain('tokend login work');
    const ev = await eventP;
    expect(ev).toMatchObject({ type: 'account.reauth_required', account: 'work' });
    idp.setFault(null);

    const tok = await d.request('POST', '/v1/token', { account: 'work', min_ttl: 3600 });
    expect(tok.status).toBe(409);
    expect(tok.json.error.code).toBe('reauth_required');
    expect((await d.cli(['token', 'work', '--min-ttl', '3600'])).code).toBe(3);
    const status = await d.cli(['status', 'work', '--json']);
    expect(JSON.parse(status.stdout).status).toBe('reauth_required');
    expect(idp.stats.tokenRequests).toBe(1); // no retries against a refused grant

    // The provider answered, so the refresh's outcome is known: after a clean restart there
    // is no "interrupted refresh" warning, only the reauth_required status.
    const logsBefore = d.logs.length;
    expect(await d.stop()).toBe(0);
    await d.start();
    expect(d.logs.slice(logsBefore)).not.toContain('a refresh was interrupted');
    expect(JSON.parse((await d.cli(['status', 'work', '--json'])).stdout).status).toBe('reauth_required');
  });

  it('reports a grant revoked at the real provider (replayed refresh token) as reauth_required', async () => {
    // Replaying a consumed refresh token makes oidc-provider revoke the whole grant (RFC 9700 §4.14.2).
    const issued = await postConfGrant(d, idp);
    const replay = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from('conf:conf-secret').toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: issued.refresh_token }),
    });
    expect(replay.status).toBe(400);
    const r = await d.cli(['refresh', 'work']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/invalid_grant|refused/);
  });
});
