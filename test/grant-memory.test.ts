/** The memory every part of the broker reads (src/daemon/broker/grant-memory.ts). */
import { describe, expect, it } from 'vitest';
import { StoreError } from '../src/daemon/store/errors.js';
import { ApiError } from '../src/daemon/errors.js';
import { storedTimes, withoutMark } from '../src/daemon/broker/grant-memory.js';
import { brokerParts } from './support/broker-parts.js';

const token = (account: string, access_token: string) => ({
  account,
  access_token,
  token_type: 'Bearer',
  expires_at: null,
  obtained_at: 0,
  scope: null,
});

describe('GrantMemory', () => {
  it('forgets an account whole, its narrowed tokens too, and no other account', async () => {
    const { m, grant } = brokerParts();
    m.remember('w', await grant());
    m.cache.set('w', token('w', 'base'));
    m.cache.set('w\u0000read\u0000', token('w', 'narrowed'));
    m.cache.set('x', token('x', 'other'));
    m.usedKeys.add('w\u0000read\u0000');
    m.storedTokens.add('w');
    m.healthOf('w').lastError = 'down';
    m.forget('w');
    expect([...m.cache.keys()]).toEqual(['x']);
    expect(m.grants.has('w')).toBe(false);
    expect(m.storedTokens.size + m.usedKeys.size + m.health.size).toBe(0);
  });

  it('remembers the generation it last read or wrote, and holds no token in the grant it keeps', async () => {
    const { m, grant } = brokerParts();
    const g = await grant('rt-secret', { access_token: 'at-secret' });
    m.remember('w', g);
    expect(m.seen.get('w')).toBe(1);
    expect(JSON.stringify(m.grants.get('w'))).not.toMatch(/secret/);
  });

  it('aborts a provider call that does not answer within http_timeout_ms, and every call at shutdown', async () => {
    const { m } = brokerParts({ settings: { http_timeout_ms: 100 } });
    const hanging = (signal: AbortSignal) =>
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    await expect(m.withTimeout(hanging)).rejects.toThrow('no answer within 100 ms');
    const { m: m2 } = brokerParts({ settings: { http_timeout_ms: 60_000 } });
    const p = m2.withTimeout(hanging);
    m2.abortAll(new Error('tokend is shutting down'));
    await expect(p).rejects.toThrow('tokend is shutting down');
  });

  it('a store write that cannot reach the database is logged, not thrown; any other failure is thrown', async () => {
    const { m, logs } = brokerParts();
    expect(await m.bestEffort('w', async () => Promise.reject(new StoreError('unavailable', 'db down')))).toBeUndefined();
    expect(logs.at(-1)).toMatchObject({ level: 'warn', fields: { account: 'w', error: 'db down' } });
    await expect(m.bestEffort('w', async () => Promise.reject(new Error('a bug')))).rejects.toThrow('a bug');
  });

  it('reading the secrets while the database is down is a 503 upstream_unavailable', async () => {
    const { m, store } = brokerParts();
    store.down = true;
    const err = await m.secretsOf('w').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('upstream_unavailable');
  });

  it('reads a stored access token on first use, unless the grant moved on since start-up', async () => {
    const { m, grant, clock } = brokerParts();
    const g = await grant('rt-0', { access_token: 'stored', expires_at: clock.t + 3_600_000 });
    m.remember('w', g);
    m.storedTokens.add('w');
    expect((await m.readStoredToken('w'))?.access_token).toBe('stored');
    expect(m.storedTokens.has('w')).toBe(false);
    // A grant memory holds at another generation (a refresh meanwhile) wins over the read.
    const { m: m2, grant: grant2 } = brokerParts();
    await grant2('rt-0', { access_token: 'stored', expires_at: clock.t + 3_600_000 });
    m2.remember('w', { ...g, generation: 7 });
    m2.storedTokens.add('w');
    expect(await m2.readStoredToken('w')).toBeUndefined();
    expect(m2.cache.size).toBe(0);
  });

  it('stored times fall back to the last update; withoutMark drops the mark and its holder', () => {
    const g = { expires_at: 5, obtained_at: null, updated_at: 3 } as never;
    expect(storedTimes(g)).toEqual({ expires_at: 5, obtained_at: 3 });
    expect(withoutMark({ in_flight_since: 1, in_flight_for: 'import' as const, in_flight_by: 'host' })).toEqual({
      in_flight_since: null,
      in_flight_for: null,
      in_flight_by: null,
    });
    expect(withoutMark({ in_flight_since: 1, in_flight_for: null })).toEqual({ in_flight_since: null, in_flight_for: null });
  });
});
