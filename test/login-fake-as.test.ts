/**
 * Device-flow polling against a small fake authorization server, for what oidc-provider
 * never does (RFC 8628 §3.5; oidc-provider never sends slow_down): slow_down, 429, 5xx, hanging endpoints. The daemon runs
 * with `device_poll_unit_ms: 100`, so one RFC 8628 "second" of interval lasts 100 ms:
 * the default 5 s is 500 ms, slow_down's +5 s is +500 ms. Timeouts and Retry-After are real.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { settled, startDaemon, startFakeAs, startLogin, UNIT_MS, type FakeAs, type TestDaemon } from './support/fake-as.js';

/** Gaps between successive polls' arrival, in ms. */
const gaps = (as: FakeAs) => as.polls.slice(1).map((p, i) => p.at - as.polls[i]!.at);

/** The intervals (in RFC 8628 seconds) the daemon logged when it changed them, with why. */
const intervalChanges = (logs: string) =>
  logs
    .split('\n')
    .filter((l) => l.includes('polling more slowly'))
    .map((l) => JSON.parse(l) as { interval_s: number; why: string })
    .map((r) => [r.interval_s, r.why]);

/** Slack for "not later than": the gaps are wall-clock times on a busy machine. */
const LATE_MS = 400;

describe('device login polling against a fake authorization server', () => {
  let as: FakeAs;
  let t: TestDaemon | undefined;

  beforeEach(async () => {
    as = await startFakeAs();
  });
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
    await as.close();
  });

  async function daemonWithAccount(settings: Record<string, unknown> = {}): Promise<TestDaemon> {
    t = await startDaemon(settings);
    const add = await t.d.cli([
      'add',
      'work',
      '--client-id',
      'fake',
      '--token-endpoint',
      as.tokenEndpoint,
      '--device-endpoint',
      as.deviceEndpoint,
      '--scope',
      'api',
    ]);
    if (add.code !== 0) throw new Error(add.stderr);
    return t;
  }

  it('adds 5 s to the interval for good on slow_down, and takes the server’s new interval when it sends one', async () => {
    const { d } = await daemonWithAccount();
    as.device = { kind: 'ok', interval: 2 };
    as.script(['pending', { kind: 'slow_down' }, 'pending', { kind: 'slow_down', interval: 15 }, 'tokens']);
    const login = await startLogin(d, 'work', 'device');
    expect((await settled(d, login.id)).status).toBe('active');
    expect(as.polls.map((p) => p.answer)).toEqual(['pending', 'slow_down', 'pending', 'slow_down', 'tokens']);
    // 2 (the server's), +5 on slow_down, kept, then the server's 15 (not 7 + 5).
    expect(intervalChanges(d.logs)).toEqual([
      [7, 'slow_down'],
      [15, 'slow_down'],
    ]);
    const [g1, g2, g3, g4] = gaps(as);
    expect(g1).toBeGreaterThanOrEqual(2 * UNIT_MS - 20);
    expect(g1).toBeLessThan(2 * UNIT_MS + LATE_MS);
    for (const g of [g2, g3]) {
      expect(g).toBeGreaterThanOrEqual(7 * UNIT_MS - 20); // +5 s for good
      expect(g).toBeLessThan(7 * UNIT_MS + LATE_MS);
    }
    expect(g4).toBeGreaterThanOrEqual(15 * UNIT_MS - 20);
    expect((await d.cli(['token', 'work'])).code).toBe(0);
  });

  it('polls every 5 s when the server names no interval', async () => {
    const { d } = await daemonWithAccount();
    as.script(['pending', 'pending', 'tokens']);
    const started = Date.now();
    const login = await startLogin(d, 'work', 'device');
    expect((await settled(d, login.id)).status).toBe('active');
    expect(as.polls[0]!.at - started).toBeGreaterThanOrEqual(5 * UNIT_MS - 20); // it waits before the first poll too
    for (const g of gaps(as)) {
      expect(g).toBeGreaterThanOrEqual(5 * UNIT_MS - 20);
      expect(g).toBeLessThan(5 * UNIT_MS + LATE_MS);
    }
    expect(intervalChanges(d.logs)).toEqual([]);
  });

  it('halves the polling rate for good after a connection timeout', async () => {
    const { d } = await daemonWithAccount({ http_timeout_ms: 300 });
    as.device = { kind: 'ok', interval: 2 };
    as.script(['pending', 'hang', 'pending', 'pending', 'tokens']);
    const login = await startLogin(d, 'work', 'device');
    expect((await settled(d, login.id)).status).toBe('active');
    expect(intervalChanges(d.logs)).toEqual([[4, 'unreachable']]); // 2 doubled, once, for good
    const [g1, g2, g3, g4] = gaps(as);
    expect(g1).toBeLessThan(2 * UNIT_MS + LATE_MS);
    expect(g2).toBeGreaterThanOrEqual(300 + 4 * UNIT_MS - 20); // the timeout, then the doubled interval
    for (const g of [g3, g4]) expect(g).toBeGreaterThanOrEqual(4 * UNIT_MS - 20); // and it stays doubled
  });

  it('honours Retry-After on a 429 while polling, and slows down after a 500', async () => {
    const { d } = await daemonWithAccount();
    as.device = { kind: 'ok', interval: 2 };
    as.script(['pending', { kind: '429', retryAfter: '1' }, '500', 'pending', 'tokens']);
    const login = await startLogin(d, 'work', 'device');
    expect((await settled(d, login.id)).status).toBe('active');
    expect(intervalChanges(d.logs)).toEqual([
      [4, 'unreachable'], // after the 429
      [8, 'unreachable'], // after the 500
    ]);
    const [, g2, g3, g4] = gaps(as);
    expect(g2).toBeGreaterThanOrEqual(1000 - 20); // Retry-After: 1 (real seconds) beats the 400 ms interval
    expect(g3).toBeGreaterThanOrEqual(8 * UNIT_MS - 20);
    expect(g4).toBeGreaterThanOrEqual(8 * UNIT_MS - 20);
  });

  it('stops on access_denied and on expired_token, with the provider’s reason', async () => {
    const { d } = await daemonWithAccount();
    as.device = { kind: 'ok', interval: 1 };
    as.script(['pending', 'denied']);
    const denied = await startLogin(d, 'work', 'device');
    expect(await settled(d, denied.id)).toMatchObject({ status: 'failed', error: { code: 'access_denied' } });
    expect((await d.request('GET', `/v1/logins/${denied.id}`)).json.error.message).toContain('the user said no');
    const polled = as.polls.length;

    as.script(['expired']);
    const expired = await startLogin(d, 'work', 'device');
    expect(await settled(d, expired.id)).toMatchObject({ status: 'expired', error: { code: 'expired_token' } });
    await new Promise((r) => setTimeout(r, 5 * UNIT_MS));
    expect(as.polls.length).toBe(polled + 1); // no poll after the end
  });

  it('expires on its own when expires_in elapses, even if the server keeps saying pending', async () => {
    const { d } = await daemonWithAccount();
    as.device = { kind: 'ok', interval: 1, expires_in: 1 };
    as.script(['pending']);
    const login = await startLogin(d, 'work', 'device');
    const done = await settled(d, login.id);
    expect(done).toMatchObject({ status: 'expired', error: { code: 'expired_token' } });
    expect(Date.parse(done.updated_at)).toBeGreaterThanOrEqual(Date.parse(login.expires_at) - 50);
  });

  it('answers 503 with retry_after when the device endpoint says 429, and records no login', async () => {
    const { d } = await daemonWithAccount();
    as.device = { kind: '429', retryAfter: '7' };
    const r = await d.request('POST', '/v1/accounts/work/login', { flow: 'device' });
    expect(r.status).toBe(503);
    expect(r.json.error).toMatchObject({ code: 'upstream_unavailable', account: 'work', retry_after: 7 });
    expect(r.json.error.message).toContain('429');
    const cli = await d.cli(['login', 'work', '--flow', 'device']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/rate limited/);
    // Nothing pending: token requests still say "log in", not "a login is pending".
    expect((await d.request('POST', '/v1/token', { account: 'work' })).json.error.code).toBe('reauth_required');
  });

  it('gives up on a hanging device endpoint after http_timeout_ms, and a later login works', async () => {
    const { d } = await daemonWithAccount({ http_timeout_ms: 500 });
    as.device = { kind: 'hang' };
    const started = Date.now();
    const r = await d.request('POST', '/v1/accounts/work/login', { flow: 'device' });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(r.status).toBe(503);
    expect(r.json.error.message).toMatch(/did not answer in time/);

    as.device = { kind: 'ok', interval: 1 };
    as.script(['tokens']);
    const login = await startLogin(d, 'work', 'device');
    expect((await settled(d, login.id)).status).toBe('active');
  });

  it('asks the provider once for concurrent starts, including when that start fails', async () => {
    const { d } = await daemonWithAccount();
    as.deviceDelayMs = 300;
    as.device = { kind: '429' };
    const failures = await Promise.all([1, 2, 3].map(() => d.request('POST', '/v1/accounts/work/login', { flow: 'device' })));
    expect(failures.map((f) => f.status)).toEqual([503, 503, 503]);
    expect(as.deviceRequests).toBe(1);

    as.device = { kind: 'ok' };
    const logins = await Promise.all([1, 2, 3, 4, 5].map(() => d.request('POST', '/v1/accounts/work/login', { flow: 'device' })));
    expect(logins.map((l) => l.status)).toEqual([202, 202, 202, 202, 202]);
    expect(new Set(logins.map((l) => l.json.id)).size).toBe(1);
    expect(as.deviceRequests).toBe(2);
  });

  it('keeps the device code and tokens out of the database file and the log', async () => {
    const { d, home } = await daemonWithAccount();
    as.device = { kind: 'ok', interval: 1 };
    as.script(['pending', 'tokens']);
    const login = await startLogin(d, 'work', 'device');
    expect((await settled(d, login.id)).status).toBe('active');
    expect((await d.cli(['token', 'work'])).code).toBe(0);
    const data = path.join(home, 'data');
    const blob = fs
      .readdirSync(data)
      .filter((f) => f.startsWith('tokend.db'))
      .map((f) => fs.readFileSync(path.join(data, f)).toString('latin1'))
      .join('');
    expect(as.issued.length).toBeGreaterThanOrEqual(3); // device code, access and refresh token
    for (const secret of as.issued) {
      expect(blob).not.toContain(secret);
      expect(d.logs).not.toContain(secret);
    }
    expect(blob).toContain(login.id); // the login itself is there
  });
});
