/**
 * Real-Debrid end to end: the real daemon and CLI against a fake Real-Debrid that keeps the
 * documented "Workflow for opensource apps" (test/support/fake-real-debrid.ts). The test plays
 * the user by approving the code at the fake.
 */
import { describe, expect, it } from 'vitest';
import { settled, sleep, spawnCli, startDaemon, startLogin, tapEvents, waitFor } from './support/fake-as.js';
import { RD_DEVICE_GRANT, RD_OPEN_SOURCE_CLIENT, rdError, startFakeRealDebrid } from './support/fake-real-debrid.js';
import { useDaemon, useServer } from './support/fixtures.js';
import { leaks } from './support/leaks.js';
import { atRest } from './support/views.js';

const rd = useServer(startFakeRealDebrid, { each: true, what: 'the fake Real-Debrid' });
// Each test starts tokend when its fake is set up, with its own settings.
const { t, start } = useDaemon({ lifetime: 'manual', launch: startDaemon, settings: { proactive_refresh: false, backoff_initial_ms: 50 } });

async function addRd(settings: Record<string, unknown> = {}): Promise<void> {
  await start({ settings });
  const r = await t.d.cli(['add', 'rd', '--preset', 'real-debrid', '--base-url', rd.url]);
  expect(r.code, r.stderr).toBe(0);
}

/**
 * What an app (a game launcher) keeps after its own device login with the open-source client
 * id: the per-user client and the tokens, the way it stores them in its JSON file.
 */
async function deviceLoginAsAnApp(): Promise<{ client_id: string; client_secret: string; refresh_token: string }> {
  const get = async (path: string) => (await fetch(`${rd.url}/oauth/v2/${path}`)).json();
  const code = await get(`device/code?client_id=${RD_OPEN_SOURCE_CLIENT}&new_credentials=yes`);
  rd.approve(code.user_code);
  const client = await get(`device/credentials?client_id=${RD_OPEN_SOURCE_CLIENT}&code=${code.device_code}`);
  const form = new URLSearchParams({
    client_id: client.client_id,
    client_secret: client.client_secret,
    code: code.device_code,
    grant_type: RD_DEVICE_GRANT,
  });
  const tokens = await (await fetch(`${rd.url}/oauth/v2/token`, { method: 'POST', body: form })).json();
  return { client_id: client.client_id, client_secret: client.client_secret, refresh_token: tokens.refresh_token };
}

/** A device login approved at the fake, through the API. */
async function loggedIn(): Promise<void> {
  const login = await startLogin(t.d, 'rd', 'device');
  rd.approve(login.user_code);
  expect((await settled(t.d, login.id)).status).toBe('active');
}

