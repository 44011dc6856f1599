/**
 * Clocks that do not behave: a laptop that sleeps for hours (timers run on a monotonic
 * clock, which stops meanwhile), a wall clock set forward or back. The proactive refresh
 * re-arms from the wall-clock expiry after a jump, and no expired token is ever served.
 * The broker with a fake wall clock and a fake monotonic clock; and once for real, the
 * daemon under libfaketime with its wall clock moved two hours ahead.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../src/daemon/broker.js';
import type { Driver, DriverContext, TokenSet } from '../src/daemon/drivers/driver.js';
import { identityKey } from '../src/daemon/grant-identity.js';
import type { Logger } from '../src/daemon/log.js';
import type { AccountConfig } from '../src/protocol/api.js';
import { Settings } from '../src/protocol/config-file.js';
import { DaemonProcess, sleep, tempHome, writeSettings, putConfAccount, postConfGrant } from './support/daemon.js';
import { startIdp, type TestIdp } from './support/idp.js';
import { MemoryStore } from './support/memory-store.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const A: AccountConfig = { driver: 'oauth2', issuer: 'https://a.example', client_id: 'cli', scopes: [], hosts: [] };
const HOUR = 3_600_000;

function setup() {
  const clock = { wall: 1_000_000_000, mono: 0 };
  const store = new MemoryStore(() => clock.wall);
  let n = 0;
  const refreshed: number[] = [];
  const driver: Driver = {
    name: 'oauth2',
    async refresh(_ctx: DriverContext, rt: string): Promise<TokenSet> {
      refreshed.push(clock.wall);
      n++;
      return { access_token: `at-${n}`, token_type: 'Bearer', expires_in: 3600, refresh_token: `${rt}+` };
    },
  };
  const broker = new Broker({
    store,
    config: { getAccount: (a) => (a === 'w' ? A : undefined), settings: Settings.parse({ clock_check_ms: 3_600_000 }) },
    getDriver: () => driver,
    events: { emit() {} },
    log: quiet,
    now: () => clock.wall,
    monotonic: () => clock.mono,
    random: () => 0.5,
  });
  return { clock, store, broker, refreshed };
}

describe('clock faults (the broker, fake clocks)', () => {
  it('after a long sleep (wall clock ahead, monotonic not), re-arms and refreshes at once; never serves the expired token', async () => {
    const { clock, store, broker, refreshed } = setup();
    // A token valid one more hour: its proactive refresh is armed ~55 minutes out (monotonic).
    await store.replaceGrant('w', {
      refresh_token: 'rt',
      bound_to: identityKey(A),
      access_token: 'at-0',
      token_type: 'Bearer',
      obtained_at: clock.wall,
      expires_at: clock.wall + HOUR,
    });
    await broker.start();
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-0');
    // The laptop sleeps three hours: the wall clock moves, the monotonic clock does not.
    clock.wall += 3 * HOUR;
    // Before any timer: a request checks the wall clock and refreshes instead of serving at-0.
    expect((await broker.getToken({ account: 'w' })).access_token).toBe('at-1');
    // And the clock check re-arms the timers from the wall clock.
    expect(broker.checkClock()).toBe(true);
    expect(broker.checkClock()).toBe(false); // once, not again without a new jump
    broker.close();
    expect(refreshed).toHaveLength(1);
  });

  it('a re-arm after a jump fires the proactive refresh that became due while asleep', async () => {
    const { clock, store, broker, refreshed } = setup();
    await store.replaceGrant('w', {
      refresh_token: 'rt',
      bound_to: identityKey(A),
      access_token: 'at-0',
      token_type: 'Bearer',
      obtained_at: clock.wall,
      expires_at: clock.wall + HOUR,
    });
    await broker.start();
    clock.wall += 2 * HOUR; // asleep past the token's expiry; no request comes
    expect(broker.checkClock()).toBe(true);
    await sleep(50); // the re-armed timer is due now: it fires at once
    expect(refreshed).toEqual([clock.wall]);
    broker.close();
  });

  it('a wall clock set back is noticed too (the timers would fire late by the same amount otherwise)', async () => {
    const { clock, store, broker } = setup();
    await store.replaceGrant('w', {
      refresh_token: 'rt',
      bound_to: identityKey(A),
      access_token: 'at-0',
      token_type: 'Bearer',
      obtained_at: clock.wall,
      expires_at: clock.wall + HOUR,
    });
    await broker.start();
    clock.mono += 60_000;
    clock.wall -= 10 * 60_000; // a minute passed, yet the clock says ten minutes earlier
    expect(broker.checkClock()).toBe(true);
    clock.mono += 1000;
    clock.wall += 1000; // ordinary time passing is not a jump
    expect(broker.checkClock()).toBe(false);
    broker.close();
  });
});

/** Debian's libfaketime, when installed (.ci/run installs it). */
const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1'].find(
  (f) => fs.existsSync(f),
);

describe.runIf(LIBFAKETIME)('clock faults (the real daemon under libfaketime)', () => {
  let idp: TestIdp;
  beforeAll(async () => {
    idp = await startIdp({ accessTokenTtl: 3600 });
  });
  afterAll(async () => {
    await idp.close();
  });

  it('a wall clock moved two hours ahead with the monotonic clock left alone: the daemon refreshes by itself, and serves no expired token', async () => {
    const h = tempHome();
    const stamp = path.join(h.home, 'faketime');
    fs.writeFileSync(stamp, '+0\n');
    writeSettings(h.home, { clock_check_ms: 200 });
    // FAKETIME_TIMESTAMP_FILE is re-read on every call (FAKETIME_NO_CACHE); the monotonic
    // clock stays real, as during a suspend.
    const env = {
      ...h.env,
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: stamp,
      FAKETIME_NO_CACHE: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    };
    const d = new DaemonProcess(h.home, env);
    try {
      await d.start();
      await putConfAccount(d, idp.issuer, 'w');
      await postConfGrant(d, idp, 'w');
      idp.resetStats();
      fs.writeFileSync(stamp, '+2h\n'); // the tokens (1 h) are expired by the daemon's wall clock
      for (let i = 0; i < 100 && idp.stats.refreshes === 0; i++) await sleep(50);
      expect(idp.stats.refreshes).toBe(1); // the re-armed timer, with no request
      expect(d.logs).toContain('timers re-armed');
      const tok = await d.request('POST', '/v1/token', { account: 'w' });
      expect(tok.status).toBe(200);
      expect(Date.parse(tok.json.expires_at)).toBeGreaterThan(Date.now() + 2 * HOUR); // valid by the daemon's clock
    } finally {
      await d.stop('SIGKILL');
      h.cleanup();
    }
  });
});

// Without libfaketime the real-daemon case is skipped; say so in the run's output.
if (!LIBFAKETIME && spawnSync('sh', ['-c', 'command -v faketime']).status !== 0) {
  console.warn('clock.test.ts: libfaketime is not installed (apt-get install faketime); the real-daemon case is skipped');
}
