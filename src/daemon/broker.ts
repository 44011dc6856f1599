import { cacheKey, sameToken, satisfies, tokenFromGrant, updateFromSet, type CachedToken } from './cached-token.js';
import type { TokenSet } from './drivers/driver.js';
import { importedSecrets, importInterruptedReason, type ImportAttempt, type ImportedTokens } from './imports.js';
import { E, ApiError, unknownAccount } from './errors.js';
import { bindingKey, describeIdentity, identityKey, isBoundTo, parseIdentity } from './grant-identity.js';
import { DPOP_KEY_SECRET, storedJkt } from './dpop/key.js';
import { backOff } from './refresh-health.js';
import { isStoreUnavailable } from './store/errors.js';
import { summarize, type GrantRecord, type GrantSummary } from './store/types.js';
import { FleetSync } from './broker/fleet-sync.js';
import { GrantLoad } from './broker/grant-load.js';
import {
  GrantMemory,
  storedTimes,
  type AccountLanes,
  type BrokerDeps,
  type RefreshRequest,
  type TokenTimes,
} from './broker/grant-memory.js';
import { checkImport, proveImport } from './broker/import-proof.js';
import { recoverable, RefreshAttempt, type RefreshParts } from './broker/refresh-attempt.js';
import { mismatchMessage, noRecoverStep, reauthError, storeDownError } from './broker/refusals.js';
import { Revocation } from './broker/revocation.js';
import { Scheduler } from './broker/schedule.js';

export { cacheKey, satisfies, type CachedToken } from './cached-token.js';
export type { BrokerDeps, RefreshRequest } from './broker/grant-memory.js';
export { REAUTH_SOON_MS } from './broker/schedule.js';

export interface TokenQuery {
  account: string;
  /** Seconds the token must still be valid; the settings' default when absent. */
  min_ttl?: number;
  scope?: string;
  audience?: string;
}

/** What the API shows of an account's grant and its refresh health (grantState). */
export interface GrantState {
  grant?: GrantSummary;
  token?: TokenTimes;
  lastError: string | null;
  /** The last attempt to get a token failed, and none has succeeded since. */
  failing: boolean;
  /** While backing off: when the next attempt is allowed (epoch ms). */
  retryAt: number | null;
}

/**
 * The broker: serves tokens from memory, refreshes them once per (account, scope,
 * audience), rotates refresh tokens durably, backs off when providers fail, and keeps
 * every grant with the provider that issued it (docs/architecture.md, "Token serving
 * rules"). This is its front: the public methods, the single flight, the account's queue
 * and the grant's lock. Its parts live in broker/: the memory every part reads
 * (grant-memory.ts), one refresh attempt (refresh-attempt.ts: the provider call),
 * scheduling (schedule.ts), the fleet (fleet-sync.ts), revocation (revocation.ts) and the
 * import's proof (import-proof.ts).
 */
export class Broker {
  private readonly m: GrantMemory;
  private readonly flights = new Map<string, Promise<CachedToken>>();
  /** The recover steps asked for by name (Broker.recover), one per account at a time. */
  private readonly recoveries = new Map<string, Promise<CachedToken>>();
  /** One upstream call per account at a time: two keys refreshing with one refresh token would be a replay. */
  private readonly accountQueues = new Map<string, Promise<unknown>>();
  private readonly scheduler: Scheduler;
  private readonly fleet: FleetSync;
  private readonly revocation: Revocation;
  /** What a refresh attempt works with: made once, shared by every attempt. */
  private readonly parts: RefreshParts;
  /** The grants read from the store after start-up; an account asked for before is read on its own (ready). */
  private readonly load: GrantLoad;

