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
    // In memory: the handler answers at once, no promise (the token lane's hot path).
    const broker = { cachedToken: () => served, getToken: async () => served } as unknown as Broker;
    const audit = { record() {} } as unknown as AuditLog;
    // Every account open: the check answers at once (caller/access.ts).
    const access = { check: () => undefined } as unknown as AccessControl;
    const handler = createTokenHandler({ broker, audit, access });
    const ask = () => handler(Buffer.from('{"account":"w"}'), 'test', undefined);

    const first = ask();
    expect(first).not.toBeInstanceOf(Promise);
    expect(first).toMatchObject({ access_token: 'at-1', expires_in: 600 });
    vi.setSystemTime(t0 + 400); // 600.1 s left: still 600 whole seconds
    expect(await ask()).toBe(first);
    vi.setSystemTime(t0 + 600); // 599.9 s left
    expect(await ask()).toMatchObject({ access_token: 'at-1', expires_in: 599 });
    served = { ...served, access_token: 'at-2' } as CachedToken; // a refresh: another object
    expect(await ask()).toMatchObject({ access_token: 'at-2', expires_in: 599 });
  });

  it('reads {"account":"NAME"} alone without the schema, and every other body as the schema says: same query, same errors', async () => {
    const asked: unknown[] = [];
    const broker = {
      cachedToken: () => undefined, // not in memory: every query goes to getToken
      getToken: async (q: unknown) => {
        asked.push(q);
        return { account: 'w', access_token: 'at', token_type: 'Bearer', expires_at: null, scope: null } as CachedToken;
      },
    } as unknown as Broker;
    const handler = createTokenHandler({
      broker,
      audit: { record() {} } as unknown as AuditLog,
      access: { check: () => undefined } as unknown as AccessControl,
      resolveTarget: ({ host }) => (host === 'h.example' ? 'w' : undefined),
    });
    // Refusals are thrown at once (no promise to wait for): made a rejection here.
    const ask = async (body: string) => handler(Buffer.from(body), 'test', undefined);
    await ask('{"account":"w"}');
    await ask('{"account":"w","min_ttl":30,"scope":"api"}');
    await ask('{"host":"h.example"}');
    expect(asked).toEqual([
      { account: 'w', min_ttl: undefined, scope: undefined, audience: undefined },
      { account: 'w', min_ttl: 30, scope: 'api', audience: undefined },
      { account: 'w', min_ttl: undefined, scope: undefined, audience: undefined },
    ]);
    const refused = async (body: string) => {
      const err = await ask(body).then(
        () => undefined,
        (e: { code?: string; message?: string }) => e,
      );
      return [err?.code, err?.message];
    };
    expect(await refused('{"account":".hidden"}')).toEqual(['invalid_request', expect.stringContaining('account names are 1-64')]);
    expect(await refused('{"account":"w","extra":1}')).toEqual(['invalid_request', expect.stringContaining('extra')]);
    expect(await refused('{"account":"w","__proto__":{"min_ttl":1}}')).toEqual(['invalid_request', expect.any(String)]);
    for (const body of ['', '{}', '[]', 'null', '"w"', '{"account":7}', '{"account":"w"']) {
      expect((await refused(body))[0], body).toBe('invalid_request');
    }
    expect(asked).toHaveLength(3);
  });
});
