/**
 * The Broker alone (docs/architecture.md, token serving rules) with a fake store, a fake driver and a
 * fake clock: single flight, commit order, the in-flight mark, backoff and the attempt
 * budget, Retry-After, the cached token through an outage, and the grant identity rule.
 */
import { describe, expect, it } from 'vitest';
import type { AccountConfig } from '../src/protocol/api.js';
import { Broker } from '../src/daemon/broker.js';
import { Settings } from '../src/protocol/config-file.js';
import { DriverError, type Driver, type DriverContext, type TokenSet } from '../src/daemon/drivers/driver.js';
import type { ApiError } from '../src/daemon/errors.js';
import { StoreError } from '../src/daemon/store/errors.js';
import { identityKey } from '../src/daemon/grant-identity.js';
import type { Logger } from '../src/daemon/log.js';
import { MemoryStore } from './support/memory-store.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const A: AccountConfig = { driver: 'oauth2', issuer: 'https://a.example', client_id: 'cli', scopes: [], hosts: [] };

/** A driver whose refresh answers come from a script; it records what it was sent, and when. */
class FakeDriver implements Driver {
  name = 'oauth2';
  calls: Array<{ kind: 'refresh' | 'revoke'; token: string; config: AccountConfig; at: number }> = [];
  answers: Array<(rt: string) => Promise<TokenSet> | TokenSet> = [];
  /** Runs at the moment of each refresh call (to look at the store then). */
  onCall?: () => void;
  private n = 0;
  constructor(private readonly clock: { t: number }) {}
  async refresh(ctx: DriverContext, rt: string): Promise<TokenSet> {
    this.calls.push({ kind: 'refresh', token: rt, config: ctx.config, at: this.clock.t });
    this.onCall?.();
    const answer = this.answers.shift();
    if (answer) return answer(rt);
    this.n++;
    return { access_token: `at-${this.n}`, token_type: 'Bearer', expires_in: 3600, refresh_token: `rt-${this.n}` };
  }
  async revoke(ctx: DriverContext, token: string): Promise<void> {
    this.calls.push({ kind: 'revoke', token, config: ctx.config, at: this.clock.t });
  }
}

function setup(opts: { settings?: Partial<Settings>; config?: AccountConfig; fleet?: boolean } = {}) {
  const clock = { t: 1_000_000 };
  const store = new MemoryStore(() => clock.t, opts.fleet ? { fleet: { instance: 'host-a#1:100:aaaa' } } : {});
  const driver = new FakeDriver(clock);
  const accounts = new Map<string, AccountConfig>([['w', opts.config ?? A]]);
  const settings = Settings.parse({ proactive_refresh: false, ...opts.settings });
  const events: Array<{ type: string; account: string }> = [];
  const sleeps: number[] = [];
  const broker = new Broker({
    store,
    config: { getAccount: (n) => accounts.get(n), settings },
    getDriver: (n) => (n === 'oauth2' ? driver : undefined),
    events: { emit: (type, account) => void events.push({ type, account }) },
    log: quiet,
    now: () => clock.t,
    random: () => 0.5,
    // A wait moves the clock, and is recorded.
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.t += ms;
    },
  });
  const grant = (rt = 'rt-0', extra: { access_token?: string; expires_at?: number; bound_to?: string } = {}) =>
    store.replaceGrant('w', { refresh_token: rt, bound_to: identityKey(A), token_type: 'Bearer', obtained_at: clock.t, ...extra });
  return { clock, store, driver, accounts, broker, events, grant, sleeps };
}