  constructor(private readonly deps: BrokerDeps) {
    this.m = new GrantMemory(deps);
    const lanes: AccountLanes = {
      queue: (account, fn) => this.queue(account, fn),
      locked: (account, fn, opts) => this.locked(account, fn, opts),
      forget: (account) => this.forget(account),
    };
    this.scheduler = new Scheduler(this.m, (req) => this.flight(req));
    this.fleet = new FleetSync(this.m, this.scheduler, lanes);
    this.revocation = new Revocation(this.m, this.fleet, lanes);
    this.parts = { m: this.m, scheduler: this.scheduler, fleet: this.fleet, revocation: this.revocation, lanes };
    this.load = new GrantLoad({
      m: this.m,
      scheduler: this.scheduler,
      fleet: this.fleet,
      retire: (account, why) => this.retire(account, why),
      importInterrupted: (g) => this.importInterrupted(g),
    });
  }

  /**
   * Fill memory from the store and arm proactive refresh, all of it now (tests; the daemon
   * answers first and reads them with readStoredTokens). In a fleet, then listen for the
   * grants other daemons commit.
   */
  async start(): Promise<void> {
    await this.load.all();
  }

  /**
   * A daemon stopped during an import's proving refresh (Store.markImport): the account's grant
   * was never touched and its own refresh token never sent, so it is kept as it was; the
   * imported one may be spent at the provider and is lost. Said in the log and as the
   * account's last error, never silently; the mark goes.
   */
  private async importInterrupted(g: GrantSummary): Promise<void> {
    const at = new Date(g.in_flight_since!).toISOString();
    const why = g.generation === 0 ? (g.last_error ?? importInterruptedReason(at, false)) : importInterruptedReason(at, true);
    this.deps.log.warn('an import was interrupted when the daemon stopped; the account keeps the grant it had', {
      account: g.account,
      since: at,
      had_grant: g.generation > 0,
    });
    await this.deps.store.setStatus(g.account, g.status, why);
    this.m.grants.set(g.account, { ...g, in_flight_since: null, in_flight_for: null, last_error: why });
  }

  /**
   * What `getToken(q)` answers at once when the token is in memory and satisfies the query's
   * min_ttl (rule 2; the token lane's and the proxy's hot path, which then await nothing);
   * undefined when getToken has something to do (a grant or a stored token to read, a refresh).
   */
  cachedToken(q: TokenQuery): CachedToken | undefined {
    if (this.load.account(q.account)) return undefined; // getToken waits for the same read
    const key = cacheKey(q.account, q.scope, q.audience);
    const hit = this.m.cache.get(key);
    if (!hit || !satisfies(hit, (q.min_ttl ?? this.deps.config.settings.default_min_ttl) * 1000, this.m.now())) return undefined;
    if (key !== q.account) this.m.usedKeys.add(key);
    return hit;
  }

  /** rules 1–3, docs/architecture.md: memory first, else one refresh shared by every waiting caller. */
  async getToken(q: TokenQuery): Promise<CachedToken> {
    const early = this.load.account(q.account);
    if (early) await early;
    const key = cacheKey(q.account, q.scope, q.audience);
    let hit = this.m.cache.get(key);
    if (!hit && key === q.account && this.m.storedTokens.has(key)) hit = await this.m.readStoredToken(key);
    const now = this.m.now();
    const minTtlMs = (q.min_ttl ?? this.deps.config.settings.default_min_ttl) * 1000;
    if (hit && satisfies(hit, minTtlMs, now)) {
      if (key !== q.account) this.m.usedKeys.add(key);
      return hit;
    }
    const cfg = this.deps.config.getAccount(q.account);
    if (!cfg) throw unknownAccount(q.account);
    const grant = this.m.grants.get(q.account);
    try {
      if (grant?.status === 'reauth_required') {
        const driver = this.deps.getDriver(cfg.driver);
        if (!driver || !(await recoverable(this.m, q.account, cfg, driver))) throw reauthError(this.deps, q.account, grant.last_error);
      }
      if (key !== q.account) this.m.usedKeys.add(key);
      return await this.flight({ key, account: q.account, scope: q.scope, audience: q.audience, notBefore: now, minTtlMs });
    } catch (err) {
      // Rule 6: while the provider is down, a cached token that is still valid is
      // better than an error, even if it is shorter-lived than the caller wanted.
      const stillValid = hit && (hit.expires_at === null || hit.expires_at - this.m.now() > 1000);
      if (hit && stillValid && err instanceof ApiError && (err.code === 'upstream_unavailable' || err.code === 'rate_limited')) {
        return hit;
      }
      throw err;
    }
  }

