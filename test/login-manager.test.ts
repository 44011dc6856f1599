/**
 * The login manager in-process, with a real SQLite store and a scripted driver: lifecycle
 * edges that are slow or awkward through a real provider (a browser login nobody finishes,
 * shutdown, leftovers of a previous daemon, a grant that cannot be stored).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Settings } from '../src/protocol/config-file.js';
import type { DevicePoll, Driver } from '../src/daemon/drivers/driver.js';
import { ApiError } from '../src/daemon/errors.js';
import { EventBus } from '../src/daemon/events.js';
import { identityKey } from '../src/daemon/grant-identity.js';
import { LoginManager, type LoginManagerDeps } from '../src/daemon/logins.js';
import type { Logger } from '../src/daemon/log.js';
import { openStore } from '../src/daemon/store/sqlite-store.js';
import type { Store } from '../src/daemon/store/types.js';
import { AccountConfig, type AccountConfigInput } from '../src/protocol/api.js';
import { DaemonEvent } from '../src/protocol/events.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

describe('login manager', () => {
  let dir: string;
  let store: Store;
  let events: DaemonEvent[];
  let polls: number;
  let pollAnswer: () => Promise<DevicePoll>;
  let installed: string[];
  let accounts: Record<string, AccountConfig>;

  const driver: Driver = {
    name: 'oauth2',
    refresh: async () => {
      throw new Error('unused');
    },
    startDeviceLogin: async () => ({
      device_code: 'dc',
      user_code: 'CODE-1234',
      verification_uri: 'https://as.example/device',
      expires_in: 600,
      interval: 1,
    }),
    pollDeviceLogin: async () => {
      polls++;
      return pollAnswer();
    },
    authorizationUrl: async (_ctx, p) => `https://as.example/authorize?state=${p.state}&redirect_uri=${encodeURIComponent(p.redirect_uri)}`,
    exchangeCode: async () => ({ access_token: 'at', token_type: 'Bearer', refresh_token: 'rt' }),
  };

  function manager(extra: Partial<LoginManagerDeps> = {}): LoginManager {
    const bus = new EventBus();
    bus.subscribe((e) => events.push(DaemonEvent.parse(e))); // each as its schema says
    return new LoginManager({
      store,
      config: { getAccount: (n: string) => accounts[n], settings: Settings.parse({ device_poll_unit_ms: 1, http_timeout_ms: 1000 }) },
      broker: {
        installLogin: async (account: string) => {
          installed.push(account);
          return {} as never;
        },
      },
      events: bus,
      log: quiet,
      getDriver: (name) => (name === 'oauth2' ? driver : undefined),
      env: {},
      platform: 'linux',
      ...extra,
    });
  }

  const account = (c: Partial<AccountConfigInput> = {}) =>
    AccountConfig.parse({ client_id: 'app', token_endpoint: 'https://as.example/token', ...c });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-lm-'));
    fs.chmodSync(dir, 0o700);
    store = openStore({ file: path.join(dir, 'tokend.db'), key: randomBytes(32) });
    events = [];
    polls = 0;
    pollAnswer = async () => ({ status: 'pending' });
    installed = [];
    accounts = { work: account() };
  });
  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('expires a browser login nobody finishes, and closes its listener', async () => {
    const m = manager({ browserTtlMs: 1000 });
    const login = await m.start('work', 'browser');
    const redirect = new URL(new URL(login.authorization_url!).searchParams.get('redirect_uri')!);
    expect((await fetch(new URL('/callback?state=wrong', redirect))).status).toBe(400); // listening meanwhile
    // Its secrets are stored (sealed) while it is pending, and gone once it expired.
    const state = new URL(login.authorization_url!).searchParams.get('state');
    expect((await store.getLogin(login.id))!.secrets).toMatchObject({
      state,
      authorization_url: login.authorization_url,
      code_verifier: expect.any(String),
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await m.get(login.id)).toMatchObject({ status: 'expired', error: { code: 'expired' }, authorization_url: null });
    expect((await store.getLogin(login.id))!.secrets).toBeUndefined();
    expect(m.pendingFor('work')).toBeUndefined();
    expect(events.map((e) => [e.type, 'status' in e ? e.status : undefined])).toEqual([
      ['login.pending', 'pending'],
      ['login.failed', 'expired'],
    ]);
    await expect(fetch(redirect)).rejects.toThrow();
    expect(installed).toEqual([]);
  });

  it('on close, keeps pending logins pending with their sealed secrets and stops polling; the next manager takes them up', async () => {
    const m = manager();
    const login = await m.start('work', 'device', { task: 't-9' });
    expect((await store.getLogin(login.id))!.secrets).toEqual({ device_code: 'dc' });
    await new Promise((r) => setTimeout(r, 30));
    m.close();
    const seen = polls;
    await new Promise((r) => setTimeout(r, 30));
    expect(polls).toBe(seen);
    expect(await store.getLogin(login.id)).toMatchObject({ status: 'pending', secrets: { device_code: 'dc' } });
    await expect(m.start('work', 'device')).rejects.toMatchObject({ code: 'upstream_unavailable' });

    const next = manager();
    pollAnswer = async () => ({ status: 'tokens', tokens: { access_token: 'at', token_type: 'Bearer', refresh_token: 'rt' } });
    expect(await next.resumeStored()).toBe(1);
    expect(next.pendingFor('work')).toMatchObject({ id: login.id, user_code: 'CODE-1234', task: 't-9' });
    await new Promise((r) => setTimeout(r, 100));
    expect(await next.get(login.id)).toMatchObject({ status: 'active', task: 't-9' });
    expect(installed).toEqual(['work']);
    expect((await store.getLogin(login.id))!.secrets).toBeUndefined();
    next.close();
  });

  it('at start-up, takes up what a previous daemon left pending, ends what cannot go on, prunes old finished logins', async () => {
    const week = 7 * 24 * 3600_000;
    const identity = identityKey(accounts.work!);
    const base = { account: 'work', flow: 'device', data: { expires_at: Date.now() + 60_000, user_code: 'X', error: null, identity } };
    const pending = (id: string, data: Record<string, unknown>, account = 'work') =>
      store.putLogin({
        ...base,
        account,
        data: { ...base.data, ...data },
        id,
        status: 'pending',
        created_at: Date.now() - 1000,
        updated_at: Date.now() - 1000,
        secrets: { device_code: `dc-${id}` },
      });
    await pending('left-pending', {});
    await pending('timed-out', { expires_at: Date.now() - 1 }, 'other');
    await pending('removed', {}, 'gone');
    await pending('older-tokend', { identity: undefined }, 'third');
    accounts.other = account();
    accounts.third = account();
    await store.putLogin({
      ...base,
      id: 'old-done',
      status: 'active',
      created_at: Date.now() - 2 * week,
      updated_at: Date.now() - 2 * week,
    });
    await store.putLogin({ ...base, id: 'recent-done', status: 'failed', created_at: Date.now() - 1000, updated_at: Date.now() - 1000 });
    const m = manager();
    expect(await m.resumeStored()).toBe(1);
    expect(await m.get('left-pending')).toMatchObject({ status: 'pending', user_code: 'X' });
    expect((await store.getLogin('left-pending'))!.secrets).toEqual({ device_code: 'dc-left-pending' });
    await new Promise((r) => setTimeout(r, 30));
    expect(polls).toBeGreaterThan(0); // polling again
    expect(await m.get('timed-out')).toMatchObject({ status: 'expired', error: { code: 'expired_token' } });
    expect(await m.get('removed')).toMatchObject({ status: 'failed', error: { code: 'account_removed' } });
    expect(await m.get('older-tokend')).toMatchObject({ status: 'expired', error: { code: 'daemon_stopped' } });
    for (const id of ['timed-out', 'removed', 'older-tokend']) expect((await store.getLogin(id))!.secrets).toBeUndefined();
    await expect(m.get('old-done')).rejects.toThrow(ApiError);
    expect((await m.get('recent-done')).status).toBe('failed');
    m.close();
  });

  it('a browser login taken up after a restart listens on its port again; ends failed when another program took it', async () => {
    const m = manager();
    const first = await m.start('work', 'browser');
    const redirect = new URL(new URL(first.authorization_url!).searchParams.get('redirect_uri')!);
    m.close();
    const again = manager();
    expect(await again.resumeStored()).toBe(1);
    const state = new URL(first.authorization_url!).searchParams.get('state')!;
    const answer = await fetch(new URL(`/callback?code=c&state=${state}`, redirect));
    expect(answer.status).toBe(200);
    expect(await again.get(first.id)).toMatchObject({ status: 'active' });
    again.close();

    const holder = manager();
    const second = await holder.start('work', 'browser');
    const port = Number(new URL(new URL(second.authorization_url!).searchParams.get('redirect_uri')!).port);
    const third = manager();
    // The first manager is not closed: its listener holds the port, as another program would.
    expect(await third.resumeStored()).toBe(1);
    const ended = await third.get(second.id);
    expect(ended).toMatchObject({ status: 'failed', error: { code: 'redirect_port_taken' } });
    expect(ended.error!.message).toContain(`port ${port}`);
    expect(ended.error!.message).toContain('taken by another program');
    third.close();
    holder.close();
  });

  it('by state: a callback that arrives while the code is being exchanged gets the login as pending; the first gets it active', async () => {
    let release!: () => void;
    let entered!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const exchanging = new Promise<void>((r) => (entered = r));
    const slow: Driver = {
      ...driver,
      exchangeCode: async () => {
        entered();
        await gate;
        return { access_token: 'at', token_type: 'Bearer', refresh_token: 'rt' };
      },
    };
    const m = manager({ getDriver: () => slow });
    const login = await m.start('work', 'browser');
    const auth = new URL(login.authorization_url!);
    const callback = new URL(auth.searchParams.get('redirect_uri')!);
    callback.search = `?code=c&state=${auth.searchParams.get('state')}`;
    const first = m.completeByState(callback.href);
    await exchanging; // the first one's code is being exchanged
    expect(await m.completeByState(callback.href)).toMatchObject({ id: login.id, status: 'pending' });
    release();
    expect(await first).toMatchObject({ id: login.id, status: 'active' });
    await expect(m.completeByState(callback.href)).rejects.toMatchObject({ code: 'conflict' });
    await expect(m.completeByState(callback.href.replace(/state=[^&]+/, 'state=unknown'))).rejects.toMatchObject({
      code: 'login_not_found',
    });
    expect(installed).toEqual(['work']);
    m.close();
  });

  it('bounds a login by ttl_s, the account default and the maximum; refuses another flow than the pending one', async () => {
    const m = manager({
      config: { getAccount: (n: string) => accounts[n], settings: Settings.parse({ device_poll_unit_ms: 1, login_ttl_max_s: 3600 }) },
    });
    const at = (l: { created_at: string; expires_at: string }) => (Date.parse(l.expires_at) - Date.parse(l.created_at)) / 1000;
    await expect(m.start('work', 'browser', { ttlS: 3601 })).rejects.toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('3600'),
    });
    const browser = await m.start('work', 'browser', { ttlS: 1800 });
    expect(at(browser)).toBe(1800);
    // Another flow while it is pending: 409 naming it; the same flow (or none) joins.
    await expect(m.start('work', 'device')).rejects.toMatchObject({
      code: 'login_pending',
      message: expect.stringContaining(`browser login pending (${browser.id})`),
    });
    expect((await m.start('work', 'browser')).id).toBe(browser.id);
    expect((await m.start('work')).id).toBe(browser.id);
    await m.cancel(browser.id);
    // A device login: the device code's expires_in (600 s) when it is sooner than ttl_s.
    expect(at(await m.start('work', 'device', { ttlS: 3000 }))).toBe(600);
    m.close();
    accounts.slow = account({ login_ttl_s: 7200 });
    const n = manager({ config: { getAccount: (a: string) => accounts[a], settings: Settings.parse({ login_ttl_max_s: 3600 }) } });
    expect(at(await n.start('slow', 'browser'))).toBe(3600); // the account default, capped at the maximum
    expect(at(await n.start('work', 'browser'))).toBe(600); // the default: 10 minutes
    n.close();
  });

  it('fails the login, and keeps whatever grant there was, when the new grant cannot be stored', async () => {
    const m = manager({
      broker: {
        installLogin: async () => {
          throw new Error('disk full');
        },
      },
    });
    pollAnswer = async () => ({ status: 'tokens', tokens: { access_token: 'at', token_type: 'Bearer', refresh_token: 'rt' } });
    const login = await m.start('work', 'device');
    await new Promise((r) => setTimeout(r, 50));
    expect(await m.get(login.id)).toMatchObject({ status: 'failed', error: { code: 'internal' } });
    expect(JSON.stringify(await m.get(login.id))).not.toContain('disk full');
  });

  it('picks the flow: the request’s, else the account’s, else the daemon’s environment; refuses non-interactive accounts', async () => {
    accounts.dev = account({ flow: 'device' });
    accounts.svc = account({ flow: 'client-credentials' });
    const headless = manager();
    expect((await headless.start('dev')).flow).toBe('device');
    expect((await headless.start('work')).flow).toBe('device'); // no display
    const desktop = manager({ env: { DISPLAY: ':0' } });
    accounts.work2 = account();
    expect((await desktop.start('work2')).flow).toBe('browser');
    await expect(headless.start('svc')).rejects.toMatchObject({ code: 'invalid_request' });
    expect((await headless.start('svc', 'device')).flow).toBe('device'); // asked for explicitly
    await expect(headless.start('nobody')).rejects.toMatchObject({ code: 'not_found' });
    for (const m of [headless, desktop]) m.close();
  });

  it('refuses a flow the driver cannot do', async () => {
    const bare: Driver = { name: 'oauth2', refresh: driver.refresh };
    const m = manager({ getDriver: () => bare });
    await expect(m.start('work', 'device')).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(m.start('work', 'browser')).rejects.toMatchObject({ code: 'invalid_request' });
  });

  it('forgets finished logins after the retention while running; keeps pending ones', async () => {
    let clock = Date.now();
    const m = manager({ now: () => clock });
    await m.resumeStored();
    const old = await m.start('work', 'device');
    await m.cancel(old.id);
    const pending = await m.start('work', 'device');
    clock += 7 * 24 * 3_600_000 + 1000; // the default retention is a week
    expect(await m.prune()).toBe(1);
    await expect(m.get(old.id)).rejects.toThrow();
    expect((await m.get(pending.id)).status).toBe('pending');
    expect((await m.list({ status: 'pending' })).map((l) => l.id)).toEqual([pending.id]);
    m.close();
  });

  it('cancels a pending login: failed with code cancelled, polling stops', async () => {
    const m = manager();
    const login = await m.start('work', 'device', { task: 't-1' });
    expect(login.task).toBe('t-1');
    const cancelled = await m.cancel(login.id);
    expect(cancelled).toMatchObject({ status: 'failed', error: { code: 'cancelled' }, task: 't-1' });
    const seen = polls;
    await new Promise((r) => setTimeout(r, 30));
    expect(polls).toBe(seen);
    expect(await m.lastFinished('work')).toMatchObject({ id: login.id, status: 'failed' });
    await expect(m.cancel('nope')).rejects.toThrow(ApiError);
    m.close();
  });
});