describe('Broker', () => {
  it('serves one refresh to 1000 concurrent callers', async () => {
    const { broker, driver, grant } = setup();
    await grant();
    await broker.start();
    const toks = await Promise.all(Array.from({ length: 1000 }, () => broker.getToken({ account: 'w' })));
    expect(driver.calls).toHaveLength(1);
    expect(new Set(toks.map((t) => t.access_token))).toEqual(new Set(['at-1']));
  });

  it('proves an import with the imported refresh token, marked as an import, and commits it in one write; a refusal writes only the end of the mark', async () => {
    const { broker, driver, grant, store, events } = setup();
    await grant('rt-old', { access_token: 'at-old', expires_at: 1_000_000 + 3_600_000 });
    await broker.start();
    store.journal.length = 0;
    let markedWhenSent: unknown;
    driver.onCall = () => (markedWhenSent = { ...store.grants.get('w') });
    driver.answers.push(() => {
      throw new DriverError('invalid_grant', 'the token endpoint answered invalid_grant', { oauthError: 'invalid_grant' });
    });
    const refused = await broker.importTokens('w', { refresh_token: 'rt-bogus' }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'import_refused', status: 400 });
    expect(driver.calls.map((c) => c.token)).toEqual(['rt-bogus']); // the stored refresh token was not sent
    expect(markedWhenSent).toMatchObject({ refresh_token: 'rt-old', in_flight_for: 'import' });
    expect(store.journal.map((j) => j.op)).toEqual(['markImport', 'endImport']);
    expect(store.grants.get('w')).toMatchObject({
      refresh_token: 'rt-old',
      access_token: 'at-old',
      in_flight_since: null,
      status: 'active',
    });
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-old');
    expect(events.map((e) => e.type)).toEqual([]);

    store.journal.length = 0;
    const g = await broker.importTokens('w', { refresh_token: 'rt-new' });
    expect(store.journal).toEqual([
      { op: 'markImport', account: 'w' },
      { op: 'replaceGrant', account: 'w', refresh_token: 'rt-1' },
    ]);
    expect(g).toMatchObject({ generation: 2, status: 'active', in_flight_since: null });
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-1');
  });

  it('serves from memory while the token satisfies min_ttl, with no driver call', async () => {
    const { broker, driver, grant, clock } = setup();
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 3_600_000 });
    await broker.start();
    expect((await broker.getToken({ account: 'w', min_ttl: 60 })).access_token).toBe('at-0');
    expect(driver.calls).toHaveLength(0);
    clock.t += 3_600_000 - 10_000; // 10 s left: less than min_ttl 30
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-1');
    expect(driver.calls).toHaveLength(1);
  });

  it('answers cachedToken (the token lane’s and the proxy’s hot path) only with what getToken would serve at once, never a token short of min_ttl', async () => {
    const { broker, driver, grant, clock } = setup();
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 3_600_000 });
    await broker.start();
    await broker.getToken({ account: 'w' }); // in memory now
    expect(broker.cachedToken({ account: 'w' })?.access_token).toBe('at-0');
    expect(broker.cachedToken({ account: 'other' })).toBeUndefined();
    expect(broker.cachedToken({ account: 'w', scope: 'narrow' })).toBeUndefined(); // another key: a narrowed token is not the base one
    expect(broker.cachedToken({ account: 'w', min_ttl: 3_000 })?.access_token).toBe('at-0'); // min_ttl is held to half the lifetime (rule 1)
    clock.t += 3_600_000 - 10_000; // 10 s left: less than the default min_ttl (30 s)
    expect(broker.cachedToken({ account: 'w' })).toBeUndefined();
    expect(broker.cachedToken({ account: 'w', min_ttl: 5 })?.access_token).toBe('at-0');
    expect(driver.calls).toHaveLength(0); // cachedToken never refreshes: getToken does
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-1');
    expect(broker.cachedToken({ account: 'w' })?.access_token).toBe('at-1');
  });

  it('reads a stored access token on its first use, not at start-up, and serves it from memory after', async () => {
    const { broker, driver, grant, store, clock } = setup();
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 3_600_000 });
    let reads = 0;
    const read = store.getAccessToken.bind(store);
    store.getAccessToken = (account) => (reads++, read(account));
    await broker.start();
    expect(reads).toBe(0);
    // What status shows before the first use comes from the grant's own record.
    expect((await broker.grantState('w')).token?.expires_at).toBe(clock.t + 3_600_000);
    const toks = await Promise.all(Array.from({ length: 20 }, () => broker.getToken({ account: 'w' })));
    expect(new Set(toks.map((t) => t.access_token))).toEqual(new Set(['at-0']));
    expect(reads).toBeGreaterThan(0);
    const after = reads;
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-0');
    expect(reads).toBe(after); // from memory now
    expect(driver.calls).toHaveLength(0);
  });

  it('reads the stored tokens in turns after start-up, so first requests do not read the store', async () => {
    const { broker, driver, store, accounts, clock } = setup();
    const names = Array.from({ length: 1234 }, (_, i) => `a${String(i).padStart(4, '0')}`);
    for (const n of names) {
      accounts.set(n, A);
      await store.replaceGrant(n, {
        refresh_token: `rt-${n}`,
        bound_to: identityKey(A),
        access_token: `at-${n}`,
        token_type: 'Bearer',
        obtained_at: clock.t,
        expires_at: clock.t + 3_600_000,
      });
    }
    await store.replaceGrant('gone', { refresh_token: 'x', bound_to: identityKey(A), access_token: 'at-gone' }); // no account: never read
    await broker.start();
    let singles = 0;
    const read = store.getAccessToken.bind(store);
    store.getAccessToken = (account) => (singles++, read(account));
    await broker.readStoredTokens();
    const toks = await Promise.all(names.map((account) => broker.getToken({ account })));
    expect(toks.map((t) => t.access_token)).toEqual(names.map((n) => `at-${n}`));
    expect(singles).toBe(0);
    expect(driver.calls).toHaveLength(0);
  });

  it('answers before the grants are read: an account asked for first is read on its own, with rule 8 checked; the whole read leaves it as it is', async () => {
    const { broker, driver, store, accounts, clock } = setup();
    const stored = (account: string, boundTo: string | undefined) =>
      store.replaceGrant(account, {
        refresh_token: `rt-${account}`,
        bound_to: boundTo as string, // none: a grant from before bindings were recorded
        access_token: `at-${account}`,
        token_type: 'Bearer',
        obtained_at: clock.t,
        expires_at: clock.t + 3_600_000,
      });
    await stored('w', identityKey(A));
    await stored('unbound', undefined); // from before bindings: takes the account's identity
    accounts.set('unbound', A);
    const moved: AccountConfig = { ...A, issuer: 'https://b.example' };
    await stored('moved', identityKey(A)); // issued by a.example; the account names b.example now
    accounts.set('moved', moved);
    // No start(): the daemon answers before it reads the grants (Broker.readStoredTokens after).
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-w');
    expect((await broker.getToken({ account: 'unbound' })).access_token).toBe('at-unbound');
    expect((await store.getGrant('unbound'))?.bound_to).toBe(identityKey(A));
    await expect(broker.getToken({ account: 'moved' })).rejects.toMatchObject({ status: expect.any(Number) });
    expect(driver.calls.filter((c) => c.kind === 'refresh')).toHaveLength(0);
    // Rule 8: revoked where it came from (a.example), never sent to b.example, and dropped.
    await new Promise((r) => setTimeout(r, 10));
    expect(driver.calls.map((c) => [c.kind, c.config.issuer])).toEqual([['revoke', 'https://a.example']]);
    expect(await store.getGrant('moved')).toBeUndefined();
    // A refresh of an account read on its own, then the whole read: the refreshed token stays.
    await broker.forceRefresh('w');
    await broker.readStoredTokens();
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-1');
    expect((await broker.grantState('w')).grant?.generation).toBe(2);
    expect(driver.calls.filter((c) => c.kind === 'refresh')).toHaveLength(1);
  });

  it('never serves a first read of a stored token that a refresh made stale meanwhile', async () => {
    const { broker, driver, grant, store, clock } = setup();
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 3_600_000 });
    await broker.start();
    // The first read is slow; a forced refresh commits generation 2 while it waits.
    const read = store.getAccessToken.bind(store);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    store.getAccessToken = async (account) => {
      const t = await read(account);
      await gate;
      return t;
    };
    const first = broker.getToken({ account: 'w' });
    await broker.forceRefresh('w');
    release();
    expect((await first).access_token).toBe('at-1');
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-1');
    expect(driver.calls).toHaveLength(1);
  });

  it('marks the grant in flight before the driver call and commits the rotated refresh token before returning', async () => {
    const { broker, driver, grant, store } = setup();
    await grant('rt-0');
    await broker.start();
    let atCall: string[] = [];
    driver.onCall = () => (atCall = store.journal.map((j) => j.op));
    const tok = await broker.getToken({ account: 'w' });
    expect(atCall.at(-1)).toBe('markInFlight');
    expect(store.journal.at(-1)).toEqual({ op: 'commitRefresh', account: 'w', refresh_token: 'rt-1', access_token: 'at-1' });
    expect(tok.access_token).toBe('at-1');
    expect(await store.getGrant('w')).toMatchObject({ refresh_token: 'rt-1', in_flight_since: null, generation: 2 });
    // The next refresh sends the rotated token, never the old one.
    await broker.forceRefresh('w');
    expect(driver.calls.map((c) => c.token)).toEqual(['rt-0', 'rt-1']);
  });

  it('keeps the in-flight mark when the outcome is unknown (timeout), clears it on a definite answer', async () => {
    const { broker, driver, grant, store } = setup();
    await grant('rt-0');
    await broker.start();
    driver.answers.push(() => Promise.reject(new DriverError('transient', 'timed out', { outcomeUnknown: true })));
    await expect(broker.getToken({ account: 'w' })).rejects.toMatchObject({ code: 'upstream_unavailable' });
    expect((await store.getGrant('w'))!.in_flight_since).not.toBeNull();

    const s2 = setup();
    await s2.grant('rt-0');
    await s2.broker.start();
    s2.driver.answers.push(() => Promise.reject(new DriverError('transient', 'HTTP 500', { status: 500 })));
    await expect(s2.broker.getToken({ account: 'w' })).rejects.toMatchObject({ code: 'upstream_unavailable' });
    expect((await s2.store.getGrant('w'))!.in_flight_since).toBeNull();
  });

  it('turns invalid_grant into reauth_required once: cleared mark, an event, no further calls', async () => {
    const { broker, driver, grant, store, events } = setup();
    await grant('rt-0');
    await broker.start();
    driver.answers.push(() => Promise.reject(new DriverError('invalid_grant', 'refused', { oauthError: 'invalid_grant', status: 400 })));
    await expect(broker.getToken({ account: 'w' })).rejects.toMatchObject({ code: 'reauth_required' });
    expect(await store.getGrant('w')).toMatchObject({ status: 'reauth_required', in_flight_since: null });
    expect(events.map((e) => e.type)).toContain('account.reauth_required');
    await expect(broker.getToken({ account: 'w' })).rejects.toMatchObject({ code: 'reauth_required' });
    expect(driver.calls).toHaveLength(1);
  });

  it('backs off exponentially after failures and honours Retry-After', async () => {
    const { broker, driver, grant, clock } = setup({ settings: { backoff_initial_ms: 1000, backoff_max_ms: 60_000 } });
    await grant('rt-0');
    await broker.start();
    const fail = () => Promise.reject(new DriverError('transient', 'HTTP 503', { status: 503 }));
    driver.answers.push(fail, fail, () => Promise.reject(new DriverError('transient', 'HTTP 429', { status: 429, retryAfterMs: 30_000 })));
    const err1 = (await broker.getToken({ account: 'w' }).catch((e: ApiError) => e)) as ApiError;
    expect(err1.retryAfter).toBe(1); // 1 s (jitter 0.5 → ×1.0)
    const early = (await broker.getToken({ account: 'w' }).catch((e: ApiError) => e)) as ApiError;
    expect(early.code).toBe('upstream_unavailable');
    expect(driver.calls).toHaveLength(1); // refused before any call while backing off
    clock.t += 1000;
    const err2 = (await broker.getToken({ account: 'w' }).catch((e: ApiError) => e)) as ApiError;
    expect(err2.retryAfter).toBe(2);
    clock.t += 2000;
    const err3 = (await broker.getToken({ account: 'w' }).catch((e: ApiError) => e)) as ApiError;
    expect(err3.retryAfter).toBe(30); // Retry-After beats the 4 s backoff
    clock.t += 29_000;
    await broker.getToken({ account: 'w' }).catch(() => undefined);
    expect(driver.calls).toHaveLength(3);
    clock.t += 1000;
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-1');
  });

  it('spends at most the attempt budget a minute, whatever the provider answers', async () => {
    const { broker, driver, grant, clock } = setup({
      settings: { max_refreshes_per_minute: 5, backoff_initial_ms: 10, backoff_max_ms: 10 },
    });
    await grant('rt-0');
    await broker.start();
    for (let i = 0; i < 100; i++) driver.answers.push(() => Promise.reject(new DriverError('transient', 'HTTP 500', { status: 500 })));
    const codes = new Set<string>();
    for (let i = 0; i < 100; i++) {
      clock.t += 100;
      const e = await broker.forceRefresh('w').catch((err: ApiError) => err);
      codes.add((e as ApiError).code);
    }
    // 10 s of hammering: within one minute, five calls and no more.
    expect(driver.calls).toHaveLength(5);
    expect(codes).toContain('rate_limited');
  });

  it('serves the cached token while the provider fails, as long as it is valid', async () => {
    const { broker, driver, grant, clock } = setup();
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 20_000 });
    await broker.start();
    driver.answers.push(() => Promise.reject(new DriverError('transient', 'HTTP 500', { status: 500 })));
    // Asked for 60 s it cannot give; the provider is down: the 20 s token is better than nothing.
    expect((await broker.getToken({ account: 'w', min_ttl: 60 })).access_token).toBe('at-0');
    clock.t += 21_000;
    await expect(broker.getToken({ account: 'w' })).rejects.toMatchObject({ code: 'upstream_unavailable' });
  });

  it('never sends a grant to a provider that did not issue it: revokes it at its issuer instead', async () => {
    const { broker, driver, grant, accounts, store } = setup();
    await grant('rt-0', { access_token: 'at-0', expires_at: 1e15 });
    accounts.set('w', { ...A, issuer: 'https://b.example' }); // changed while the daemon was stopped
    await store.putSecret('w', 'client_secret', 'old-secret');
    await broker.start();
    await expect(broker.getToken({ account: 'w' })).rejects.toMatchObject({ code: 'reauth_required' });
    expect(driver.calls.filter((c) => c.kind === 'refresh')).toHaveLength(0);
    const revoke = driver.calls.find((c) => c.kind === 'revoke');
    expect(revoke).toMatchObject({ token: 'rt-0', config: { issuer: 'https://a.example', client_id: 'cli' } });
    expect(await store.getGrant('w')).toBeUndefined();
    expect(await store.getSecret('w', 'client_secret')).toBeUndefined();
  });

  it('adopts a grant stored before identities were recorded', async () => {
    const { broker, driver, grant, store } = setup();
    await grant('rt-0');
    store.grants.get('w')!.bound_to = null;
    await broker.start();
    expect((await store.getGrant('w'))!.bound_to).toBe(identityKey(A));
    await broker.getToken({ account: 'w' });
    expect(driver.calls).toHaveLength(1);
  });

  it('refuses a login that finishes after the account moved to another provider', async () => {
    const { broker, accounts, store } = setup();
    await broker.start();
    const startedWith = identityKey(A);
    accounts.set('w', { ...A, client_id: 'other' });
    const set: TokenSet = { access_token: 'at-x', token_type: 'Bearer', refresh_token: 'rt-x', expires_in: 60 };
    await expect(broker.installLogin('w', set, startedWith)).rejects.toMatchObject({ code: 'conflict' });
    expect(await store.getGrant('w')).toBeUndefined();
  });

  it('runs a keep-alive refresh before a provider forgets an idle refresh token, with no client asking', async () => {
    const { broker, driver, grant, clock, accounts } = setup();
    accounts.set('w', { ...A, refresh_idle_days: 30 });
    await grant('rt-0', { access_token: 'at-0', expires_at: null as never });
    const g = (broker as unknown as { deps: { store: MemoryStore } }).deps.store.grants.get('w')!;
    g.obtained_at = clock.t - 28 * 86_400_000; // unused for 28 of 30 days: due (3 days of margin)
    await broker.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(driver.calls.map((c) => c.token)).toEqual(['rt-0']);

    const fresh = setup();
    fresh.accounts.set('w', { ...A, refresh_idle_days: 30 });
    await fresh.grant('rt-0', { access_token: 'at-0', expires_at: null as never });
    await fresh.broker.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(fresh.driver.calls).toHaveLength(0); // used just now: nothing to do for 27 days
    fresh.broker.close();
    broker.close();
  });

  it('announces a refresh token that expires within a week, once', async () => {
    const { broker, grant, clock, events, store } = setup();
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 3_600_000 });
    store.grants.get('w')!.refresh_expires_at = clock.t + 3 * 86_400_000;
    await broker.start();
    expect(events.filter((e) => e.type === 'account.reauth_soon')).toEqual([{ type: 'account.reauth_soon', account: 'w' }]);
    await broker.forceRefresh('w'); // the new refresh token says nothing of its expiry: nothing more
    expect(events.filter((e) => e.type === 'account.reauth_soon')).toHaveLength(1);
    broker.close();
  });

  it('falls back to the recover step when the refresh token is refused, and says so', async () => {
    const { broker, driver, grant, events, store } = setup({ config: { ...A, flow: 'client-credentials' } });
    await grant('rt-0');
    await broker.start();
    let recovers = 0;
    (driver as unknown as Driver).recover = async () => {
      recovers++;
      return { access_token: 'at-cc', token_type: 'Bearer', expires_in: 600 };
    };
    (driver as unknown as Driver).canRecover = () => true;
    driver.answers.push(() => Promise.reject(new DriverError('invalid_grant', 'refused', { oauthError: 'invalid_grant' })));
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-cc');
    expect(recovers).toBe(1);
    expect(events.map((e) => e.type)).toContain('token.recovered');
    expect(await store.getGrant('w')).toMatchObject({ status: 'active', refresh_token: null, access_token: 'at-cc' });
  });

  it('costs at most the attempt budget when both the refresh and the recover step always fail', async () => {
    const { broker, driver, grant, clock } = setup({
      config: { ...A, flow: 'client-credentials' },
      settings: { max_refreshes_per_minute: 4, backoff_initial_ms: 10, backoff_max_ms: 10 },
    });
    await grant('rt-0');
    await broker.start();
    let recovers = 0;
    (driver as unknown as Driver).recover = async () => {
      recovers++;
      throw new DriverError('transient', 'HTTP 503', { status: 503 });
    };
    (driver as unknown as Driver).canRecover = () => true;
    for (let i = 0; i < 50; i++)
      driver.answers.push(() => Promise.reject(new DriverError('invalid_grant', 'refused', { oauthError: 'invalid_grant' })));
    for (let i = 0; i < 100; i++) {
      clock.t += 200;
      await broker.getToken({ account: 'w' }).catch(() => undefined);
    }
    expect(driver.calls.filter((c) => c.kind === 'refresh').length + recovers).toBe(4);
  });
});