  /**
   * Force a refresh of the account's base token now (`tokend refresh`). With `ifToken` (the
   * token the caller saw refused), coalesced: a refresh in flight is joined, and when the
   * daemon then holds another valid token than that one, it is the answer and nobody is
   * called; so a storm of callers refused the same token costs one refresh, and stragglers
   * none (rule 3; the attempt budget of rule 6 is kept for real refreshes).
   */
  async forceRefresh(
    account: string,
    opts: { ifToken?: string } = {},
  ): Promise<{ grant: GrantSummary; token?: CachedToken; refreshed: boolean }> {
    await this.ready(account);
    if (!this.deps.config.getAccount(account)) throw unknownAccount(account);
    const key = cacheKey(account);
    const forced = () => this.flight({ key, account, notBefore: this.m.now() + 1 });
    if (opts.ifToken === undefined) {
      await forced();
      return { grant: this.m.grants.get(account)!, refreshed: true };
    }
    const running = this.flights.get(key);
    let token = running ? await running : await this.heldToken(account);
    const refreshed = !token || !this.isFresh(token) || sameToken(token.access_token, opts.ifToken);
    if (refreshed) token = await forced();
    return { grant: this.m.grants.get(account)!, token, refreshed: refreshed || running !== undefined };
  }

  /**
   * The driver's recover step now, on demand (Cal.com's force-refresh, AMP's obtain_token, the
   * client-credentials or password grant): a new grant without the refresh token, replacing
   * the stored one. Queued like a refresh and within the same attempt budget; concurrent
   * calls join one. 409 `conflict` where the account has no recover step.
   */
  async recover(account: string): Promise<GrantSummary> {
    await this.ready(account);
    const cfg = this.m.accountOrThrow(account);
    const driver = this.m.driverOrThrow(account, cfg);
    if (!(await recoverable(this.m, account, cfg, driver))) throw noRecoverStep(account, cfg.driver);
    let p = this.recoveries.get(account);
    if (!p) {
      const req: RefreshRequest = { key: cacheKey(account), account, notBefore: this.m.now() + 1, recover: true };
      p = this.queue(account, () => new RefreshAttempt(this.parts, req).run()).finally(() => this.recoveries.delete(account));
      this.recoveries.set(account, p);
    }
    await p;
    return this.m.grants.get(account)!;
  }

  /** The account's base token as memory holds it, read from the store on its first use since start-up. */
  private async heldToken(account: string): Promise<CachedToken | undefined> {
    const hit = this.m.cache.get(account);
    if (hit || !this.m.storedTokens.has(account)) return hit;
    return this.m.readStoredToken(account);
  }

  /** Still valid for a second at least: worth handing to a caller instead of refreshing. */
  private isFresh(tok: CachedToken): boolean {
    return tok.expires_at === null || tok.expires_at - this.m.now() > 1000;
  }

  /** A tool says a token we served was refused (git `erase`): stop serving it. */
  reject(account: string, accessToken?: string): number {
    let dropped = 0;
    for (const [key, tok] of this.m.cache) {
      if (tok.account !== account) continue;
      if (accessToken !== undefined && tok.access_token !== accessToken) continue;
      this.m.cache.delete(key);
      dropped++;
    }
    if (dropped) this.deps.log.info('token reported as rejected; it will be refreshed on next use', { account });
    return dropped;
  }

