/** When the broker refreshes without being asked (src/daemon/broker/schedule.ts, rule 4). */
import { describe, expect, it, vi } from 'vitest';
import { keepAliveDue, REAUTH_SOON_MS } from '../src/daemon/broker/schedule.js';
import { cacheKey } from '../src/daemon/cached-token.js';
import type { GrantSummary } from '../src/daemon/store/types.js';
import { summarize } from '../src/daemon/store/types.js';
import { ACCOUNT, brokerParts } from './support/broker-parts.js';

const MIN = 60_000;
const DAY = 24 * 60 * MIN;
const tick = () => new Promise((r) => setTimeout(r, 5));

describe('Scheduler', () => {
  it('refreshes a token once less than min(5 min, a quarter of its lifetime) remains', async () => {
    const { scheduler, refreshes, clock, m, grant } = brokerParts({ settings: { proactive_refresh: true } });
    m.remember('w', await grant());
    // 8 minutes of life: the lead is 2 minutes, so the refresh is due 6 minutes after it was obtained.
    scheduler.schedule('w', 'w', { obtained_at: clock.t, expires_at: clock.t + 8 * MIN });
    await tick();
    expect(refreshes).toEqual([]);
    clock.t += 6 * MIN;
    scheduler.schedule('w', 'w', { obtained_at: clock.t - 6 * MIN, expires_at: clock.t + 2 * MIN });
    await vi.waitFor(() => expect(refreshes).toHaveLength(1));
    expect(refreshes[0]).toMatchObject({ key: 'w', account: 'w', notBefore: clock.t, minTtlMs: 5 * MIN });
    scheduler.stop();
  });

  it('lets a narrowed token nobody asked for since lapse instead of refreshing it', async () => {
    const { scheduler, refreshes, clock, m, grant } = brokerParts({ settings: { proactive_refresh: true } });
    m.remember('w', await grant());
    const key = cacheKey('w', 'read');
    m.cache.set(key, {
      account: 'w',
      access_token: 'narrowed',
      token_type: 'Bearer',
      expires_at: clock.t + MIN,
      obtained_at: clock.t - 59 * MIN,
      scope: 'read',
    });
    scheduler.schedule('w', key, m.cache.get(key)!);
    await vi.waitFor(() => expect(m.cache.has(key)).toBe(false));
    expect(refreshes).toEqual([]);
    // Asked for since: refreshed with its scope.
    m.usedKeys.add(key);
    scheduler.schedule('w', key, { obtained_at: clock.t - 59 * MIN, expires_at: clock.t + MIN });
    await vi.waitFor(() => expect(refreshes).toHaveLength(1));
    expect(refreshes[0]).toMatchObject({ key, scope: 'read' });
    scheduler.stop();
  });

  it('schedules nothing with proactive refresh off, or after stop', async () => {
    const off = brokerParts();
    off.scheduler.schedule('w', 'w', { obtained_at: 0, expires_at: off.clock.t - 1 });
    const stopped = brokerParts({ settings: { proactive_refresh: true } });
    stopped.m.closed = true;
    stopped.scheduler.schedule('w', 'w', { obtained_at: 0, expires_at: stopped.clock.t - 1 });
    await tick();
    expect([...off.refreshes, ...stopped.refreshes]).toEqual([]);
  });

  it('announces a refresh token that expires within 7 days once per expiry', async () => {
    const { scheduler, events, clock, grant } = brokerParts();
    const g: GrantSummary = { ...summarize(await grant()), refresh_expires_at: clock.t + REAUTH_SOON_MS - 1 };
    scheduler.watchGrant('w', ACCOUNT, g);
    scheduler.watchGrant('w', ACCOUNT, g);
    expect(events.map((e) => e.type)).toEqual(['account.reauth_soon']);
    scheduler.watchGrant('w', ACCOUNT, { ...g, refresh_expires_at: g.refresh_expires_at! + 1 });
    expect(events).toHaveLength(2);
    // Forgetting the account forgets the announcement.
    scheduler.forget('w');
    scheduler.watchGrant('w', ACCOUNT, g);
    expect(events).toHaveLength(3);
  });

  it('runs a keep-alive refresh before a provider forgets an unused refresh token', async () => {
    const { scheduler, refreshes, clock, m, grant, accounts } = brokerParts();
    const cfg = { ...ACCOUNT, refresh_idle_days: 30 };
    accounts.set('w', cfg);
    const g = summarize(await grant());
    m.remember('w', g);
    // 30 idle days: due 3 days (a tenth) ahead of the provider forgetting it.
    expect(keepAliveDue(cfg, g)).toBe(g.obtained_at! + 27 * DAY);
    expect(keepAliveDue({ ...cfg, refresh_idle_days: 5 }, g)).toBe(g.obtained_at! + 4 * DAY);
    expect(keepAliveDue(ACCOUNT, g)).toBeUndefined();
    clock.t += 27 * DAY;
    scheduler.watchGrant('w', cfg, g);
    await vi.waitFor(() => expect(refreshes).toHaveLength(1));
    // The refresh token must be used: no min_ttl lets a valid access token answer it.
    expect(refreshes[0]).toEqual({ key: 'w', account: 'w', notBefore: clock.t });
    scheduler.stop();
  });

  it('re-arms the timers when the wall clock parts from the monotonic one, once per jump', () => {
    const { scheduler, clock } = brokerParts();
    scheduler.checkClock();
    expect(scheduler.checkClock()).toBe(false);
    clock.t += 60 * MIN;
    expect(scheduler.checkClock()).toBe(true);
    expect(scheduler.checkClock()).toBe(false);
  });
});
