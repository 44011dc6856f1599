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
import { TokendError } from '../src/daemon/errors.js';
import { EventBus } from '../src/daemon/events.js';
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

  it('on close, records pending logins as expired and stops polling', async () => {
    const m = manager();
    const login = await m.start('work', 'device');
    expect((await store.getLogin(login.id))!.secrets).toEqual({ device_code: 'dc' });
    await new Promise((r) => setTimeout(r, 30));
    m.close();
    const seen = polls;
    await new Promise((r) => setTimeout(r, 30));
    expect(polls).toBe(seen);
    expect(await store.getLogin(login.id)).toMatchObject({ status: 'expired', data: { error: { code: 'daemon_stopped' } } });
    expect((await store.getLogin(login.id))!.secrets).toBeUndefined();
    await expect(m.start('work', 'device')).rejects.toMatchObject({ code: 'upstream_unavailable' });
  });

  it('at start-up, expires what a previous daemon left pending and prunes old finished logins', async () => {
    const week = 7 * 24 * 3600_000;
    const base = { account: 'work', flow: 'device', data: { expires_at: Date.now() + 60_000, user_code: 'X', error: null } };
    await store.putLogin({
      ...base,
      id: 'left-pending',
      status: 'pending',
      created_at: Date.now() - 1000,
      updated_at: Date.now() - 1000,
      secrets: { device_code: 'dc' },
    });
    await store.putLogin({
      ...base,
      id: 'old-done',
      status: 'active',
      created_at: Date.now() - 2 * week,
      updated_at: Date.now() - 2 * week,
    });
    await store.putLogin({ ...base, id: 'recent-done', status: 'failed', created_at: Date.now() - 1000, updated_at: Date.now() - 1000 });
    const m = manager();
    expect(await m.expireStale()).toBe(1);
    expect(await m.get('left-pending')).toMatchObject({ status: 'expired', error: { code: 'daemon_stopped' }, user_code: 'X' });
    expect((await store.getLogin('left-pending'))!.secrets).toBeUndefined();
    await expect(m.get('old-done')).rejects.toThrow(TokendError);
    expect((await m.get('recent-done')).status).toBe('failed');
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
    await m.expireStale();
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
    await expect(m.cancel('nope')).rejects.toThrow(TokendError);
    m.close();
  });
});
