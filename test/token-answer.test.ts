/**
 * The token route's answer (src/daemon/http/token-route.ts) is made once and given again
 * while it is exact: the same token object, the same whole seconds left. A refresh's 1000
 * waiters share one body; a second later, or after a refresh, the answer is made anew.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AuditLog } from '../src/daemon/audit.js';
import type { Broker, CachedToken } from '../src/daemon/broker.js';
import type { AccessControl } from '../src/daemon/caller/access.js';
import { createTokenHandler } from '../src/daemon/http/token-route.js';

afterEach(() => vi.useRealTimers());

describe('the token answer', () => {
  it('is shared while exact, and made anew when a second passes or the token changes', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.parse('2026-01-01T00:00:00.000Z');
    vi.setSystemTime(t0);
    let served: CachedToken = {
      account: 'w',
      access_token: 'at-1',
      token_type: 'Bearer',
      expires_at: t0 + 600_500,
      scope: 'api',
    } as CachedToken;
    const broker = { getToken: async () => served } as unknown as Broker;
    const audit = { record() {} } as unknown as AuditLog;
    // Every account open: the check answers at once (caller/access.ts).
    const access = { check: () => undefined } as unknown as AccessControl;
    const handler = createTokenHandler({ broker, audit, access });
    const ask = () => handler(Buffer.from('{"account":"w"}'), 'test', undefined);

    const first = await ask();
    expect(first).toMatchObject({ access_token: 'at-1', expires_in: 600 });
    vi.setSystemTime(t0 + 400); // 600.1 s left: still 600 whole seconds
    expect(await ask()).toBe(first);
    vi.setSystemTime(t0 + 600); // 599.9 s left
    expect(await ask()).toMatchObject({ access_token: 'at-1', expires_in: 599 });
    served = { ...served, access_token: 'at-2' } as CachedToken; // a refresh: another object
    expect(await ask()).toMatchObject({ access_token: 'at-2', expires_in: 599 });
  });
});
