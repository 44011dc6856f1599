/**
 * Cal.com Platform managed users end to end: the real daemon and CLI against a fake Cal.com
 * API v2 that keeps the documented refresh and force-refresh, rotation and replay rules, and
 * the 498 of an expired token (test/support/fake-calcom.ts). The test plays the platform: it
 * hands over the tokens it got when it created the managed user.
 */
import { describe, expect, it } from 'vitest';
import { sleep, startDaemon, tapEvents, waitFor } from './support/fake-as.js';
import {
  CAL_CLIENT_ID,
  CAL_CLIENT_SECRET,
  CAL_USER_ID,
  addCalArgs,
  calError,
  startFakeCalCom,
  type CalTokens,
} from './support/fake-calcom.js';
import { useDaemon, useServer } from './support/fixtures.js';
import { leaks } from './support/leaks.js';
import { atRest } from './support/views.js';

const cal = useServer(startFakeCalCom, { each: true, what: 'the fake Cal.com' });
// Each test starts tokend when its fake is set up, with its own settings.
const { t, start } = useDaemon({ lifetime: 'manual', launch: startDaemon, settings: { proactive_refresh: false, backoff_initial_ms: 50 } });
const startTokend = (settings: Record<string, unknown> = {}) => start({ settings });

function addCal(opts: { secret?: string; user?: number } = {}) {
  const args = addCalArgs(cal.url, opts.user);
  return opts.secret === '' ? t.d.cli(args) : t.d.cli([...args, '--client-secret-stdin'], opts.secret ?? CAL_CLIENT_SECRET);
}

/** The platform hands the managed user's tokens over. */
async function importTokens(tokens: CalTokens): Promise<void> {
  const { accessToken, refreshToken, accessTokenExpiresAt } = tokens;
  const r = await t.d.cli(['import', 'cal', '--tokens-stdin'], JSON.stringify({ accessToken, refreshToken, accessTokenExpiresAt }));
  expect(r.code, r.stderr).toBe(0);
}

