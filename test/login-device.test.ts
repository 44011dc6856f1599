/**
 * The device authorization grant (RFC 8628) end to end: the real daemon, the real CLI, the
 * real oidc-provider. The test plays the user by approving or denying the code in the IdP.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { settled, spawnCli, startDaemon, startLogin, tapEvents, waitFor } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';

describe('device login against a real OpenID Provider', () => {
  const idp = useIdp();
  const { t } = useDaemon({ lifetime: 'test', launch: startDaemon, account: { idp } });

  it('starts with --no-wait --json, becomes active once the code is approved, and then serves tokens', async () => {
    const tap = await tapEvents(t.d.socket);
    const login = await startLogin(t.d, 'work', 'device');
    expect(login).toMatchObject({ account: 'work', flow: 'device', status: 'pending', authorization_url: null, error: null });
    expect(login.user_code).toMatch(/^[A-Z0-9-]+$/);
    expect(login.verification_uri).toBe(`${idp.issuer}/device`);
    expect(login.verification_uri_complete).toContain(login.user_code);
    expect(Date.parse(login.expires_at) - Date.now()).toBeGreaterThan(100_000); // the IdP's 120 s

    // Before approval: no grant, so token requests say where to log in (409 login_pending).
    const early = await t.d.request('POST', '/v1/token', { account: 'work' });
    expect(early.status).toBe(409);
    expect(early.json.error).toMatchObject({ code: 'login_pending', account: 'work' });
    expect(early.json.error.login).toMatchObject({ id: login.id, user_code: login.user_code, verification_uri: login.verification_uri });
    expect(early.json.error.message).toContain(login.user_code);

    await idp.approveDevice(login.user_code);
    const done = await settled(t.d, login.id);
    expect(done).toMatchObject({ id: login.id, status: 'active', error: null });

    const tok = await t.d.cli(['token', 'work']);
    expect(tok.code).toBe(0);
    const access = tok.stdout.trim();
    expect((await idp.introspect(access)).active).toBe(true);
    expect((await t.d.cli(['refresh', 'work'])).code).toBe(0); // a refresh token came with it (offline_access)
    expect(idp.stats.replays).toBe(0);

    await waitFor(() => tap.events.some((e) => e.type === 'login.succeeded'), 'login.succeeded');
    tap.close();
    const mine = tap.events.filter((e) => e.type.startsWith('login.'));
    expect(mine.map((e) => e.type)).toEqual(['login.pending', 'login.succeeded']);
    expect(mine[0]).toMatchObject({ account: 'work', login_id: login.id, flow: 'device', user_code: login.user_code });
    // Events never carry a secret.
    for (const e of tap.events) expect(JSON.stringify(e)).not.toContain(access);
  });

  it('waits in the CLI, printing the URL and code, and exits 0 when signed in', async () => {
    const cli = spawnCli(['login', 'work', '--flow', 'device'], t.env);
    const code = await waitFor(() => /enter the code:\s+(\S+)\n/.exec(cli.stderr())?.[1], 'the user code on stderr');
    expect(cli.stderr()).toContain(`${idp.issuer}/device`);
    await waitFor(() => cli.stderr().includes('Waiting for the sign-in'), 'the waiting message');
    await idp.approveDevice(code);
    const r = await cli.done;
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('Signed in to "work"');
    expect((await t.d.cli(['token', 'work'])).code).toBe(0);
  });

  it('fails with access_denied when the user denies, exits 1 with the reason, and emits login.failed', async () => {
    const tap = await tapEvents(t.d.socket);
    const cli = spawnCli(['login', 'work', '--flow', 'device', '--json'], t.env);
    const code = await waitFor(() => /enter the code:\s+(\S+)\n/.exec(cli.stderr())?.[1], 'the user code on stderr');
    await idp.denyDevice(code);
    const r = await cli.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/failed: .*access_denied/);
    const final = JSON.parse(r.stdout);
    expect(final).toMatchObject({ status: 'failed', error: { code: 'access_denied' } });
    await waitFor(() => tap.events.some((e) => e.type === 'login.failed'), 'login.failed');
    tap.close();
    expect(tap.events.find((e) => e.type === 'login.failed')).toMatchObject({
      account: 'work',
      login_id: final.id,
      status: 'failed',
      error: 'access_denied',
    });
    // Nothing was installed: still no grant.
    const tok = await t.d.request('POST', '/v1/token', { account: 'work' });
    expect(tok.json.error.code).toBe('reauth_required');
  });

  it('leaves a working grant in place when a new login fails, and serves it meanwhile', async () => {
    const issued = await idp.issueRefreshToken('conf');
    expect((await t.d.cli(['import', 'work', '--refresh-token-stdin'], issued.refresh_token)).code).toBe(0);
    const before = (await t.d.cli(['token', 'work'])).stdout.trim();

    const login = await startLogin(t.d, 'work', 'device');
    // A usable grant is served while a login is pending (no 409).
    const during = await t.d.request('POST', '/v1/token', { account: 'work' });
    expect(during.status).toBe(200);
    expect(during.json.access_token).toBe(before);

    await idp.denyDevice(login.user_code);
    expect(await settled(t.d, login.id)).toMatchObject({ status: 'failed', error: { code: 'access_denied' } });

    const after = await t.d.cli(['token', 'work']);
    expect(after.code).toBe(0);
    expect(after.stdout.trim()).toBe(before);
    expect((await t.d.cli(['refresh', 'work'])).code).toBe(0); // the old refresh token still works
  });

  it('joins a pending login: two concurrent `tokend login` get one device code', async () => {
    const [a, b] = await Promise.all([startLogin(t.d, 'work', 'device'), startLogin(t.d, 'work', 'device')]);
    expect(b.id).toBe(a.id);
    expect(b.user_code).toBe(a.user_code);
    const third = await t.d.request('POST', '/v1/accounts/work/login', { flow: 'device' });
    expect(third.status).toBe(202);
    expect(third.json.id).toBe(a.id);
    // The joining CLI says so.
    const joined = await t.d.cli(['login', 'work', '--flow', 'device', '--no-wait']);
    expect(joined.code).toBe(0);
    expect(joined.stderr).toContain('already in progress');
    expect(joined.stderr).toContain(a.user_code);
    await idp.approveDevice(a.user_code);
    expect((await settled(t.d, a.id)).status).toBe('active');
    // Finished: the next login is a new one.
    const next = await startLogin(t.d, 'work', 'device');
    expect(next.id).not.toBe(a.id);
    expect(next.user_code).not.toBe(a.user_code);
  });

  it('keeps the login across a restart: a pending login goes on polling, a finished one keeps its status', async () => {
    const first = await startLogin(t.d, 'work', 'device');
    await idp.approveDevice(first.user_code);
    expect((await settled(t.d, first.id)).status).toBe('active');
    const pending = await startLogin(t.d, 'work', 'device');

    await t.d.stop('SIGKILL');
    await t.d.start();
    const r = await t.d.request('GET', `/v1/logins/${pending.id}`);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ id: pending.id, status: 'pending', error: null, user_code: pending.user_code });
    expect((await t.d.request('GET', `/v1/logins/${first.id}`)).json.status).toBe('active');
    expect((await t.d.cli(['token', 'work'])).code).toBe(0); // the grant from the first login
    // Denied after the restart: the polling daemon is the new one.
    await idp.denyDevice(pending.user_code);
    expect(await settled(t.d, pending.id)).toMatchObject({ status: 'failed', error: { code: 'access_denied' } });

    // A clean stop keeps it too.
    const again = await startLogin(t.d, 'work', 'device');
    expect(await t.d.stop('SIGTERM')).toBe(0);
    await t.d.start();
    expect((await t.d.request('GET', `/v1/logins/${again.id}`)).json.status).toBe('pending');
    await idp.approveDevice(again.user_code);
    expect((await settled(t.d, again.id)).status).toBe('active');
    expect((await t.d.request('GET', '/v1/logins/no-such-login')).status).toBe(404);
  });

  it('never writes the device code or a token in clear to the database or the log', async () => {
    const login = await startLogin(t.d, 'work', 'device');
    await idp.approveDevice(login.user_code);
    expect((await settled(t.d, login.id)).status).toBe('active');
    const access = (await t.d.cli(['token', 'work'])).stdout.trim();
    const refresh = idp.issuedRefreshTokens().at(-1)!;
    const data = path.join(t.home, 'data');
    const files = fs.readdirSync(data).filter((f) => f.startsWith('tokend.db'));
    const blob = Buffer.concat(files.map((f) => fs.readFileSync(path.join(data, f)))).toString('latin1');
    for (const secret of [access, refresh]) {
      expect(blob).not.toContain(secret);
      expect(t.d.logs).not.toContain(secret);
    }
  });
});

describe('device login expiry', () => {
  const idp = useIdp({ deviceCodeTtl: 2 });
  const { t } = useDaemon({ lifetime: 'test', launch: startDaemon, account: { idp } });

  it('becomes expired when nobody approves the code within expires_in, and the waiting CLI exits 1', async () => {
    const tap = await tapEvents(t.d.socket);
    const cli = spawnCli(['login', 'work', '--flow', 'device'], t.env);
    const r = await cli.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/login to "work" expired/);
    const failed = await waitFor(() => tap.events.find((e) => e.type === 'login.failed'), 'login.failed');
    tap.close();
    expect(failed).toMatchObject({ account: 'work', status: 'expired', error: 'expired_token' });
    const login = (await t.d.request('GET', `/v1/logins/${failed.login_id}`)).json;
    expect(login).toMatchObject({ status: 'expired', error: { code: 'expired_token' } });
    expect((await t.d.request('POST', '/v1/token', { account: 'work' })).json.error.code).toBe('reauth_required');
  });
});
