/**
 * One refresh attempt alone (src/daemon/broker/refresh-attempt.ts, rules 3–6): read the grant
 * under its lock, mark it, call the driver, commit; or recover, or fail with the right answer.
 */
import { describe, expect, it } from 'vitest';
import { RefreshAttempt } from '../src/daemon/broker/refresh-attempt.js';
import { cacheKey } from '../src/daemon/cached-token.js';
import { DriverError } from '../src/daemon/drivers/driver.js';
import { ApiError } from '../src/daemon/errors.js';
import { brokerParts } from './support/broker-parts.js';

const request = (now: number) => ({ key: cacheKey('w'), account: 'w', notBefore: now });

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiError);
  return (err as ApiError).code;
}

describe('RefreshAttempt', () => {
  it('marks the grant in flight before the provider call, and commits the rotation before the token is served', async () => {
    const { parts, store, driver, clock, grant, events, m } = brokerParts();
    await grant('rt-0');
    let markSeen: number | null = null;
    driver.onCall = () => (markSeen = store.grants.get('w')!.in_flight_since);
    const tok = await new RefreshAttempt(parts, request(clock.t)).run();
    expect(markSeen).toBe(clock.t);
    expect(driver.calls.map((c) => [c.kind, c.token])).toEqual([['refresh', 'rt-0']]);
    expect(tok.access_token).toBe('at-1');
    const stored = store.grants.get('w')!;
    expect(stored).toMatchObject({ refresh_token: 'rt-1', access_token: 'at-1', generation: 2, in_flight_since: null });
    expect(m.cache.get('w')).toBe(tok);
    expect(m.grants.get('w')?.generation).toBe(2);
    expect(events.map((e) => e.type)).toEqual(['token.refreshed']);
  });

  it('serves a token that appeared while it queued, without calling the provider', async () => {
    const { parts, driver, clock, grant, m } = brokerParts();
    await grant('rt-0');
    const fresh = {
      account: 'w',
      access_token: 'meanwhile',
      token_type: 'Bearer',
      expires_at: clock.t + 3_600_000,
      obtained_at: clock.t,
      scope: null,
    };
    m.cache.set('w', fresh);
    expect(await new RefreshAttempt(parts, request(clock.t)).run()).toBe(fresh);
    expect(driver.calls).toHaveLength(0);
  });

  it('sends the narrowed scope and keeps the stored base access token when the refresh is narrowed', async () => {
    const { parts, store, driver, clock, grant } = brokerParts();
    await grant('rt-0', { access_token: 'base', expires_at: clock.t + 3_600_000 });
    const tok = await new RefreshAttempt(parts, { key: cacheKey('w', 'read'), account: 'w', scope: 'read', notBefore: clock.t }).run();
    expect(driver.calls[0]!.opts).toEqual({ scope: 'read', audience: undefined });
    expect(tok.access_token).toBe('at-1');
    expect(store.grants.get('w')).toMatchObject({ access_token: 'base', refresh_token: 'rt-1' });
  });

  it('goes to the recover step when the refresh token is refused, and announces the grant obtained anew', async () => {
    const { parts, store, driver, clock, grant, events } = brokerParts();
    driver.withRecover();
    await grant('rt-0');
    driver.refreshAnswers.push(() => {
      throw new DriverError('invalid_grant', 'refresh token revoked', { oauthError: 'invalid_grant' });
    });
    driver.recoverAnswers.push(() => ({ access_token: 'recovered', token_type: 'Bearer', expires_in: 3600 }));
    const tok = await new RefreshAttempt(parts, request(clock.t)).run();
    expect(tok.access_token).toBe('recovered');
    expect(driver.calls.map((c) => c.kind)).toEqual(['refresh', 'recover']);
    // The grant obtained anew replaced the refused one whole.
    expect(store.grants.get('w')).toMatchObject({ access_token: 'recovered', refresh_token: null, status: 'active', generation: 2 });
    expect(events.map((e) => e.type)).toEqual(['token.refreshed', 'token.recovered']);
  });

  it('without a recover step, a refused refresh token makes the account reauth_required and clears the mark', async () => {
    const { parts, store, driver, clock, grant, events } = brokerParts();
    await grant('rt-0');
    driver.refreshAnswers.push(() => {
      throw new DriverError('invalid_grant', 'refresh token revoked', { oauthError: 'invalid_grant' });
    });
    expect(await codeOf(new RefreshAttempt(parts, request(clock.t)).run())).toBe('reauth_required');
    expect(store.grants.get('w')).toMatchObject({ status: 'reauth_required', in_flight_since: null });
    expect(events.map((e) => e.type)).toEqual(['token.refresh_failed', 'account.reauth_required']);
  });

  it('backs off after a provider outage: the next attempt is refused before the lock, without a call', async () => {
    const { parts, store, driver, clock, grant } = brokerParts();
    await grant('rt-0');
    driver.refreshAnswers.push(() => {
      throw new DriverError('transient', 'HTTP 503', { status: 503 });
    });
    expect(await codeOf(new RefreshAttempt(parts, request(clock.t)).run())).toBe('upstream_unavailable');
    // The answer was read: the refresh token was not spent, so the mark goes.
    expect(store.grants.get('w')).toMatchObject({ refresh_token: 'rt-0', in_flight_since: null, status: 'active' });
    store.journal.length = 0;
    expect(await codeOf(new RefreshAttempt(parts, request(clock.t)).run())).toBe('upstream_unavailable');
    expect(driver.calls).toHaveLength(1);
    expect(store.journal).toEqual([]);
  });

  it('says how to get a first grant when the account has none and no recover step', async () => {
    const { parts, clock, driver } = brokerParts();
    const err = await new RefreshAttempt(parts, request(clock.t)).run().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('reauth_required');
    expect((err as ApiError).message).toContain('has no grant yet: run `tokend login w`');
    expect(driver.calls).toHaveLength(0);
  });
});
