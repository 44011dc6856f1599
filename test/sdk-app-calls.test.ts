/**
 * The SDK calls apps make around their own API calls (issue 24, part 2), against real
 * daemons: `refresh(account, { ifToken })` and `reject(account, token)` storms against the
 * real oidc-provider (counted at its token endpoint), `importTokens` in the forms apps hold
 * tokens, `recover` against the fake Cal.com and AMP, and what `info` says of a grant's times.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { importBody } from '../src/protocol/import-tokens.js';
import { Tokend, TokendError } from '../src/sdk/index.js';
import { putConfAccount, postConfGrant } from './support/daemon.js';
import { AMP_PASSWORD, AMP_USER, startFakeAmp } from './support/fake-amp.js';
import { startDaemon } from './support/fake-as.js';
import { addCalArgs, CAL_CLIENT_SECRET, startFakeCalCom } from './support/fake-calcom.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';
import { rejectionOf } from './support/rejection.js';

const STORM = 100;
const times = <T>(n: number, fn: (i: number) => Promise<T>) => Promise.all(Array.from({ length: n }, (_, i) => fn(i)));

describe('refresh({ ifToken }) and reject() against the real IdP', () => {
  const idp = useIdp();
  // The daemon's own attempt budget (30 a minute), the one storms used to exhaust; no timer refreshes.
  const { t } = useDaemon({ lifetime: 'test', launch: startDaemon, settings: { max_refreshes_per_minute: 30, proactive_refresh: false } });
  const sdk = () => new Tokend({ env: t.env, userAgent: 'sdk-app-calls' });

  async function grantedAccount(): Promise<{ tokend: Tokend; old: string }> {
    await putConfAccount(t.d, idp.issuer);
    await postConfGrant(t.d, idp);
    const tokend = sdk();
    const old = (await tokend.token('work')).access_token;
    idp.resetStats();
    return { tokend, old };
  }

  it('100 concurrent refreshes with the refused token cost one provider refresh, and all get the same new token; stragglers none', async () => {
    const { tokend, old } = await grantedAccount();
    const storm = await times(STORM, () => tokend.refresh('work', { ifToken: old }));
    expect(idp.stats.refreshes).toBe(1);
    const fresh = storm[0]!.access_token!;
    expect(fresh).not.toBe(old);
    expect(new Set(storm.map((r) => r.access_token))).toEqual(new Set([fresh]));
    expect(storm[0]).toMatchObject({
      account: 'work',
      token_type: 'Bearer',
      expires_in: expect.any(Number),
      generation: expect.any(Number),
    });
    expect((await idp.introspect(fresh)).active).toBe(true);

    // Callers still holding the old token after the storm: the token already held, nobody called.
    const late = await times(STORM, () => tokend.refresh('work', { ifToken: old }));
    expect(idp.stats.refreshes).toBe(1);
    expect(late.every((r) => r.access_token === fresh && r.refreshed === false)).toBe(true);
    expect((await tokend.token('work')).access_token).toBe(fresh);

    // The new token refused in turn: one more refresh. Without ifToken: a refresh, no token in the answer.
    const next = await tokend.refresh('work', { ifToken: fresh });
    expect(next).toMatchObject({ refreshed: true });
    expect(next.access_token).not.toBe(fresh);
    expect(idp.stats.refreshes).toBe(2);
    const plain = await tokend.refresh('work');
    expect(plain.access_token).toBeUndefined();
    expect(idp.stats.refreshes).toBe(3);
  });

  it('repeated storms cost one refresh each and never reach the 30-a-minute lockout', async () => {
    const { tokend, old } = await grantedAccount();
    let current = old;
    for (let storm = 1; storm <= 12; storm++) {
      const answers = await times(STORM / 2, () => tokend.refresh('work', { ifToken: current }));
      expect(new Set(answers.map((r) => r.access_token)).size).toBe(1);
      current = answers[0]!.access_token!;
      expect(idp.stats.refreshes).toBe(storm);
    }
    expect(idp.stats.refreshErrors).toEqual([]);
    expect((await tokend.info('work')).status).toBe('active');
  });

  it('100 concurrent reject-then-token of one refused token cause one refresh; all get the same new token', async () => {
    const { tokend, old } = await grantedAccount();
    const results = await times(STORM, async () => {
      const r = await tokend.reject('work', old);
      return { dropped: r.dropped, token: (await tokend.token('work')).access_token };
    });
    expect(idp.stats.refreshes).toBe(1);
    expect(results.reduce((n, r) => n + r.dropped, 0)).toBe(1); // the others found it gone already
    const fresh = results[0]!.token;
    expect(fresh).not.toBe(old);
    expect(new Set(results.map((r) => r.token))).toEqual(new Set([fresh]));
    // A token the daemon does not serve (any more) drops nothing.
    expect(await tokend.reject('work', old)).toEqual({ ok: true, dropped: 0 });
    expect((await tokend.token('work')).access_token).toBe(fresh);
    expect(idp.stats.refreshes).toBe(1);
  });

  it('refuses an if_token that is not a string, and an unknown account, with the wire codes', async () => {
    await putConfAccount(t.d, idp.issuer);
    const tokend = sdk();
    expect(await rejectionOf(tokend.refresh('nobody', { ifToken: 'x' }), TokendError)).toMatchObject({ code: 'not_found', status: 404 });
    const bad = await t.d.request('POST', '/v1/accounts/work/refresh', { if_token: 42 });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'invalid_request' });
    expect(bad.json.error.message).toContain('if_token');
  });

  it('importTokens takes camelCase fields and a whole token object; info says when the grant was obtained and refreshed', async () => {
    await putConfAccount(t.d, idp.issuer);
    await putConfAccount(t.d, idp.issuer, 'other');
    const tokend = sdk();
    // Access tokens that outlive an import's proving margin (a minute): kept as they came, not refreshed.
    idp.setAccessTokenTtl(600);
    onTestFinished(() => idp.setAccessTokenTtl(60));
    const issued = await idp.issueRefreshToken('conf');
    const expiresAt = new Date(Date.now() + issued.expires_in * 1000);
    const before = Date.now();
    const view = await tokend.importTokens('work', { refreshToken: issued.refresh_token, accessToken: issued.access_token, expiresAt });
    expect(view).toMatchObject({ status: 'active', has_refresh_token: true, refreshed_at: null });
    expect(Math.abs(Date.parse(view.expires_at!) - expiresAt.getTime())).toBeLessThan(5000);
    expect((await tokend.token('work')).access_token).toBe(issued.access_token); // a valid access token came along: kept
    expect(view.expires_in).toBeGreaterThan(0);
    expect(view.expires_in).toBeLessThanOrEqual(issued.expires_in);
    const obtainedAt = Date.parse(view.obtained_at!);
    expect(obtainedAt).toBeGreaterThanOrEqual(before - 1000);

    // A refresh keeps when the grant was obtained, and says when it was refreshed.
    await tokend.refresh('work');
    const refreshed = await tokend.info('work');
    expect(refreshed.obtained_at).toBe(view.obtained_at);
    expect(Date.parse(refreshed.refreshed_at!)).toBeGreaterThanOrEqual(obtainedAt);

    // An OAuth library's token response as it came (expires_in, snake_case).
    const second = await idp.issueRefreshToken('conf');
    const other = await tokend.importTokens('other', { tokens: second });
    expect(other).toMatchObject({ status: 'active', has_refresh_token: true });
    expect((await tokend.token('other')).access_token).toBe(second.access_token);
    // Without a token, the daemon's own message names what is missing.
    const none = await rejectionOf(tokend.importTokens('other', { expiresIn: 60 }), TokendError);
    expect(none).toMatchObject({ code: 'invalid_request' });
    expect(none.message).toContain('refresh_token');
  });
});

describe('importBody: the forms apps hold tokens in', () => {
  it('maps camelCase, Cal.com and a token object onto the wire names; fields beside `tokens` win', () => {
    const now = 1_000_000;
    expect(importBody({ refreshToken: 'r', accessToken: 'a', expiresAt: new Date(5000) }, now)).toEqual({
      refresh_token: 'r',
      access_token: 'a',
      expires_at: 5000,
    });
    expect(importBody({ tokens: { accessToken: 'a', refreshToken: 'r', accessTokenExpiresAt: 7000 } }, now)).toEqual({
      refresh_token: 'r',
      access_token: 'a',
      expires_at: 7000,
    });
    expect(importBody({ refresh_token: 'mine', tokens: { refresh_token: 'theirs', expires_in: 60 } }, now)).toEqual({
      refresh_token: 'mine',
      expires_at: now + 60_000,
    });
    expect(
      importBody({ expires_at: '2030-01-01T00:00:00Z', expires_in: 60, clientId: 'c', clientSecret: 's', refresh_token: 'r' }, now),
    ).toEqual({
      refresh_token: 'r',
      expires_at: '2030-01-01T00:00:00Z',
      client_id: 'c',
      client_secret: 's',
    });
  });
});

describe('recover() against the fake Cal.com and AMP', () => {
  const cal = useServer(startFakeCalCom, { each: true, what: 'the fake Cal.com' });
  const amp = useServer(startFakeAmp, { each: true, what: 'the fake AMP' });
  const idp = useIdp();
  const { t } = useDaemon({ lifetime: 'test', launch: startDaemon, settings: { proactive_refresh: false } });
  const sdk = () => new Tokend({ env: t.env, userAgent: 'sdk-app-calls' });

  it("Cal.com: force-refreshes the managed user on demand; the platform's tokens are dead, the new ones served", async () => {
    const add = await t.d.cli([...addCalArgs(cal.url), '--client-secret-stdin'], CAL_CLIENT_SECRET);
    expect(add.code, add.stderr).toBe(0);
    const tokend = sdk();
    const platform = cal.createUserTokens();
    await tokend.importTokens('cal', { tokens: platform }); // Cal.com's own camelCase object
    expect((await tokend.token('cal')).access_token).toBe(platform.accessToken);
    const before = (await tokend.info('cal')).generation;

    // The platform takes its time, so the second call surely arrives while the first is in flight.
    cal.forceRefreshDelayMs = 1500;
    const [a, b] = await Promise.all([tokend.recover('cal'), tokend.recover('cal')]);
    cal.forceRefreshDelayMs = 0;
    expect(cal.stats.forceRefreshes).toBe(1); // the two calls joined one
    expect(a).toEqual(b);
    expect(a).toMatchObject({ account: 'cal', generation: before + 1, expires_at: expect.any(String) });
    const fresh = (await tokend.token('cal')).access_token;
    expect(fresh).not.toBe(platform.accessToken);
    expect(cal.isLive(fresh)).toBe(true);
    expect(cal.isLive(platform.accessToken)).toBe(false);
    expect(cal.stats.refreshes).toBe(0);

    // The CLI counterpart.
    const r = await t.d.cli(['recover', 'cal', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ account: 'cal', generation: before + 2 });
    expect(cal.stats.forceRefreshes).toBe(2);
    expect(r.stdout + r.stderr).not.toContain(fresh);
  });

  it('AMP: obtains a new token with the stored password on demand', async () => {
    const add = await t.d.cli(
      ['add', 'amp', '--preset', 'amp', '--base-url', amp.url, '--username', AMP_USER, '--password-stdin'],
      AMP_PASSWORD,
    );
    expect(add.code, add.stderr).toBe(0);
    const tokend = sdk();
    const first = (await tokend.token('amp')).access_token;
    expect(amp.stats.obtains).toBe(1);
    await tokend.recover('amp');
    expect(amp.stats.obtains).toBe(2);
    const second = (await tokend.token('amp')).access_token;
    expect(second).not.toBe(first);
    expect(amp.isLive(second)).toBe(true);
  });

  it('says conflict (409) for an account without a recover step, and the CLI exits 1 with the way out', async () => {
    await putConfAccount(t.d, idp.issuer);
    await postConfGrant(t.d, idp);
    idp.resetStats();
    const err = await rejectionOf(sdk().recover('work'), TokendError);
    expect(err).toMatchObject({ code: 'conflict', status: 409, account: 'work' });
    expect(err.message).toContain('has no recover step');
    expect(err.message).toContain('tokend refresh work');
    const r = await t.d.cli(['recover', 'work']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('has no recover step');
    expect(idp.stats.tokenRequests).toBe(0);
    expect((await sdk().info('work')).status).toBe('active');
  });
});