async function tokenOf(): Promise<string> {
  const r = await t.d.cli(['token', 'cal']);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('Cal.com managed users', () => {
  it('checks the OAuth client at add without touching tokens, serves the imported tokens, and refreshes with rotation at expiry', async () => {
    await startTokend();
    const add = await addCal();
    expect(add.code, add.stderr).toBe(0);
    expect(add.stderr).toContain('Next: `tokend import cal --tokens-stdin`');
    expect(cal.stats).toMatchObject({ userLookups: 1, tokenCalls: 0 }); // checked, and no token was made or spent
    const login = await t.d.cli(['login', 'cal', '--flow', 'device']);
    expect(login.code).not.toBe(0);
    expect(login.stderr).toContain('has no interactive login; run `tokend import cal --tokens-stdin`');

    const platform = cal.createUserTokens();
    await importTokens(platform);
    expect(cal.stats.tokenCalls).toBe(0); // the access token still had 60 minutes: nothing to refresh
    expect(await tokenOf()).toBe(platform.accessToken);
    const json = JSON.parse((await t.d.cli(['token', 'cal', '--json'])).stdout);
    expect(json).toMatchObject({ token_type: 'Bearer', expires_at: new Date(platform.accessTokenExpiresAt).toISOString() });

    expect((await t.d.cli(['refresh', 'cal'])).code).toBe(0);
    const second = await tokenOf();
    expect(cal.isLive(second)).toBe(true);
    expect(cal.stats).toMatchObject({ refreshes: 1, refreshRefused: 0, forceRefreshes: 0 });
    // The refresh token's own expiry (a year) is recorded.
    const view = JSON.parse((await t.d.cli(['status', 'cal', '--json'])).stdout);
    expect(Date.parse(view.refresh_expires_at) - Date.now()).toBeGreaterThan(364 * 24 * 3_600_000);

    // A short-lived token (3 s), then past half its life: the next request refreshes. (Asked
    // for, not waited for after the check above: on a loaded machine a CLI takes seconds.)
    cal.accessTtlMs = 3_000;
    expect((await t.d.cli(['refresh', 'cal'])).code).toBe(0);
    await sleep(1_700);
    const third = await tokenOf();
    expect(third).not.toBe(second);
    expect(cal.isLive(third)).toBe(true);
    // Each refresh sent the newest refresh token: none was refused, none replayed.
    expect(cal.stats).toMatchObject({ refreshes: 3, refreshRefused: 0, replays: 0, forceRefreshes: 0, tokenCalls: 3 });
  });

  it('answers a 498 from the API with one refresh and one retry through the proxy', async () => {
    await startTokend();
    expect((await addCal()).code).toBe(0);
    await importTokens(cal.createUserTokens());
    expect(cal.stats.me).toBe(1); // the import proved the access token with /v2/me
    cal.expire(await tokenOf()); // Cal.com's clock says it expired; tokend's does not yet
    const r = await t.d.cli(['api', 'cal', '/me']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'success', data: { id: CAL_USER_ID } });
    expect(cal.stats).toMatchObject({ me: 3, me498: 1, refreshes: 1, forceRefreshes: 0 });
  });

  it('recovers a refused refresh token with force-refresh, and a replay of the platform’s old copy changes nothing for tokend', async () => {
    await startTokend();
    expect((await addCal()).code).toBe(0);
    const platform = cal.createUserTokens();
    await importTokens(platform);
    expect((await t.d.cli(['refresh', 'cal'])).code).toBe(0); // rotated: the platform's copy is dead

    // The platform replays its copy: refused (400), and nothing else is revoked.
    const replay = await fetch(`${cal.url}/v2/oauth/${CAL_CLIENT_ID}/refresh`, {
      method: 'POST',
      headers: { 'x-cal-secret-key': CAL_CLIENT_SECRET, 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken: platform.refreshToken }),
    });
    expect(replay.status).toBe(400);
    expect((await replay.json()).error.message).toBe('Invalid refresh token');
    expect(cal.stats.replays).toBe(1);
    expect((await t.d.cli(['refresh', 'cal'])).code).toBe(0);
    expect(cal.stats).toMatchObject({ refreshes: 2, forceRefreshes: 0 });

    // Someone force-refreshed the user elsewhere: tokend's refresh token is gone.
    const tap = await tapEvents(t.d.socket);
    cal.dropUserTokens();
    const r = await t.d.cli(['refresh', 'cal']);
    expect(r.code, r.stderr).toBe(0);
    expect(cal.stats).toMatchObject({ refreshes: 2, forceRefreshes: 1 });
    const recovered = await waitFor(() => tap.events.find((e) => e.type === 'token.recovered'), 'token.recovered');
    tap.close();
    expect(String(recovered.reason)).toContain('Invalid refresh token');
    expect(cal.isLive(await tokenOf())).toBe(true);
    expect((await t.d.cli(['refresh', 'cal'])).code).toBe(0); // with the refresh token the force-refresh gave
    expect(cal.stats).toMatchObject({ refreshes: 3, forceRefreshes: 1 });
  });

  it('refuses imported tokens Cal.com refuses without force-refreshing the user, and keeps the grant it had (exit 1)', async () => {
    await startTokend();
    expect((await addCal()).code).toBe(0);
    const platform = cal.createUserTokens();
    await importTokens(platform);
    const before = atRest((await t.d.request('GET', '/v1/accounts/cal')).json);
    const tap = await tapEvents(t.d.socket);
    const stale = { accessToken: 'cal-stale-at', refreshToken: 'cal-bogus-rt', accessTokenExpiresAt: Date.now() - 60_000 };
    const r = await t.d.cli(['import', 'cal', '--tokens-stdin'], JSON.stringify(stale));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refused the tokens imported for "cal" \(invalid_grant: .*Invalid refresh token/);
    expect(r.stderr).not.toContain('cal-bogus-rt');
    // The refresh was tried on the side; the recover step (which would end the platform's tokens) never ran.
    expect(cal.stats).toMatchObject({ refreshRefused: 1, forceRefreshes: 0 });
    expect(atRest((await t.d.request('GET', '/v1/accounts/cal')).json)).toEqual(before);
    expect(await tokenOf()).toBe(platform.accessToken);
    expect(cal.isLive(platform.accessToken)).toBe(true);
    await sleep(100);
    tap.close();
    expect(tap.events.map((e) => e.type)).not.toContain('account.reauth_required');
  });

  it('proves an imported access token with /v2/me: one Cal.com does not take, or another user’s, is refused and the grant kept; a good refresh token beside a refused one still imports', async () => {
    await startTokend();
    expect((await addCal()).code).toBe(0);
    const platform = cal.createUserTokens();
    await importTokens(platform);
    const before = atRest((await t.d.request('GET', '/v1/accounts/cal')).json);
    const inAnHour = Date.now() + 3_600_000;

    const unknown = await t.d.cli(
      ['import', 'cal', '--tokens-stdin'],
      JSON.stringify({ accessToken: 'cal-unknown-at', accessTokenExpiresAt: inAnHour }),
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('refused the tokens imported for "cal" (invalid_token');
    const other = cal.createUserTokens(CAL_USER_ID + 1);
    const stranger = await t.d.cli(
      ['import', 'cal', '--tokens-stdin'],
      JSON.stringify({ accessToken: other.accessToken, accessTokenExpiresAt: other.accessTokenExpiresAt }),
    );
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain(`managed user ${CAL_USER_ID + 1}'s, not ${CAL_USER_ID}'s`);
    expect(atRest((await t.d.request('GET', '/v1/accounts/cal')).json)).toEqual(before);
    expect(await tokenOf()).toBe(platform.accessToken);
    expect(cal.stats).toMatchObject({ me: 3, tokenCalls: 0 }); // each import checked, nothing spent

    const fresh = cal.createUserTokens();
    const r = await t.d.cli(
      ['import', 'cal', '--tokens-stdin'],
      JSON.stringify({ accessToken: 'cal-unknown-at', accessTokenExpiresAt: inAnHour, refreshToken: fresh.refreshToken }),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(cal.stats).toMatchObject({ me: 4, refreshes: 1, forceRefreshes: 0 });
    expect(cal.isLive(await tokenOf())).toBe(true);
  });

  it('needs the platform’s tokens again when refresh and force-refresh both fail (exit 3), within the attempt budget', async () => {
    await startTokend({ max_refreshes_per_minute: 4, backoff_initial_ms: 10 });
    expect((await addCal()).code).toBe(0);
    await importTokens(cal.createUserTokens());
    cal.dropUserTokens();
    cal.faults.add(
      'force-refresh',
      calError(404, 'NotFoundException', `User with ID ${CAL_USER_ID} is not part of this OAuth client.`),
      Infinity,
    );
    const r = await t.d.cli(['refresh', 'cal']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('tokend import cal --tokens-stdin');
    expect(r.stderr).toContain('is not part of this OAuth client');
    const answers = await Promise.all(Array.from({ length: 20 }, () => t.d.request('POST', '/v1/token', { account: 'cal' })));
    for (let i = 0; i < 20; i++) answers.push(await t.d.request('POST', '/v1/token', { account: 'cal' }));
    expect(answers.filter((a) => a.status === 200)).toEqual([]);
    expect(new Set(answers.map((a) => a.json.error.code))).toEqual(new Set(['reauth_required', 'rate_limited']));
    // One refresh and one force-refresh for `tokend refresh`, then force-refreshes up to the budget of 4 a minute.
    expect(cal.stats.tokenCalls).toBe(4);
  });

  it('does not force-refresh when the refresh fails for a while (500, 429): the grant is kept', async () => {
    await startTokend();
    expect((await addCal()).code).toBe(0);
    const platform = cal.createUserTokens();
    await importTokens(platform);
    cal.faults.add('refresh', { status: 500, body: { status: 'error', error: { code: 'InternalServerErrorException', message: 'boom' } } });
    const down = await t.d.cli(['refresh', 'cal']);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('HTTP 500');
    await sleep(150);
    cal.faults.add('refresh', calError(429, 'ThrottlerException', 'Too Many Requests', '/', { 'retry-after': '5' }));
    const limited = await t.d.request('POST', '/v1/accounts/cal/refresh');
    expect(limited.status).toBe(503);
    expect(limited.json.error.retry_after).toBeGreaterThanOrEqual(5);
    expect(cal.stats).toMatchObject({ refreshes: 0, forceRefreshes: 0 });
    expect(await tokenOf()).toBe(platform.accessToken); // still served while valid
  });

  it('refuses at add a wrong client secret, a managed user that is not the client’s, and a missing secret; saves nothing', async () => {
    await startTokend();
    const wrong = await addCal({ secret: 'not-the-secret' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('check --client-id and the client secret');
    expect(wrong.stderr).not.toContain('not-the-secret');
    const stranger = await addCal({ user: 999 });
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain('User with ID 999 is not part of this OAuth client');
    const none = await addCal({ secret: '' });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('--client-secret-stdin');
    expect(JSON.parse((await t.d.cli(['list', '--json'])).stdout).accounts).toEqual([]);
    expect(cal.stats.tokenCalls).toBe(0);
  });

  it('never writes the client secret or a token in clear to the database, config.json or the log', async () => {
    await startTokend();
    expect((await addCal()).code).toBe(0);
    await importTokens(cal.createUserTokens());
    for (let i = 0; i < 2; i++) expect((await t.d.cli(['refresh', 'cal'])).code).toBe(0);
    cal.dropUserTokens();
    expect((await t.d.cli(['refresh', 'cal'])).code).toBe(0); // refused, then force-refreshed
    await t.d.stop('SIGTERM');
    const secrets = [CAL_CLIENT_SECRET, ...cal.issued];
    expect(secrets.length).toBeGreaterThanOrEqual(9);
    expect(leaks(t.home, t.d.logs, secrets)).toEqual([]);
    expect(t.d.logs).toContain('recovered the grant without the user');
  });
});
