/** A fleet's grants as one daemon keeps up with them (src/daemon/broker/fleet-sync.ts, rules 3, 5, 8). */
import { describe, expect, it, vi } from 'vitest';
import { ApiError } from '../src/daemon/errors.js';
import { identityKey } from '../src/daemon/grant-identity.js';
import { StoreError } from '../src/daemon/store/errors.js';
import { ACCOUNT, brokerParts } from './support/broker-parts.js';

const rotation = (t: number) => ({
  refresh_token: 'rt-held',
  access_token: 'at-held',
  token_type: 'Bearer',
  expires_at: t + 3_600_000,
  obtained_at: t,
  scope: null,
});

describe('FleetSync', () => {
  it('holds a rotation the database could not take, and commits it when the lock is next taken', async () => {
    const { fleet, m, store, grant, clock, logs } = brokerParts({ fleet: true });
    m.remember('w', await grant('rt-0'));
    fleet.keepPending('w', m.grants.get('w')!, rotation(clock.t), new StoreError('unavailable', 'db down'));
    expect(fleet.hasPending('w')).toBe(true);
    expect(m.grants.get('w')).toMatchObject({ expires_at: clock.t + 3_600_000, has_access_token: true, in_flight_since: null });
    expect(logs.at(-1)).toMatchObject({ level: 'error', fields: { account: 'w', error: 'db down' } });
    expect(store.grants.get('w')!.refresh_token).toBe('rt-0');
    await fleet.flushPending('w');
    fleet.stop();
    expect(fleet.hasPending('w')).toBe(false);
    expect(store.grants.get('w')).toMatchObject({ refresh_token: 'rt-held', access_token: 'at-held', generation: 2 });
    expect(m.seen.get('w')).toBe(2);
  });

  it('drops a held rotation when the stored grant moved on meanwhile, and says its refresh token is lost', async () => {
    const { fleet, m, store, grant, clock, logs } = brokerParts({ fleet: true });
    m.remember('w', await grant('rt-0'));
    fleet.keepPending('w', m.grants.get('w')!, rotation(clock.t), new StoreError('unavailable', 'db down'));
    fleet.stop();
    await grant('rt-login'); // a login elsewhere replaced the grant
    await fleet.flushPending('w');
    expect(fleet.hasPending('w')).toBe(false);
    expect(store.grants.get('w')).toMatchObject({ refresh_token: 'rt-login', generation: 2 });
    expect(logs.at(-1)).toMatchObject({ level: 'error', fields: { expected_generation: 1, stored_generation: 2 } });
    fleet.reportLost();
    expect(logs.filter((l) => l.msg.startsWith('stopping with a rotated grant'))).toEqual([]);
  });

  it("adopts another daemon's commit: its access token is served here, and it is told once", async () => {
    const { fleet, m, store, grant, clock, events } = brokerParts({ fleet: true });
    m.remember('w', await grant('rt-0'));
    expect(fleet.movedOn(store.grants.get('w')!)).toBe(false);
    const other = await store.commitRefresh('w', 1, rotation(clock.t));
    expect(fleet.movedOn(other)).toBe(true);
    fleet.adoptStored(other, ACCOUNT);
    expect(m.cache.get('w')?.access_token).toBe('at-held');
    expect(fleet.movedOn(other)).toBe(false);
    expect(events).toEqual([{ type: 'token.refreshed', account: 'w', data: expect.objectContaining({ generation: 2, by: 'fleet' }) }]);
    // Without a fleet, the store is this daemon's alone: nothing moves on behind its back.
    const alone = brokerParts();
    expect(alone.fleet.movedOn({ ...other, generation: 9 })).toBe(false);
  });

  it('a grant another daemon found refused stops being served here', async () => {
    const { fleet, m, store, grant, clock, events } = brokerParts({ fleet: true });
    m.remember('w', await grant('rt-0'));
    m.cache.set('w', {
      account: 'w',
      access_token: 'old',
      token_type: 'Bearer',
      expires_at: clock.t + 60_000,
      obtained_at: clock.t,
      scope: null,
    });
    await store.setStatus('w', 'reauth_required', 'refused');
    fleet.adoptStored({ ...store.grants.get('w')!, generation: 2 }, ACCOUNT);
    expect(m.cache.size).toBe(0);
    expect(events.map((e) => e.type)).toEqual(['account.reauth_required']);
  });

  it('reloads a grant when the fleet says another daemon changed it', async () => {
    const { fleet, m, store, grant, clock } = brokerParts({ fleet: true });
    m.remember('w', await grant('rt-0'));
    fleet.listen();
    await store.commitRefresh('w', 1, rotation(clock.t));
    store.fleet!.handlers!.grantChanged('w', 2);
    await vi.waitFor(() => expect(m.cache.get('w')?.access_token).toBe('at-held'));
    expect(m.seen.get('w')).toBe(2);
  });

  it('refuses a login or import over a fleet grant that another identity holds (rule 8)', async () => {
    const { fleet, store } = brokerParts({ fleet: true });
    const other = identityKey({ ...ACCOUNT, issuer: 'https://b.example' });
    await store.replaceGrant('w', { refresh_token: 'rt-b', bound_to: other });
    const err = await fleet.refuseForeignGrant('w', identityKey(ACCOUNT)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('conflict');
    await expect(fleet.refuseForeignGrant('w', other)).resolves.toBeUndefined();
    const alone = brokerParts();
    await alone.store.replaceGrant('w', { refresh_token: 'rt-b', bound_to: other });
    await expect(alone.fleet.refuseForeignGrant('w', identityKey(ACCOUNT))).resolves.toBeUndefined();
  });
});
