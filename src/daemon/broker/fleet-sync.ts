/**
 * A fleet: the grants other daemons commit (rule 3, docs/fleet.md). Notifications and resyncs
 * reload a grant another daemon moved on; a rotation the provider answered while the fleet's
 * database was down is held here and committed before any other use of the grant (rule 5);
 * a grant another identity holds is neither used nor replaced (rule 8).
 */
import type { AccountConfig } from '../../protocol/api.js';
import { cacheKey, tokenFromGrant } from '../cached-token.js';
import { E } from '../errors.js';
import { isBoundTo } from '../grant-identity.js';
import { healthy } from '../refresh-health.js';
import { GenerationMismatchError } from '../store/errors.js';
import { summarize, type GrantRecord, type GrantSummary, type TokenUpdate } from '../store/types.js';
import { withoutMark, type AccountLanes, type GrantMemory } from './grant-memory.js';
import { mismatchMessage } from './refusals.js';
import type { Scheduler } from './schedule.js';

/** A rotated grant the provider issued but the fleet's database could not take: committed before any other use of the grant. */
interface PendingCommit {
  expectedGeneration: number;
  update: TokenUpdate;
  since: number;
  retries: number;
}

export class FleetSync {
  /** Rotations the provider answered whose commit failed because the fleet's database was down. */
  private readonly pendingCommits = new Map<string, PendingCommit>();
  private readonly pendingTimers = new Map<string, NodeJS.Timeout>();
  /** Accounts with a reload from the fleet's database queued (notifications coalesce). */
  private readonly reloads = new Set<string>();
  /** Accounts whose fleet grant belongs to another identity, already logged (once each). */
  private readonly mismatchLogged = new Set<string>();

  constructor(
    private readonly m: GrantMemory,
    private readonly scheduler: Scheduler,
    private readonly lanes: AccountLanes,
  ) {}

  /** In a fleet, listen for the grants other daemons commit (Broker.start's last step). */
  listen(): void {
    this.m.deps.store.fleet?.watch({
      grantChanged: (account) => this.onFleetChange(account),
      resync: () => {
        this.resync().catch((err) =>
          this.m.deps.log.warn('could not reconcile with the fleet database', { error: (err as Error).message }),
        );
      },
    });
  }

  // ---- rotations held through a database outage ----

  /** Is a rotation of this account held in memory, not committed yet? */
  hasPending(account: string): boolean {
    return this.pendingCommits.has(account);
  }

  /** The grant is dropped (logout, rule 8): a rotation held for it goes with it. */
  dropPending(account: string): void {
    this.pendingCommits.delete(account);
  }

  /** The provider rotated, the database could not take it: hold the rotation in memory and commit it when the database is back. */
  keepPending(account: string, current: GrantSummary, update: TokenUpdate, err: Error): void {
    const { m } = this;
    this.pendingCommits.set(account, { expectedGeneration: current.generation, update, since: m.now(), retries: 0 });
    m.grants.set(account, {
      ...withoutMark(current),
      token_type: update.token_type,
      expires_at: update.expires_at,
      obtained_at: update.obtained_at,
      scope: update.scope,
      has_access_token: true,
      has_refresh_token: update.refresh_token !== undefined || current.has_refresh_token,
      refresh_expires_at: update.refresh_expires_at ?? current.refresh_expires_at,
    });
    m.deps.log.error(
      'the rotated grant could not be committed (the database is unavailable): it is kept in memory and committed as soon as the database is back',
      {
        account,
        error: err.message,
      },
    );
    this.armPendingFlush(account);
  }

  /** Retry a pending commit after a while (the lock's first step commits it: see `locked`). */
  private armPendingFlush(account: string): void {
    const p = this.pendingCommits.get(account);
    if (!p || this.m.closed || this.pendingTimers.has(account)) return;
    const timer = setTimeout(
      () => {
        this.pendingTimers.delete(account);
        this.lanes.queue(account, () => this.lanes.locked(account, async () => undefined)).catch(() => this.armPendingFlush(account));
      },
      Math.min(5_000, 500 * 2 ** Math.min(p.retries, 4)),
    );
    timer.unref();
    this.pendingTimers.set(account, timer);
  }

  /** Commit the rotation held in memory; runs under the grant's lock, before anything else touches the grant. */
  async flushPending(account: string): Promise<void> {
    const { m } = this;
    const p = this.pendingCommits.get(account)!;
    p.retries++;
    try {
      const g = await m.deps.store.commitRefresh(account, p.expectedGeneration, p.update);
      this.pendingCommits.delete(account);
      m.remember(account, g);
      m.deps.log.info('the rotated grant held in memory is committed', { account, generation: g.generation, held_ms: m.now() - p.since });
    } catch (err) {
      if (!(err instanceof GenerationMismatchError)) throw err;
      // Someone replaced the grant meanwhile (a login, or another daemon that judged this one
      // dead): the stored grant wins, and the refresh token held here is lost.
      this.pendingCommits.delete(account);
      m.deps.log.error(
        'the rotated grant held in memory could not be committed: the stored grant moved on meanwhile, so its refresh token is lost',
        {
          account,
          expected_generation: p.expectedGeneration,
          stored_generation: err.stored,
        },
      );
    }
  }

  /** Shutdown: no more retries. */
  stop(): void {
    for (const t of this.pendingTimers.values()) clearTimeout(t);
    this.pendingTimers.clear();
  }