  /**
   * Start from tokens the user already holds (`tokend import`): a refresh token (with the
   * client it belongs to, where the driver takes one: Real-Debrid's per-user client), and
   * maybe the access token issued with it (Cal.com hands both to a platform). Proven before
   * it replaces anything: unless a still-valid access token came along, the imported refresh
   * token is refreshed once on the side, and only a success is committed, the old grant to
   * the new in one write. A refusal (400 `import_refused`) or a provider that cannot answer
   * (503) leaves the account exactly as it was.
   */
  async importTokens(account: string, t: ImportedTokens): Promise<GrantSummary> {
    await this.ready(account);
    let proven = false;
    const g = await this.queue(account, () =>
      this.locked(account, async () => {
        this.m.importing.add(account);
        const cfg = this.m.accountOrThrow(account);
        const driver = this.m.driverOrThrow(account, cfg);
        const secrets = importedSecrets(driver, account, t, cfg);
        // An imported DPoP key (dpop_jwk) is the one the grant is bound to (RFC 9449 §6).
        const boundTo = bindingKey(cfg, storedJkt(secrets[DPOP_KEY_SECRET]));
        await this.fleet.refuseForeignGrant(account, boundTo);
        const now = this.m.now();
        const usable = t.access_token && (t.expires_at === undefined || t.expires_at > now + 60_000);
        // The tokens are proven for this account as it is configured now.
        const attempt: ImportAttempt = { account, cfg, driver, t, imported: secrets, boundTo };
        const tokens = usable ? await checkImport(this.m, attempt) : await proveImport(this.m, attempt);
        proven = tokens.access_token !== t.access_token;
        const grant = await this.deps.store.replaceGrant(account, { ...tokens, bound_to: boundTo }, secrets);
        this.installGrant(account, grant);
        this.scheduler.watchGrant(account, cfg, summarize(grant));
        return grant;
      }).finally(() => this.m.importing.delete(account)),
    );
    this.m.health.delete(account);
    const expiresAt = g.expires_at ? new Date(g.expires_at).toISOString() : null;
    // The proving refresh is a refresh at the provider, and logged as one.
    this.deps.log.info(proven ? 'token refreshed' : 'tokens imported', {
      account,
      generation: g.generation,
      expires_at: expiresAt,
      imported: true,
    });
    this.deps.events.emit('token.refreshed', account, { generation: g.generation, expires_at: expiresAt });
    return this.m.grants.get(account)!;
  }

  /**
   * Install a grant obtained by a login; the old one is replaced only now (never deleted
   * on failure). `issuedBy` is the identity the login talked to: if the account has moved
   * to another provider or client since the login started, the grant is refused (409
   * `conflict`), so tokens of one provider never serve an account that names another.
   */
  async installLogin(account: string, set: TokenSet, issuedBy: string): Promise<GrantRecord> {
    await this.ready(account);
    return this.queue(account, () =>
      this.locked(account, async () => {
        const cfg = this.m.accountOrThrow(account);
        if (!isBoundTo(issuedBy, cfg)) {
          throw E.conflict(
            `account "${account}" was changed to ${describeIdentity(JSON.parse(identityKey(cfg)))} while this login with ${describeIdentity(parseIdentity(issuedBy) ?? {})} was in progress; its grant was not kept. Log in again`,
            { account },
          );
        }
        await this.fleet.refuseForeignGrant(account, issuedBy);
        await this.m.keepSecrets(account, set);
        const now = this.m.now();
        const g = await this.deps.store.replaceGrant(account, {
          ...updateFromSet(set, now, undefined),
          refresh_token: set.refresh_token ?? null,
          bound_to: issuedBy,
        });
        this.installGrant(account, g);
        this.scheduler.watchGrant(account, cfg, summarize(g));
        this.m.health.delete(account);
        return g;
      }),
    );
  }

  /**
   * In a fleet, before a login starts: refuse when the fleet's grant of the account belongs
   * to another provider or client than this host's config names (rule 8), so neither the
   * stored secrets nor a new grant go anywhere the fleet's grant does not come from.
   */
  async checkLoginTarget(account: string, identity: string): Promise<void> {
    await this.ready(account);
    if (!this.deps.store.fleet) return;
    await this.fleet.refuseForeignGrant(account, identity);
  }

  /** Revoke at the provider where possible, then forget the grant (`logout`); config stays. */
  async logout(account: string): Promise<{ revoked: boolean }> {
    await this.ready(account);
    if (!this.deps.config.getAccount(account)) throw unknownAccount(account);
    return this.queue(account, () => this.locked(account, () => this.revocation.revokeAndDrop(account, 'logout')));
  }