/**
 * The broker as one daemon of a fleet (docs/fleet.md): the store stands for the shared
 * database, and the test plays the other daemons by writing to it.
 */
describe('Broker in a fleet', () => {
  const other = (store: MemoryStore, rt: string, at: string, expiresAt: number) =>
    store.commitRefresh('w', store.grants.get('w')!.generation, {
      refresh_token: rt,
      access_token: at,
      token_type: 'Bearer',
      expires_at: expiresAt,
      obtained_at: expiresAt - 3_600_000,
      scope: null,
    });

  it('uses the rotation another daemon committed, found under the lock, and calls nobody', async () => {
    const { broker, driver, grant, store, clock } = setup({ fleet: true });
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 10_000 });
    await broker.start();
    clock.t += 20_000; // expired here; meanwhile another daemon rotated (its notification not seen yet)
    await other(store, 'rt-b', 'at-b', clock.t + 3_600_000);
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-b');
    expect(driver.calls).toHaveLength(0);
    // The next refresh sends the rotated refresh token, never the spent one.
    await broker.forceRefresh('w');
    expect(driver.calls.map((c) => c.token)).toEqual(['rt-b']);
  });

  it('a stored token read for the first time after another daemon rotated the grant is not served: the rotation is', async () => {
    const { broker, driver, grant, store, clock } = setup({ fleet: true });
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 3_600_000 });
    await broker.start();
    await other(store, 'rt-b', 'at-b', clock.t + 3_600_000); // before this daemon read at-0
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-b');
    expect(driver.calls).toHaveLength(0);
  });

  it('takes a notified rotation into memory, so the next request is served without the store', async () => {
    const { broker, driver, grant, store, clock } = setup({ fleet: true });
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 3_600_000 });
    await broker.start();
    await other(store, 'rt-b', 'at-b', clock.t + 3_600_000);
    store.fleet!.handlers!.grantChanged('w', 2);
    await new Promise((r) => setTimeout(r, 10));
    store.down = true; // the token comes from memory
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-b');
    expect(driver.calls).toHaveLength(0);
  });

  it('waits while the daemon that marked the grant in flight may still commit, then refreshes and names it when refused', async () => {
    const { broker, driver, grant, store, sleeps } = setup({ fleet: true });
    await grant('rt-0');
    await broker.start();
    Object.assign(store.grants.get('w')!, { in_flight_since: 999_000, in_flight_by: 'host-b#2:200:bbbb' });
    store.fleet!.alive.add('host-b#2:200:bbbb');
    await expect(broker.forceRefresh('w')).rejects.toMatchObject({ code: 'upstream_unavailable', retryAfter: 2 });
    expect(driver.calls).toHaveLength(0);
    store.fleet!.alive.clear(); // it died: its connection is gone
    driver.answers.push(() => Promise.reject(new DriverError('invalid_grant', 'refused', { oauthError: 'invalid_grant', status: 400 })));
    const err = await broker.forceRefresh('w').catch((e: ApiError) => e);
    expect(err).toMatchObject({ code: 'reauth_required' });
    expect((err as ApiError).message).toMatch(
      /a refresh by another daemon of the fleet \(host-b#2:200:bbbb\) interrupted at 1970-01-01T00:16:39.000Z/,
    );
    // Its request left 1 s before: the token went again once that request's 10 s were over.
    expect(sleeps).toEqual([9_000]);
    expect(driver.calls.map((c) => c.at)).toEqual([1_009_000]);
  });

  it('sends the refresh token of an interrupted refresh again only once that request is surely over', async () => {
    const { broker, driver, grant, store, sleeps, clock } = setup({ settings: { http_timeout_ms: 2_000 } });
    await grant('rt-0');
    await broker.start();
    // A daemon killed mid-refresh 500 ms ago: the provider may still be answering its request.
    await store.markInFlight('w', clock.t - 500);
    await broker.forceRefresh('w');
    expect(sleeps).toEqual([1_500]);
    expect(driver.calls.map((c) => [c.token, c.at])).toEqual([['rt-0', 1_001_500]]);
    // A mark older than the timeout, or none: no wait.
    await store.markInFlight('w', clock.t - 2_000);
    await broker.forceRefresh('w');
    await broker.forceRefresh('w');
    expect(sleeps).toEqual([1_500]);
    expect(driver.calls).toHaveLength(3);
  });

  it('does not call the provider when the in-flight mark cannot be written (the database is down)', async () => {
    const { broker, driver, grant, store } = setup({ fleet: true });
    await grant('rt-0');
    await broker.start();
    store.markInFlight = async () => {
      throw new StoreError('unavailable', 'cannot reach the test database');
    };
    await expect(broker.forceRefresh('w')).rejects.toMatchObject({ code: 'upstream_unavailable' });
    expect(driver.calls).toHaveLength(0);
  });

  it('serves a rotation the database could not take, and commits it before the next refresh', async () => {
    const { broker, driver, grant, store, clock } = setup({ fleet: true });
    await grant('rt-0', { access_token: 'at-0', expires_at: clock.t + 3_600_000 });
    await broker.start();
    driver.answers.push((rt) => {
      store.down = true; // the database goes while the provider answers
      return { access_token: 'at-1', token_type: 'Bearer', expires_in: 3600, refresh_token: `${rt}-next` };
    });
    await broker.forceRefresh('w');
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-1');
    expect(store.grants.get('w')).toMatchObject({ refresh_token: 'rt-0', generation: 1 });
    await expect(broker.forceRefresh('w')).rejects.toMatchObject({ code: 'upstream_unavailable' });
    store.down = false;
    clock.t += 60_000; // past the backoff
    await broker.forceRefresh('w');
    // The held rotation went in first; the refresh after it sent its refresh token.
    expect(driver.calls.map((c) => c.token)).toEqual(['rt-0', 'rt-0-next']);
    expect(store.grants.get('w')).toMatchObject({ generation: 3 });
  });

  it("leaves the fleet's grant alone when this daemon's config names another client", async () => {
    const { broker, driver, grant, store, accounts } = setup({ fleet: true });
    await grant('rt-0', { access_token: 'at-0', expires_at: 1e15 });
    accounts.set('w', { ...A, client_id: 'other' });
    await broker.start();
    await expect(broker.getToken({ account: 'w' })).rejects.toMatchObject({ code: 'conflict' });
    await expect(
      broker.installLogin('w', { access_token: 'x', token_type: 'Bearer', refresh_token: 'y' }, identityKey({ ...A, client_id: 'other' })),
    ).rejects.toMatchObject({ code: 'conflict' });
    expect(driver.calls).toHaveLength(0); // no refresh, no revocation
    expect(store.grants.get('w')).toMatchObject({ refresh_token: 'rt-0', generation: 1 });
  });
});