  /** Shutdown: a rotation still held is lost with this process, and said so. */
  reportLost(): void {
    for (const [account, p] of this.pendingCommits) {
      this.m.deps.log.error('stopping with a rotated grant the database never took: its refresh token is lost', {
        account,
        held_ms: this.m.now() - p.since,
      });
    }
  }

  // ---- grants other daemons commit ----

  /** Did another daemon of the fleet commit this grant since this daemon last read or wrote it? */
  movedOn(g: GrantRecord | GrantSummary): boolean {
    return Boolean(this.m.deps.store.fleet) && this.m.seen.get(g.account) !== g.generation;
  }

  /**
   * Take a grant another daemon of the fleet committed: its access token becomes this
   * daemon's cached token, timers follow it, and a refused grant stops being served. Tokens
   * narrowed from the grant stay cached: they are still valid, and dropping them would make
   * each daemon refresh its own after every rotation by another.
   */
  adoptStored(g: GrantRecord, cfg: AccountConfig): void {
    const { m } = this;
    const account = g.account;
    const wasActive = m.grants.get(account)?.status !== 'reauth_required';
    m.remember(account, g);
    if (g.status === 'reauth_required') {
      m.dropTokens(account);
      if (wasActive) {
        m.deps.log.warn('another daemon of the fleet found that the account needs a new login', { account, reason: g.last_error });
        m.deps.events.emit('account.reauth_required', account, { reason: g.last_error });
      }
      return;
    }
    healthy(m.healthOf(account));
    const tok = tokenFromGrant(g);
    if (tok) {
      m.cache.set(cacheKey(account), tok);
      m.storedTokens.delete(account);
      this.scheduler.schedule(account, cacheKey(account), tok);
    }
    this.scheduler.watchGrant(account, cfg, summarize(g));
    const expiresAt = g.expires_at ? new Date(g.expires_at).toISOString() : null;
    m.deps.log.debug('grant reloaded: another daemon of the fleet committed it', {
      account,
      generation: g.generation,
      expires_at: expiresAt,
    });
    m.deps.events.emit('token.refreshed', account, { generation: g.generation, expires_at: expiresAt, by: 'fleet' });
  }

  /** A notification from the fleet: reload the grant into memory (coalesced, in the account's queue). */
  private onFleetChange(account: string): void {
    const { m } = this;
    if (m.closed || this.reloads.has(account) || !m.deps.config.getAccount(account)) return;
    this.reloads.add(account);
    this.lanes
      .queue(account, () => {
        this.reloads.delete(account);
        return this.reloadFromStore(account);
      })
      .catch((err) =>
        m.deps.log.warn('could not reload a grant another daemon of the fleet changed', { account, error: (err as Error).message }),
      );
  }

  private async reloadFromStore(account: string): Promise<void> {
    const { m } = this;
    const cfg = m.deps.config.getAccount(account);
    // A rotation held in memory is committed first, under the lock: nothing to take before that.
    if (!cfg || this.pendingCommits.has(account)) return;
    const g = await m.deps.store.getGrant(account);
    if (!g) {
      if (!m.seen.has(account) && !m.grants.has(account)) return;
      m.seen.delete(account);
      this.lanes.forget(account);
      m.deps.log.info('another daemon of the fleet dropped the grant (logout, or the account moved)', { account });
      return;
    }
    const mem = m.grants.get(account);
    if (m.seen.get(account) === g.generation && (!mem || mem.status === g.status)) return;
    if (g.bound_to && !isBoundTo(g.bound_to, cfg)) {
      this.lanes.forget(account);
      m.seen.set(account, g.generation);
      this.logMismatch(account, g, cfg);
      return;
    }
    this.adoptStored(g, cfg);
  }

  /**
   * After (re)connecting to the fleet: first commit the rotations held in memory through the
   * outage, then, since notifications may have been missed, compare generations and reload
   * what moved.
   */
  private async resync(): Promise<void> {
    const { m } = this;
    for (const account of this.pendingCommits.keys()) {
      clearTimeout(this.pendingTimers.get(account));
      this.pendingTimers.delete(account);
      this.lanes.queue(account, () => this.lanes.locked(account, async () => undefined)).catch(() => this.armPendingFlush(account));
    }
    const stored = await m.deps.store.fleet!.generations();
    for (const account of new Set([...stored.keys(), ...m.seen.keys()])) {
      const s = stored.get(account);
      const mem = m.grants.get(account);
      if (s && m.seen.get(account) === s.generation && (!mem || mem.status === s.status)) continue;
      this.onFleetChange(account);
    }
  }

  // ---- another identity's grant (rule 8) ----

  logMismatch(account: string, g: GrantRecord | GrantSummary, cfg: AccountConfig): void {
    if (this.mismatchLogged.has(account)) return;
    this.mismatchLogged.add(account);
    this.m.deps.log.warn('this daemon does not use the fleet grant: the account names another provider or client here', {
      account,
      reason: mismatchMessage(account, g, cfg),
    });
  }

  /** The account's identity changed here: a mismatch is told again. */
  forgetMismatch(account: string): void {
    this.mismatchLogged.delete(account);
  }

  /** In a fleet, refuse to replace a grant that another identity holds (rule 8: a login or import here would overwrite it). */
  async refuseForeignGrant(account: string, identity: string): Promise<void> {
    const { deps } = this.m;
    if (!deps.store.fleet) return;
    const g = await deps.store.getGrant(account);
    const cfg = deps.config.getAccount(account);
    if (g?.bound_to && g.bound_to !== identity && cfg && !isBoundTo(g.bound_to, cfg))
      throw E.conflict(mismatchMessage(account, g, cfg), { account });
  }
}