  /**
   * Rule 8: the account no longer names the provider or client that issued its grant.
   * Revoke the grant there (with that provider's own config, never the new one), drop it
   * and every cached or narrowed token of it. Queued behind any refresh in flight.
   */
  async retire(account: string, why: string): Promise<{ revoked: boolean; hadGrant: boolean }> {
    await this.ready(account);
    this.forget(account);
    return this.queue(account, () =>
      this.locked(account, async () => {
        const hadGrant = Boolean(await this.deps.store.getGrant(account));
        const { revoked } = await this.revocation.revokeAndDrop(account, why);
        // The stored secrets were given for the old client: never send them to the new one.
        await this.deps.store.deleteSecrets(account);
        return { revoked, hadGrant };
      }),
    );
  }

  /**
   * config.json now names another provider or client for the account (SIGHUP). A daemon of
   * its own retires the grant (rule 8). A fleet's grant is the other daemons' too: this
   * daemon only stops using it, and says so; replacing it takes an explicit
   * `--replace-grant`.
   */
  async identityChanged(account: string, why: string): Promise<void> {
    await this.ready(account);
    if (!this.deps.store.fleet) {
      await this.retire(account, why);
      return;
    }
    this.forget(account);
    this.fleet.forgetMismatch(account);
    const g = await this.deps.store.getGrant(account).catch(() => undefined);
    const cfg = this.deps.config.getAccount(account);
    if (g && cfg && g.bound_to && !isBoundTo(g.bound_to, cfg)) this.fleet.logMismatch(account, g, cfg);
  }

  /**
   * Change an account's config with nothing of the account in flight: `apply` runs inside
   * the account's queue (after any refresh already running, before any that comes), with
   * its cached tokens forgotten before and after, so no token obtained under the old config
   * is served under the new one. With `retire`, the grant is first revoked at the provider
   * that issued it and dropped (rule 8; `why: 'logout'` for a plain removal).
   */
  async reconfigure(
    account: string,
    opts: { retire: boolean; why: string },
    apply: () => Promise<void>,
  ): Promise<{ revoked: boolean; hadGrant: boolean }> {
    await this.ready(account);
    this.forget(account);
    return this.queue(account, async () => {
      let result = { revoked: false, hadGrant: false };
      if (opts.retire) {
        result = await this.locked(account, async () => {
          const hadGrant = Boolean(this.m.grants.get(account) ?? (await this.deps.store.getGrant(account)));
          return { ...(await this.revocation.revokeAndDrop(account, opts.why)), hadGrant };
        });
      }
      this.forget(account);
      await apply();
      this.forget(account);
      return result;
    });
  }

  /** Drop everything in memory about an account (after logout/remove/config change). */
  forget(account: string): void {
    this.m.forget(account);
    this.scheduler.forget(account);
  }

  /**
   * What the API shows of an account's grant. A fleet's grant that another identity holds
   * is not this daemon's to show as usable: none, and the reason as the last error.
   */
  async grantState(account: string): Promise<GrantState> {
    await this.ready(account);
    let grant = this.m.grants.get(account);
    if (!grant) {
      try {
        const stored = await this.deps.store.getGrant(account);
        grant = stored && !(stored.generation === 0 && this.m.importing.has(account)) ? summarize(stored) : undefined;
      } catch (err) {
        if (!isStoreUnavailable(err)) throw err;
      }
    }
    const cfg = this.deps.config.getAccount(account);
    if (grant && cfg && this.deps.store.fleet && grant.bound_to && !isBoundTo(grant.bound_to, cfg)) {
      return { lastError: mismatchMessage(account, grant, cfg), failing: false, retryAt: null };
    }
    const h = this.m.health.get(account);
    return {
      grant,
      token: this.m.cache.get(cacheKey(account)) ?? (grant && this.m.storedTokens.has(account) ? storedTimes(grant) : undefined),
      lastError: h?.lastError ?? grant?.last_error ?? null,
      // Health is cleared by every success (healthy), so an error there is a failure since the last token.
      failing: Boolean(h?.lastError),
      retryAt: h && h.nextAttemptAt > this.m.now() ? h.nextAttemptAt : null,
    };
  }