describe('Real-Debrid', () => {
  it('logs in with a device code approved at Real-Debrid, serves the token, refreshes it with the per-user client, and calls the API with Bearer', async () => {
    // Long enough that a loaded machine does not see the login's token age past half its life
    // before the first `token`; the sleep below takes it past that half.
    rd.accessTtl = 8;
    await addRd();
    expect(rd.stats.time).toBe(1); // add checked that base_url reaches the API, and made no device code
    expect(rd.stats.deviceCodes).toBe(0);

    const cli = spawnCli(['login', 'rd'], t.env);
    const code = await waitFor(() => /enter the code:\s+(\S+)\n/.exec(cli.stderr())?.[1], 'the user code on stderr');
    expect(cli.stderr()).toContain(`${rd.url}/device`);
    await waitFor(() => rd.stats.pendingAnswers >= 2, 'two "not yet" answers (a 403)');
    rd.approve(code);
    const done = await cli.done;
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toContain('Signed in to "rd"');
    // One device code, polled every `interval` (5 units), one token exchange with the new credentials.
    expect(rd.stats).toMatchObject({ deviceCodes: 1, exchanges: 1, refreshes: 0, refused: 0 });
    const gaps = rd.stats.pollTimes.slice(1).map((at, i) => at - rd.stats.pollTimes[i]);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(450);

    const first = JSON.parse((await t.d.cli(['token', 'rd', '--json'])).stdout);
    expect(first.token_type).toBe('Bearer');
    expect(rd.isLive(first.access_token)).toBe(true);
    // The per-user credentials are the account's secrets: never shown.
    const status = (await t.d.cli(['status', 'rd', '--json'])).stdout;
    for (const s of rd.issued) expect(status).not.toContain(s);

    // Less than half of the 8 s lifetime is left (200 ms past its middle, counted from the token's
    // own expiry, not from here: the CLIs above took some of it): the next request refreshes.
    await sleep(Math.max(0, Date.parse(first.expires_at) - 4_000 - Date.now()) + 200);
    const second = (await t.d.cli(['token', 'rd'])).stdout.trim();
    expect(second).not.toBe(first.access_token);
    expect(rd.isLive(second)).toBe(true);
    expect(rd.stats).toMatchObject({ exchanges: 1, refreshes: 1, refused: 0, replays: 0, tokenRequests: 2 });

    const api = await t.d.cli(['api', 'rd', '/user']);
    expect(api.code, api.stderr).toBe(0);
    expect(JSON.parse(api.stdout)).toMatchObject({ username: 'fake-user' });
    const sent = rd.stats.authorizations.at(-1)!;
    expect(sent).toMatch(/^Bearer rdat-/);
    expect(rd.isLive(sent.slice('Bearer '.length))).toBe(true);
  });

  it('sends the newest refresh token every time when Real-Debrid rotates, and keeps the one it has when it does not', async () => {
    await addRd();
    await loggedIn();
    for (let i = 0; i < 3; i++) expect((await t.d.cli(['refresh', 'rd'])).code).toBe(0);
    expect(rd.stats).toMatchObject({ refreshes: 3, replays: 0, refused: 0 });

    rd.rotate = false;
    for (let i = 0; i < 3; i++) expect((await t.d.cli(['refresh', 'rd'])).code).toBe(0);
    expect(rd.stats).toMatchObject({ refreshes: 6, replays: 0, refused: 0 });
    expect(rd.isLive((await t.d.cli(['token', 'rd'])).stdout.trim())).toBe(true);
  });

  it('needs the device login again when Real-Debrid refuses the grant (exit 3), and stops asking', async () => {
    await addRd();
    await loggedIn();
    const tap = await tapEvents(t.d.socket);
    rd.revokeApp(); // the user revoked the app's rights at Real-Debrid
    const r = await t.d.cli(['refresh', 'rd']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('tokend login rd');
    expect(r.stderr).toMatch(/bad_token|permission_denied/);
    const asked = rd.stats.tokenRequests;
    for (let i = 0; i < 10; i++) {
      const tok = await t.d.request('POST', '/v1/token', { account: 'rd' });
      expect(tok.status).toBe(409);
      expect(tok.json.error.code).toBe('reauth_required');
    }
    expect(rd.stats.tokenRequests).toBe(asked); // no recover step: no more calls
    expect((await t.d.cli(['token', 'rd'])).code).toBe(3);
    await waitFor(() => tap.events.some((e) => e.type === 'account.reauth_required'), 'account.reauth_required');
    tap.close();
    expect(tap.events.some((e) => e.type === 'token.recovered')).toBe(false);
    // A new login makes it work again.
    await loggedIn();
    expect((await t.d.cli(['token', 'rd'])).code).toBe(0);
  });

  it('polls through slow_down (error_code 5), too many requests (34, Retry-After) and the documented error shape, then signs in', async () => {
    await addRd();
    rd.pending = rdError(400, 'bad_token', 8); // "not yet" as the documented error shape, not a 403
    rd.faults.add('device/credentials', rdError(400, 'slow_down', 5));
    rd.faults.add('device/credentials', rdError(429, 'too_many_requests', 34, { 'retry-after': '2' }));
    const login = await startLogin(t.d, 'rd', 'device');
    await waitFor(() => rd.stats.pendingAnswers >= 1, 'a poll after the faults');
    rd.approve(login.user_code);
    expect((await settled(t.d, login.id)).status).toBe('active');
    const at = rd.stats.pollTimes;
    // slow_down: 5 more units (500 ms) for good, so ≥ 1 s; then Retry-After 2 s; then a doubled interval.
    expect(at[1] - at[0]).toBeGreaterThanOrEqual(950);
    expect(at[2] - at[1]).toBeGreaterThanOrEqual(1_950);
    expect(at[3] - at[2]).toBeGreaterThanOrEqual(1_950);
    expect(rd.stats).toMatchObject({ deviceCodes: 1, exchanges: 1 });
  });

  it('keeps the grant through a 503 and a 429 with Retry-After, and says when to try again', async () => {
    await addRd();
    await loggedIn();
    const before = (await t.d.cli(['token', 'rd'])).stdout.trim();
    rd.faults.add('token', { status: 503, body: 'maintenance' });
    const down = await t.d.cli(['refresh', 'rd']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/unavailable.*HTTP 503/);
    rd.faults.add('token', rdError(429, 'too_many_requests', 34, { 'retry-after': '7' }));
    await sleep(150); // past the 50 ms backoff
    const limited = await t.d.request('POST', '/v1/accounts/rd/refresh');
    expect(limited.status).toBe(503);
    expect(limited.json.error.retry_after).toBeGreaterThanOrEqual(7);
    // The cached token is still served, and the grant is intact.
    expect((await t.d.cli(['token', 'rd'])).stdout.trim()).toBe(before);
    expect(rd.stats).toMatchObject({ refused: 0, replays: 0 });
  });

  it('refuses a refresh token imported without the client it was issued to, and says how to import it with its client', async () => {
    await addRd();
    const add = await t.d.cli(['status', 'rd']);
    expect(add.stderr + add.stdout).not.toContain('--refresh-token-stdin');
    const r = await t.d.cli(['import', 'rd', '--refresh-token-stdin'], 'rdrt-from-somewhere-else');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('tokend import rd --tokens-stdin');
    expect(r.stderr).toContain('nothing was changed');
    expect(rd.stats.tokenRequests).toBe(0); // nothing was sent without the credentials
    expect((await t.d.request('GET', '/v1/accounts/rd')).json.status).toBe('no_grant');
  });

  it('imports what an app holds from its own device login ({client_id, client_secret, refresh_token}), proven and refreshed with that client; refused ones change nothing', async () => {
    await addRd();
    await loggedIn();
    const before = atRest((await t.d.request('GET', '/v1/accounts/rd')).json);
    const served = (await t.d.cli(['token', 'rd'])).stdout.trim();
    const launcher = await deviceLoginAsAnApp();

    const wrong = await t.d.cli(['import', 'rd', '--tokens-stdin'], JSON.stringify({ ...launcher, client_secret: 'not-the-secret' }));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('refused the tokens imported for "rd"');
    expect(wrong.stderr).not.toContain(launcher.refresh_token);
    expect(atRest((await t.d.request('GET', '/v1/accounts/rd')).json)).toEqual(before);
    expect((await t.d.cli(['token', 'rd'])).stdout.trim()).toBe(served);

    // An access token alone is proven with GET /rest/1.0/user, which spends nothing.
    const stale = await t.d.cli(
      ['import', 'rd', '--tokens-stdin'],
      JSON.stringify({ access_token: 'rdat-nobody-issued', expires_at: Date.now() + 3_600_000 }),
    );
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain('refused the tokens imported for "rd" (invalid_token');
    expect(rd.stats.authorizations.at(-1)).toBe('Bearer rdat-nobody-issued');
    expect(atRest((await t.d.request('GET', '/v1/accounts/rd')).json)).toEqual(before);

    const ok = await t.d.cli(['import', 'rd', '--tokens-stdin'], JSON.stringify(launcher));
    expect(ok.code, ok.stderr).toBe(0);
    const token = (await t.d.cli(['token', 'rd'])).stdout.trim();
    expect(token).not.toBe(served);
    expect(rd.isLive(token)).toBe(true);
    // Refreshed with the launcher's client: Real-Debrid takes a refresh token from its own client only.
    expect((await t.d.cli(['refresh', 'rd'])).code).toBe(0);
    expect(rd.stats).toMatchObject({ replays: 0 });
    const status = (await t.d.cli(['status', 'rd', '--json'])).stdout;
    for (const s of [launcher.client_secret, launcher.refresh_token]) expect(status).not.toContain(s);
  });

  it("logs in with an app's own registered client id and secret through the device flow without new_credentials", async () => {
    const app = rd.registerApp();
    await start({ settings: {} });
    const add = await t.d.cli(
      ['add', 'rd', '--preset', 'real-debrid', '--base-url', rd.url, '--client-id', app.client_id, '--client-secret-stdin'],
      app.client_secret,
    );
    expect(add.code, add.stderr).toBe(0);
    await loggedIn();
    // The mobile apps' workflow: no per-user credentials minted, the token endpoint polled with the app's client.
    expect(rd.stats).toMatchObject({ deviceCodes: 1, newCredentials: 0, credentialPolls: 0, exchanges: 1 });
    expect(rd.clients()).toEqual([app.client_id]);
    expect(rd.isLive((await t.d.cli(['token', 'rd'])).stdout.trim())).toBe(true);
    expect((await t.d.cli(['refresh', 'rd'])).code).toBe(0);
    expect(rd.stats).toMatchObject({ refreshes: 1, refused: 0 });
  });

  it('disables the access token at Real-Debrid on logout', async () => {
    await addRd();
    await loggedIn();
    const token = (await t.d.cli(['token', 'rd'])).stdout.trim();
    expect((await t.d.cli(['logout', 'rd'])).code).toBe(0);
    expect(rd.stats.disabled).toBe(1);
    expect(rd.isLive(token)).toBe(false);
  });

  it('never writes a device code, the per-user credentials or a token in clear to the database, config.json or the log', async () => {
    await addRd();
    await loggedIn();
    for (let i = 0; i < 2; i++) expect((await t.d.cli(['refresh', 'rd'])).code).toBe(0);
    rd.revokeApp();
    expect((await t.d.cli(['refresh', 'rd'])).code).toBe(3); // an error message that could have leaked
    await t.d.stop('SIGTERM');
    expect(rd.issued.length).toBeGreaterThanOrEqual(9);
    expect(leaks(t.home, t.d.logs, rd.issued)).toEqual([]);
    expect(t.d.logs).toContain('token refreshed');
  });
});
