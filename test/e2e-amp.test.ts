/**
 * Blockstream AMP end to end: the real daemon and CLI against a fake AMP API that keeps the
 * documented obtain_token and `Authorization: token …` (test/support/fake-amp.ts). AMP has
 * no refresh token: every new token is obtained again with the stored password.
 */
import { describe, expect, it } from 'vitest';
import { sleep, startDaemon, waitFor } from './support/fake-as.js';
import { AMP_PASSWORD, AMP_USER, startFakeAmp } from './support/fake-amp.js';
import { useDaemon, useServer } from './support/fixtures.js';
import { leaks } from './support/leaks.js';

const amp = useServer(startFakeAmp, { each: true, what: 'the fake AMP' });
// Each test starts tokend when its fake is set up, with its own settings.
const { t, start } = useDaemon({ lifetime: 'manual', launch: startDaemon, settings: { proactive_refresh: false, backoff_initial_ms: 50 } });
const startTokend = (settings: Record<string, unknown> = {}) => start({ settings });

function addAmp(password = AMP_PASSWORD, extra: string[] = [], name = 'amp') {
  return t.d.cli(['add', name, '--preset', 'amp', '--base-url', amp.url, '--username', AMP_USER, '--password-stdin', ...extra], password);
}

async function tokenOf(): Promise<string> {
  const r = await t.d.cli(['token', 'amp']);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('AMP', () => {
  it('refuses an imported refresh token (AMP issues none) and keeps the token it has; no hint suggests an import', async () => {
    await startTokend();
    const add = await addAmp();
    expect(add.code, add.stderr).toBe(0);
    expect(add.stderr).not.toContain('tokend import');
    const before = await tokenOf();
    const r = await t.d.cli(['import', 'amp', '--refresh-token-stdin'], 'amp-refresh-token-from-nowhere');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('refused the tokens imported for "amp"');
    expect(r.stderr).toContain('nothing was changed');
    expect(await tokenOf()).toBe(before);
    expect(amp.stats.obtains).toBe(1); // the password was not used to obtain another
    const logout = await t.d.cli(['logout', 'amp']);
    expect(logout.code).toBe(0);
    const status = await t.d.cli(['status', 'amp']);
    expect(status.stderr + status.stdout).not.toContain('tokend import');
  });

  it('obtains the first token at add, serves it with the `token` scheme and its JWT expiry, and obtains again at expiry', async () => {
    // 8 s (really 7 to 8: the JWT's iat is in whole seconds), so the first token is still the
    // one served when the API call is made on a loaded machine.
    amp.tokenTtl = 8;
    await startTokend();
    const add = await addAmp();
    expect(add.code, add.stderr).toBe(0);
    expect(add.stderr).toContain('Next: `tokend token amp`');
    expect(amp.stats).toMatchObject({ obtains: 1, obtainRefused: 0 });

    const first = JSON.parse((await t.d.cli(['token', 'amp', '--json'])).stdout);
    expect(first.token_type).toBe('token');
    expect(first.expires_in).toBeGreaterThan(0);
    expect(first.expires_in).toBeLessThanOrEqual(8); // from the JWT's exp − iat
    expect(amp.isLive(first.access_token)).toBe(true);
    expect(amp.stats.obtains).toBe(1); // served from what add obtained

    const api = await t.d.cli(['api', 'amp', '/assets']);
    expect(api.code, api.stderr).toBe(0);
    expect(JSON.parse(api.stdout)[0]).toMatchObject({ ticker: 'FAKE' });
    expect(amp.stats.authorizations.at(-1)).toBe(`token ${first.access_token}`);
    expect(amp.stats.apiRefused).toBe(0);

    await sleep(4_200); // less than half of the 8 s lifetime left: the next request obtains anew
    const second = await tokenOf();
    expect(second).not.toBe(first.access_token);
    expect(amp.isLive(second)).toBe(true);
    expect(amp.stats).toMatchObject({ obtains: 2, refreshCalls: 0 });
    const view = JSON.parse((await t.d.cli(['status', 'amp', '--json'])).stdout);
    expect(view).toMatchObject({ status: 'active', has_password: true, has_refresh_token: false, username: AMP_USER });
  });

  it('with --refresh-with-token presents the current token first, and obtains with the password when AMP refuses that', async () => {
    // Renewals are asked for (`tokend refresh`) rather than waited for: the token presented
    // is surely live however slow the machine (it has most of its 60 s left), and the test
    // waits for nothing.
    amp.tokenTtl = 60;
    amp.refreshEndpoint = true;
    await startTokend();
    expect((await addAmp(AMP_PASSWORD, ['--refresh-with-token'])).code).toBe(0);
    const first = await tokenOf();
    expect((await t.d.cli(['refresh', 'amp'])).code).toBe(0);
    const second = await tokenOf();
    expect(second).not.toBe(first);
    expect(amp.stats).toMatchObject({ obtains: 1, refreshCalls: 1, refreshes: 1 });

    amp.refreshEndpoint = false; // the unconfirmed endpoint is not there (404)
    expect((await t.d.cli(['refresh', 'amp'])).code).toBe(0);
    const third = await tokenOf();
    expect(third).not.toBe(second);
    expect(amp.isLive(third)).toBe(true);
    expect(amp.stats).toMatchObject({ obtains: 2, refreshCalls: 2, refreshes: 1 });
  });

  it('refuses a wrong password at add; when the password changes at AMP, says how to fix it until `tokend set --password-stdin`', async () => {
    amp.tokenTtl = 2;
    await startTokend();
    const wrong = await addAmp('not-the-password');
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('check --username and the password');
    expect(wrong.stderr).not.toContain('not-the-password');
    expect(JSON.parse((await t.d.cli(['list', '--json'])).stdout).accounts).toEqual([]);

    expect((await addAmp()).code).toBe(0);
    amp.setPassword('a new password');
    await sleep(1_200);
    const refused = await t.d.cli(['token', 'amp']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('tokend set amp --password-stdin');
    expect(refused.stderr).toContain('Unable to log in with provided credentials');
    expect(refused.stderr).not.toContain(AMP_PASSWORD);

    const set = await t.d.cli(['set', 'amp', '--password-stdin'], 'a new password');
    expect(set.code, set.stderr).toBe(0);
    expect(amp.isLive(await tokenOf())).toBe(true);
  });

  it('takes a 429 with Retry-After from obtain_token as a wait, not a wrong password', async () => {
    await startTokend();
    expect((await addAmp()).code).toBe(0);
    amp.faults.add('obtain_token', { status: 429, body: { detail: 'Request was throttled.' }, headers: { 'retry-after': '6' } });
    const r = await t.d.request('POST', '/v1/accounts/amp/refresh');
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('upstream_unavailable');
    expect(r.json.error.retry_after).toBeGreaterThanOrEqual(6);
  });

  it('costs at most the attempt budget a minute when AMP keeps refusing the password', async () => {
    amp.tokenTtl = 2;
    await startTokend({ max_refreshes_per_minute: 4, backoff_initial_ms: 10 });
    expect((await addAmp()).code).toBe(0);
    amp.setPassword('changed elsewhere');
    await sleep(1_200);
    const before = amp.stats.obtainCalls;
    const answers = [];
    for (let i = 0; i < 30; i++) {
      answers.push(await t.d.request('POST', '/v1/token', { account: 'amp' }));
      await sleep(20);
    }
    expect(answers.filter((a) => a.status === 200)).toEqual([]);
    expect(answers.some((a) => a.json.error.code === 'rate_limited')).toBe(true);
    expect(amp.stats.obtainCalls - before).toBeLessThanOrEqual(4);
    expect(amp.stats.obtainCalls - before).toBeGreaterThanOrEqual(2);
  });

  it('a refused password keeps one code, 502 provider_rejected (with retry_after while backing off); the account is refresh_failing, `tokend status` exits 1', async () => {
    amp.tokenTtl = 1;
    await startTokend({ backoff_initial_ms: 60_000, backoff_max_ms: 60_000 });
    expect((await addAmp()).code).toBe(0);
    amp.tokenTtl = 3600;
    expect((await addAmp(AMP_PASSWORD, [], 'amp-long')).code).toBe(0);
    amp.setPassword('changed elsewhere');
    await sleep(1_200); // amp's token is dead; amp-long's lives an hour

    const first = await t.d.request('POST', '/v1/token', { account: 'amp' });
    expect(first.status).toBe(502);
    expect(first.json.error).toMatchObject({ code: 'provider_rejected', account: 'amp', retry_after: expect.any(Number) });
    expect(first.json.error.message).toContain('tokend set amp --password-stdin');
    // The same cause while the backoff lasts: the same code, with the wait.
    for (const again of [
      await t.d.request('POST', '/v1/token', { account: 'amp' }),
      await t.d.request('POST', '/v1/accounts/amp/refresh'),
    ]) {
      expect(again.status).toBe(502);
      expect(again.json.error).toMatchObject({ code: 'provider_rejected', account: 'amp' });
      expect(again.json.error.retry_after).toBeGreaterThan(0);
      expect(again.headers['retry-after']).toBe(String(again.json.error.retry_after));
    }
    expect(amp.stats.obtainRefused).toBe(1); // the backoff asked AMP nothing

    const view = (await t.d.request('GET', '/v1/accounts/amp')).json;
    expect(view).toMatchObject({
      status: 'refresh_failing',
      last_error: expect.stringContaining('Unable to log in with provided credentials'),
    });
    expect(Date.parse(view.retry_at)).toBeGreaterThan(Date.now());
    const status = await t.d.cli(['status', 'amp']);
    expect(status.code, status.stderr).toBe(1);
    expect(status.stdout).toMatch(/status: +refresh_failing/);
    expect(status.stdout).toMatch(/retry at: +\S+ \(in \d+ s\)/);
    expect(status.stderr).toContain('cannot get a token now');
    expect(status.stderr).not.toContain('logs in');
    const json = await t.d.cli(['status', 'amp', '--json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ status: 'refresh_failing', retry_at: view.retry_at });

    // A token valid now is active, though its last refresh failed (which the view says).
    expect((await t.d.request('POST', '/v1/accounts/amp-long/refresh')).json.error.code).toBe('provider_rejected');
    const long = (await t.d.request('GET', '/v1/accounts/amp-long')).json;
    expect(long).toMatchObject({ status: 'active', last_error: expect.stringContaining('Unable to log in') });
    expect(long.retry_at).toEqual(expect.any(String));
    expect((await t.d.cli(['status', 'amp-long'])).code).toBe(0);

    // The right password: active again, nothing left of the failure.
    expect((await t.d.cli(['set', 'amp', '--password-stdin'], 'changed elsewhere')).code).toBe(0);
    expect(amp.isLive(await tokenOf())).toBe(true);
    expect((await t.d.request('GET', '/v1/accounts/amp')).json).toMatchObject({ status: 'active', last_error: null, retry_at: null });
    expect((await t.d.cli(['status', 'amp'])).code).toBe(0);
  });

  it('an AMP outage makes the account refresh_failing (503 upstream_unavailable) until a token is obtained again', async () => {
    amp.tokenTtl = 1;
    await startTokend();
    expect((await addAmp()).code).toBe(0);
    await sleep(1_200);
    amp.faults.add('obtain_token', { status: 500, body: { detail: 'Internal server error.' } });
    const down = await t.d.request('POST', '/v1/token', { account: 'amp' });
    expect(down.json.error).toMatchObject({ code: 'upstream_unavailable', retry_after: expect.any(Number) });
    expect((await t.d.request('GET', '/v1/accounts/amp')).json).toMatchObject({
      status: 'refresh_failing',
      last_error: expect.stringContaining('500'),
    });
    expect((await t.d.cli(['status', 'amp'])).code).toBe(1);
    // The fault answered once; after the (50 ms) backoff AMP obtains again.
    await waitFor(async () => (await t.d.request('POST', '/v1/token', { account: 'amp' })).status === 200, 'a token after the outage');
    expect((await t.d.request('GET', '/v1/accounts/amp')).json).toMatchObject({ status: 'active', last_error: null });
  });

  it('never writes the password or a token in clear to the database, config.json or the log', async () => {
    amp.tokenTtl = 2;
    await startTokend();
    expect((await addAmp()).code).toBe(0);
    await sleep(1_200);
    await tokenOf();
    amp.setPassword('changed elsewhere');
    expect((await t.d.cli(['refresh', 'amp'])).code).toBe(1); // an error message that could have leaked
    await t.d.stop('SIGTERM');
    const secrets = [AMP_PASSWORD, ...amp.issued];
    expect(secrets.length).toBeGreaterThanOrEqual(3);
    expect(leaks(t.home, t.d.logs, secrets)).toEqual([]);
    expect(t.d.logs).toContain('token refreshed');
  });
});
