/**
 * The Broker's parts (src/daemon/broker/) assembled as the Broker front assembles them, over a
 * MemoryStore, a scripted driver and a clock the test moves: for the tests of each part alone.
 */
import type { AccountConfig } from '../../src/protocol/api.js';
import { Settings } from '../../src/protocol/config-file.js';
import type { CachedToken } from '../../src/daemon/cached-token.js';
import type { Driver, DriverContext, RefreshOptions, TokenSet } from '../../src/daemon/drivers/driver.js';
import { FleetSync } from '../../src/daemon/broker/fleet-sync.js';
import { GrantMemory, type AccountLanes, type RefreshRequest } from '../../src/daemon/broker/grant-memory.js';
import type { RefreshParts } from '../../src/daemon/broker/refresh-attempt.js';
import { Revocation } from '../../src/daemon/broker/revocation.js';
import { Scheduler } from '../../src/daemon/broker/schedule.js';
import { identityKey } from '../../src/daemon/grant-identity.js';
import type { Logger } from '../../src/daemon/log.js';
import { MemoryStore } from './memory-store.js';

export const ACCOUNT: AccountConfig = { driver: 'oauth2', issuer: 'https://a.example', client_id: 'cli', scopes: [], hosts: [] };

/** A driver that answers from a script and records every call, with what the store held then. */
export class ScriptedDriver implements Driver {
  name = 'oauth2';
  calls: Array<{ kind: 'refresh' | 'recover' | 'revoke' | 'checkAccessToken'; token?: string; ctx: DriverContext; opts?: RefreshOptions }> =
    [];
  refreshAnswers: Array<() => TokenSet> = [];
  recoverAnswers: Array<() => TokenSet> = [];
  onCall?: () => void;
  recover?: Driver['recover'];
  canRecover?: Driver['canRecover'];
  checkAccessToken?: Driver['checkAccessToken'];
  private n = 0;
  async refresh(ctx: DriverContext, token: string, opts: RefreshOptions): Promise<TokenSet> {
    this.calls.push({ kind: 'refresh', token, ctx, opts });
    this.onCall?.();
    const answer = this.refreshAnswers.shift();
    if (answer) return answer();
    this.n++;
    return { access_token: `at-${this.n}`, token_type: 'Bearer', expires_in: 3600, refresh_token: `rt-${this.n}` };
  }
  async revoke(ctx: DriverContext, token: string): Promise<void> {
    this.calls.push({ kind: 'revoke', token, ctx });
  }
  /** Give the driver a recover step (client credentials, say) answering from `recoverAnswers`. */
  withRecover(): this {
    this.canRecover = () => true;
    this.recover = async (ctx, opts) => {
      this.calls.push({ kind: 'recover', ctx, opts });
      const answer = this.recoverAnswers.shift();
      if (!answer) throw new Error('no recover answer scripted');
      return answer();
    };
    return this;
  }
}

export function brokerParts(opts: { settings?: Partial<Settings>; fleet?: boolean; config?: AccountConfig } = {}) {
  const clock = { t: 1_000_000 };
  const store = new MemoryStore(() => clock.t, opts.fleet ? { fleet: { instance: 'host-a#1:100:aaaa' } } : {});
  const driver = new ScriptedDriver();
  const accounts = new Map<string, AccountConfig>([['w', opts.config ?? ACCOUNT]]);
  const settings = Settings.parse({ proactive_refresh: false, ...opts.settings });
  const events: Array<{ type: string; account: string; data: unknown }> = [];
  const logs: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
  const log: Logger = {
    debug: (msg, fields) => void logs.push({ level: 'debug', msg, fields }),
    info: (msg, fields) => void logs.push({ level: 'info', msg, fields }),
    warn: (msg, fields) => void logs.push({ level: 'warn', msg, fields }),
    error: (msg, fields) => void logs.push({ level: 'error', msg, fields }),
  };
  const sleeps: number[] = [];
  const m = new GrantMemory({
    store,
    config: { getAccount: (n) => accounts.get(n), settings },
    getDriver: (n) => (n === 'oauth2' ? driver : undefined),
    events: { emit: (type, account, data) => void events.push({ type, account, data }) },
    log,
    now: () => clock.t,
    random: () => 0.5,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.t += ms;
    },
  });
  const refreshes: RefreshRequest[] = [];
  const forgotten: string[] = [];
  // The front's queue and lock, simplified: the tests call one part at a time.
  const lanes: AccountLanes = {
    queue: (_account, fn) => fn(),
    locked: (account, fn) => store.withGrantLock(account, fn),
    forget: (account) => {
      forgotten.push(account);
      m.forget(account);
      scheduler.forget(account);
    },
  };
  const scheduler = new Scheduler(m, async (req) => {
    refreshes.push(req);
    return {
      account: req.account,
      access_token: 'from-the-front',
      token_type: 'Bearer',
      expires_at: null,
      obtained_at: clock.t,
      scope: null,
    } satisfies CachedToken;
  });
  const fleet = new FleetSync(m, scheduler, lanes);
  const revocation = new Revocation(m, fleet, lanes);
  const parts: RefreshParts = { m, scheduler, fleet, revocation, lanes };
  const grant = (rt: string | null = 'rt-0', extra: { access_token?: string; expires_at?: number; bound_to?: string } = {}) =>
    store.replaceGrant('w', { refresh_token: rt, bound_to: identityKey(ACCOUNT), token_type: 'Bearer', obtained_at: clock.t, ...extra });
  return {
    clock,
    store,
    driver,
    accounts,
    settings,
    events,
    logs,
    sleeps,
    m,
    lanes,
    scheduler,
    fleet,
    revocation,
    parts,
    refreshes,
    forgotten,
    grant,
  };
}
