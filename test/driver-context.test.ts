/** The one DriverContext factory (src/daemon/driver-context.ts), used by the broker, logins and accounts. */
import { describe, expect, it } from 'vitest';
import { driverContext } from '../src/daemon/driver-context.js';
import { ACCOUNT } from './support/broker-parts.js';

describe('driverContext', () => {
  it('gives the stored secrets, the client secret among them, and the signal', () => {
    const signal = AbortSignal.abort();
    const ctx = driverContext({
      account: 'w',
      config: ACCOUNT,
      secrets: new Map([
        ['client_secret', 'cs'],
        ['password', 'pw'],
      ]),
      signal,
    });
    expect(ctx.name).toBe('w');
    expect(ctx.config).toBe(ACCOUNT);
    expect(ctx.clientSecret).toBe('cs');
    expect(ctx.secret('password')).toBe('pw');
    expect(ctx.secret('other')).toBeUndefined();
    expect(ctx.signal).toBe(signal);
    expect('currentAccessToken' in ctx).toBe(false);
  });

  it('takes a lookup instead of a map, so a caller can hand over only the secrets it may send', () => {
    const given: Record<string, string> = { client_secret: 'given-cs', password: 'given-pw' };
    const ctx = driverContext({
      account: 'new',
      config: ACCOUNT,
      secrets: (n) => (n === 'client_secret' ? given[n] : undefined),
      signal: new AbortController().signal,
    });
    expect(ctx.clientSecret).toBe('given-cs');
    expect(ctx.secret('password')).toBeUndefined();
  });

  it('carries the access token held now, where there is one', () => {
    const ctx = driverContext({
      account: 'w',
      config: ACCOUNT,
      secrets: new Map(),
      signal: new AbortController().signal,
      currentAccessToken: 'at',
    });
    expect(ctx.currentAccessToken).toBe('at');
    expect(ctx.clientSecret).toBeUndefined();
  });
});