  /** The binding of the account's grant as held in memory (its `bound_to`), for the DPoP key check of proofs. */
  grantBinding(account: string): string | null | undefined {
    return this.m.grants.get(account)?.bound_to;
  }

  /** Start no more proactive refreshes (first step of shutdown). */
  stopTimers(): void {
    this.m.closed = true;
    this.scheduler.stop();
    this.fleet.stop();
  }

  /** Stop timers and abort provider requests still in flight (last step of shutdown). */
  close(): void {
    this.stopTimers();
    this.fleet.reportLost();
    this.m.abortAll(new Error('tokend is shutting down'));
  }

  /** One comparison of the wall clock with the monotonic one (Scheduler.watchClock); true when the timers were re-armed. */
  checkClock(): boolean {
    return this.scheduler.checkClock();
  }

  /**
   * After start-up: the grants into memory (GrantLoad), then their stored access tokens, a
   * turn at a time with the event loop free between them (GrantMemory.readStoredTokens).
   * Never rejects: a store that cannot be read now is logged, and each account is read on
   * its first use.
   */
  async readStoredTokens(): Promise<void> {
    try {
      await this.load.all();
    } catch (err) {
      this.deps.log.error('could not read the grants after start-up; each account is read on its first use', {
        error: (err as Error).message,
      });
      return;
    }
    return this.m.readStoredTokens();
  }

  /** An account's grant in memory before anything is done with it (GrantLoad.account). */
  private async ready(account: string): Promise<void> {
    const early = this.load.account(account);
    if (early) await early;
  }

  // ---- the refresh: getToken → flight → RefreshAttempt.run → driver.refresh ----

  /** Rule 3: one refresh per key at a time; every caller of that key waits for it. */
  private flight(req: RefreshRequest): Promise<CachedToken> {
    const running = this.flights.get(req.key);
    if (running) return running;
    const p = this.queue(req.account, () => new RefreshAttempt(this.parts, req).run()).finally(() => {
      this.flights.delete(req.key);
    });
    this.flights.set(req.key, p);
    return p;
  }

  /** Serialise work on one account: its refresh token may be used by one request at a time. */
  private queue<T>(account: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.accountQueues.get(account) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.accountQueues.set(account, tail);
    void tail.then(() => {
      if (this.accountQueues.get(account) === tail) this.accountQueues.delete(account);
    });
    return next;
  }

  // ---- the grant's lock, and the database behind it ----

  /**
   * Run `fn` under the grant's lock (Store.withGrantLock), first committing a rotation the
   * database could not take earlier: it comes before any other use of the grant. A database
   * that cannot be reached is a 503, transient (with `backOff`, it delays this account's
   * next refresh like a provider outage would).
   */
  private async locked<T>(account: string, fn: () => Promise<T>, opts: { backOff?: boolean } = {}): Promise<T> {
    try {
      return await this.deps.store.withGrantLock(account, async () => {
        if (this.fleet.hasPending(account)) await this.fleet.flushPending(account);
        return fn();
      });
    } catch (err) {
      if (isStoreUnavailable(err)) throw this.storeDown(account, err, opts);
      throw err;
    }
  }

  /** 503 for a store that cannot answer now; the cached token keeps being served while valid (getToken). */
  private storeDown(account: string, err: Error, opts: { backOff?: boolean }): ApiError {
    let retryAfter = 5;
    if (opts.backOff) {
      const h = this.m.healthOf(account);
      h.lastError = err.message;
      h.lastCode = 'upstream_unavailable';
      retryAfter = Math.max(1, Math.ceil(backOff(h, this.m.now(), this.m.random(), this.deps.config.settings) / 1000));
      this.scheduler.rescheduleBase(account);
    }
    return storeDownError(this.deps.log, account, err, retryAfter);
  }

  private installGrant(account: string, g: GrantRecord): void {
    this.forget(account);
    this.m.remember(account, g);
    const tok = tokenFromGrant(g);
    if (tok) {
      this.m.cache.set(cacheKey(account), tok);
      this.scheduler.schedule(account, cacheKey(account), tok);
    }
  }
}
