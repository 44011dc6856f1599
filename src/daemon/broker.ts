import type { AccountConfig, LoginView } from '../protocol/api.js';
import { accountOfKey, cacheKey, satisfies, splitKey, tokenFromGrant, updateFromSet, type CachedToken } from './cached-token.js';
import type { ConfigStore } from './config.js';
import { asDriverError, wireErrorOf } from './driver-errors.js';
import { DriverError, type Driver, type DriverContext, type TokenSet } from './drivers/driver.js';
import { E, TokendError, unknownAccount } from './errors.js';
import type { EventBus } from './events.js';
import { configForIdentity, describeIdentity, identityKey, parseIdentity } from './grant-identity.js';
import type { Logger } from './log.js';
import { admit, backOff, freshHealth, healthy, type AccountHealth } from './refresh-health.js';
import type { GrantRecord, Store, TokenUpdate } from './store/types.js';

export { cacheKey, satisfies, type CachedToken } from './cached-token.js';

export interface TokenQuery {
  account: string;
  /** Seconds the token must still be valid; the settings' default when absent. */
  min_ttl?: number;
  scope?: string;
  audience?: string;
}

/**
 * One refresh the broker must make: which token (account, scope, audience), and since
 * when a token counts as fresh enough. Every waiting caller shares it (single flight).
 */
export interface RefreshRequest {
  /** The cache key of (account, scope, audience). */
  key: string;
  account: string;
  scope?: string;
  audience?: string;
  /** A token obtained at or after this time (epoch ms) satisfies the request without a new call. */
  notBefore: number;
}

export interface BrokerDeps {
  store: Store;
  config: Pick<ConfigStore, 'getAccount' | 'settings'>;
  getDriver: (name: string) => Driver | undefined;
  events: Pick<EventBus, 'emit'>;
  log: Logger;
  now?: () => number;
  random?: () => number;
  /** The account's pending interactive login, if any: requests that need one get 409 login_pending. */
  pendingLogin?: (account: string) => LoginView | undefined;
  /** Called when a grant has just become reauth_required (an account's `on_reauth: login` starts its login). */
  onReauthRequired?: (account: string) => void;
}

/**
 * The broker: serves tokens from memory, refreshes them once per (account, scope,
 * audience), rotates refresh tokens durably, backs off when providers fail, and keeps
 * every grant with the provider that issued it. It owns every token serving rule
 * (docs/architecture.md); the call to the provider is `refreshOnce`.
 */
export class Broker {
  private readonly cache = new Map<string, CachedToken>();
  private readonly flights = new Map<string, Promise<CachedToken>>();
  /** One upstream call per account at a time: two keys refreshing with one refresh token would be a replay. */
  private readonly accountQueues = new Map<string, Promise<unknown>>();
  private readonly grants = new Map<string, GrantRecord>();
  private readonly health = new Map<string, AccountHealth>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Keep-alive refreshes of grants a provider forgets when unused (account → timer). */
  private readonly keepAlives = new Map<string, NodeJS.Timeout>();
  /** Accounts whose coming refresh-token expiry was announced (account → that expiry), once each. */
  private readonly reauthSoonSent = new Map<string, number>();
  /** Keys other than the base key that were asked for since their last refresh. */
  private readonly usedKeys = new Set<string>();
  private readonly now: () => number;
  private readonly random: () => number;
  private closed = false;
  private readonly inFlightAborts = new Set<AbortController>();

  constructor(private readonly deps: BrokerDeps) {
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
  }

  /** Fill memory from the store and arm proactive refresh; called once at start-up. */
  start(): void {
    for (const g of this.deps.store.listGrants()) {
      const cfg = this.deps.config.getAccount(g.account);
      if (!cfg) continue;
      // Rule 8: a grant whose provider or client is not the account's any more is never
      // served or refreshed; it is revoked where it came from and dropped.
      if (!this.adoptOrKeep(g, cfg)) {
        void this.retire(g.account, 'the account names another provider or client than the one that issued its grant');
        continue;
      }
      this.grants.set(g.account, g);
      if (g.in_flight_since && g.status === 'active') {
        this.deps.log.warn('a refresh was interrupted when the daemon stopped; its refresh token may be spent', {
          account: g.account,
          since: new Date(g.in_flight_since).toISOString(),
        });
      }
      const tok = tokenFromGrant(g);
      if (tok && g.status === 'active') {
        this.cache.set(cacheKey(g.account), tok);
        this.schedule(g.account, cacheKey(g.account), tok);
      }
      if (g.status === 'active') this.watchGrant(g.account, cfg, g);
    }
  }

  /** rules 1–3, docs/architecture.md: memory first, else one refresh shared by every waiting caller. */
  async getToken(q: TokenQuery): Promise<CachedToken> {
    const key = cacheKey(q.account, q.scope, q.audience);
    const hit = this.cache.get(key);
    const now = this.now();
    const minTtlMs = (q.min_ttl ?? this.deps.config.settings.default_min_ttl) * 1000;
    if (hit && satisfies(hit, minTtlMs, now)) {
      if (key !== q.account) this.usedKeys.add(key);
      return hit;
    }
    const cfg = this.deps.config.getAccount(q.account);
    if (!cfg) throw unknownAccount(q.account);
    const grant = this.grants.get(q.account);
    if (grant?.status === 'reauth_required') {
      const driver = this.deps.getDriver(cfg.driver);
      if (!driver || !this.recoverable(q.account, cfg, driver)) throw this.reauthError(q.account, grant.last_error);
    }
    if (key !== q.account) this.usedKeys.add(key);
    try {
      return await this.flight({ key, account: q.account, scope: q.scope, audience: q.audience, notBefore: now });
    } catch (err) {
      // Rule 6: while the provider is down, a cached token that is still valid is
      // better than an error, even if it is shorter-lived than the caller wanted.
      const stillValid = hit && (hit.expires_at === null || hit.expires_at - this.now() > 1000);
      if (stillValid && err instanceof TokendError && (err.code === 'upstream_unavailable' || err.code === 'rate_limited')) {
        return hit;
      }
      throw err;
    }
  }

  /** Force a refresh of the account's base token now (`tokend refresh`). */
  async forceRefresh(account: string): Promise<GrantRecord> {
    if (!this.deps.config.getAccount(account)) throw unknownAccount(account);
    await this.flight({ key: cacheKey(account), account, notBefore: this.now() + 1 });
    return this.grants.get(account)!;
  }

  /** A tool says a token we served was refused (git `erase`): stop serving it. */
  reject(account: string, accessToken?: string): number {
    let dropped = 0;
    for (const [key, tok] of this.cache) {
      if (tok.account !== account) continue;
      if (accessToken !== undefined && tok.access_token !== accessToken) continue;
      this.cache.delete(key);
      dropped++;
    }
    if (dropped) this.deps.log.info('token reported as rejected; it will be refreshed on next use', { account });
    return dropped;
  }

  /**
   * Start from tokens the user already holds (`tokend import`): a refresh token, and maybe
   * the access token issued with it (Cal.com hands both to a platform). Replaces the grant;
   * then, unless a still-valid access token came along, refreshes once to prove it.
   */
  async importTokens(account: string, t: { refresh_token?: string; access_token?: string; expires_at?: number }): Promise<GrantRecord> {
    const g = await this.queue(account, async () => {
      const cfg = this.accountOrThrow(account);
      // The tokens are the user's word for this account as it is configured now.
      const now = this.now();
      const grant = this.deps.store.replaceGrant(account, {
        refresh_token: t.refresh_token ?? null,
        bound_to: identityKey(cfg),
        ...(t.access_token ? { access_token: t.access_token, token_type: 'Bearer', obtained_at: now, expires_at: t.expires_at ?? null } : {}),
      });
      this.installGrant(account, grant);
      this.watchGrant(account, cfg, grant);
      return grant;
    });
    this.health.delete(account);
    const usable = g.access_token && (g.expires_at === null || g.expires_at > this.now() + 60_000);
    if (!usable) await this.forceRefresh(account);
    return this.grants.get(account)!;
  }

  /**
   * Install a grant obtained by a login; the old one is replaced only now (never deleted
   * on failure). `issuedBy` is the identity the login talked to: if the account has moved
   * to another provider or client since the login started, the grant is refused (409
   * `conflict`), so tokens of one provider never serve an account that names another.
   */
  async installLogin(account: string, set: TokenSet, issuedBy: string): Promise<GrantRecord> {
    return this.queue(account, async () => {
      const cfg = this.accountOrThrow(account);
      if (identityKey(cfg) !== issuedBy) {
        throw E.conflict(
          `account "${account}" was changed to ${describeIdentity(JSON.parse(identityKey(cfg)))} while this login with ${describeIdentity(parseIdentity(issuedBy) ?? {})} was in progress; its grant was not kept. Log in again`,
          { account },
        );
      }
      this.keepSecrets(account, set);
      const now = this.now();
      const g = this.deps.store.replaceGrant(account, {
        ...updateFromSet(set, now, undefined),
        refresh_token: set.refresh_token ?? null,
        bound_to: issuedBy,
      });
      this.installGrant(account, g);
      this.watchGrant(account, cfg, g);
      this.health.delete(account);
      return g;
    });
  }

  /** Revoke at the provider where possible, then forget the grant (`logout`); config stays. */
  async logout(account: string): Promise<{ revoked: boolean }> {
    if (!this.deps.config.getAccount(account)) throw unknownAccount(account);
    return this.queue(account, () => this.revokeAndDrop(account, 'logout'));
  }

  /**
   * Rule 8: the account no longer names the provider or client that issued its grant.
   * Revoke the grant there (with that provider's own config, never the new one), drop it
   * and every cached or narrowed token of it. Queued behind any refresh in flight.
   */
  async retire(account: string, why: string): Promise<{ revoked: boolean; hadGrant: boolean }> {
    this.forget(account);
    return this.queue(account, async () => {
      const hadGrant = Boolean(this.deps.store.getGrant(account));
      const { revoked } = await this.revokeAndDrop(account, why);
      // The stored secrets were given for the old client: never send them to the new one.
      this.deps.store.deleteSecrets(account);
      return { revoked, hadGrant };
    });
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
    this.forget(account);
    return this.queue(account, async () => {
      let result = { revoked: false, hadGrant: false };
      if (opts.retire) {
        const hadGrant = Boolean(this.grants.get(account) ?? this.deps.store.getGrant(account));
        result = { ...(await this.revokeAndDrop(account, opts.why)), hadGrant };
      }
      this.forget(account);
      await apply();
      this.forget(account);
      return result;
    });
  }

  /** Drop everything in memory about an account (after logout/remove/config change). */
  forget(account: string): void {
    this.grants.delete(account);
    this.health.delete(account);
    for (const key of [...this.cache.keys()]) if (accountOfKey(key) === account) this.cache.delete(key);
    for (const [key, t] of this.timers) {
      if (accountOfKey(key) === account) {
        clearTimeout(t);
        this.timers.delete(key);
      }
    }
    for (const key of [...this.usedKeys]) if (accountOfKey(key) === account) this.usedKeys.delete(key);
    clearTimeout(this.keepAlives.get(account));
    this.keepAlives.delete(account);
    this.reauthSoonSent.delete(account);
  }

  /** True when the stored grant (if any) belongs to the account's current identity. */
  grantMatches(account: string, cfg: AccountConfig): boolean {
    const g = this.grants.get(account) ?? this.deps.store.getGrant(account);
    return !g || g.bound_to === null || g.bound_to === identityKey(cfg);
  }

  /** What the API shows of an account's grant. */
  grantState(account: string): { grant?: GrantRecord; token?: CachedToken; lastError: string | null } {
    const grant = this.grants.get(account) ?? this.deps.store.getGrant(account);
    return {
      grant,
      token: this.cache.get(cacheKey(account)),
      lastError: this.health.get(account)?.lastError ?? grant?.last_error ?? null,
    };
  }

  /** Start no more proactive refreshes (first step of shutdown). */
  stopTimers(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const t of this.keepAlives.values()) clearTimeout(t);
    this.keepAlives.clear();
  }

  /** Stop timers and abort provider requests still in flight (last step of shutdown). */
  close(): void {
    this.stopTimers();
    for (const ac of this.inFlightAborts) ac.abort(new Error('tokend is shutting down'));
  }

  // ---- the refresh ----

  /** Rule 3: one refresh per key at a time; every caller of that key waits for it. */
  private flight(req: RefreshRequest): Promise<CachedToken> {
    const running = this.flights.get(req.key);
    if (running) return running;
    const p = this.queue(req.account, () => this.refreshOnce(req)).finally(() => {
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

  /**
   * The one place that calls the provider for a token (rules 3–6, 8): runs inside the
   * account's queue, so the config and grant it reads are current and no other call on
   * this account's refresh token is in flight.
   */
  private async refreshOnce(req: RefreshRequest): Promise<CachedToken> {
    const { key, account, scope, audience } = req;
    // While we queued, another flight on this account may have produced this key's token.
    const cached = this.cache.get(key);
    if (cached && cached.obtained_at >= req.notBefore) return cached;

    const cfg = this.accountOrThrow(account);
    const driver = this.deps.getDriver(cfg.driver);
    if (!driver) throw E.internal(`account "${account}" uses an unknown driver "${cfg.driver}"`);
    let grant = this.grants.get(account) ?? this.deps.store.getGrant(account);
    if (grant && !this.adoptOrKeep(grant, cfg)) {
      // Rule 8, last line of defence: never send a refresh token to a provider that did not issue it.
      await this.revokeAndDrop(account, 'the account names another provider or client than the one that issued its grant');
      this.deps.store.deleteSecrets(account);
      grant = undefined;
    }
    const recoverable = this.recoverable(account, cfg, driver);
    const refreshToken = grant?.status === 'active' ? grant.refresh_token : null;
    if (!refreshToken) {
      // No refresh token (none yet, or the provider refused it): only the recover step can help.
      if (!recoverable) {
        if (grant?.status === 'reauth_required') throw this.reauthError(account, grant.last_error);
        const login = this.deps.pendingLogin?.(account);
        if (login) throw loginPendingError(account, login);
        const next = driver.reauthHint?.(account) ?? `\`tokend login ${account}\` (or \`tokend import ${account} --refresh-token-stdin\`)`;
        throw E.reauthRequired(`account "${account}" has no grant yet: run ${next}`, { account });
      }
      admit(this.healthOf(account), account, this.now(), this.deps.config.settings);
      return this.recoverOnce(req, cfg, driver, grant?.status === 'reauth_required' ? grant.last_error : null);
    }
    admit(this.healthOf(account), account, this.now(), this.deps.config.settings);

    const startedAt = this.now();
    // Rule 5: mark the grant in flight, durably, before the request leaves.
    this.deps.store.markInFlight(account, startedAt);
    this.grants.set(account, { ...grant!, in_flight_since: startedAt });
    let set: TokenSet;
    try {
      set = await this.withTimeout((signal) => driver.refresh(this.context(account, cfg, signal), refreshToken, { scope, audience }));
    } catch (err) {
      const de = asDriverError(err);
      if (de.kind !== 'invalid_grant' || !recoverable) throw this.failed(account, err, grant!);
      // Rule 6: the refresh token is refused (or was spent by an interrupted refresh); the
      // provider allows another way in. It is one more attempt of the minute's budget.
      const why = this.refusalReason(de.message, grant!);
      this.deps.store.clearInFlight(account);
      this.deps.store.setStatus(account, 'reauth_required', why);
      this.grants.set(account, { ...grant!, in_flight_since: null, status: 'reauth_required', last_error: why });
      this.deps.log.warn('the provider refused the refresh token; trying the recover step', { account, reason: why });
      admit(this.healthOf(account), account, this.now(), this.deps.config.settings);
      return this.recoverOnce(req, cfg, driver, why);
    }
    return this.commit(req, cfg, set, startedAt, false);
  }

  /**
   * The recover step (rule 6): a new grant without the refresh token (client credentials,
   * the stored password, a provider's force-refresh). `refused` says why the refresh token
   * was given up, when it was; then success is announced as `token.recovered`.
   */
  private async recoverOnce(req: RefreshRequest, cfg: AccountConfig, driver: Driver, refused: string | null): Promise<CachedToken> {
    const { account, scope, audience } = req;
    const startedAt = this.now();
    let set: TokenSet;
    try {
      set = await this.withTimeout((signal) => driver.recover!(this.context(account, cfg, signal), { scope, audience }));
    } catch (err) {
      const de = asDriverError(err);
      if (refused && de.kind !== 'transient') {
        // Neither the refresh token nor the recover step works: only the user can help now.
        return Promise.reject(this.failed(account, new DriverError('invalid_grant', `${refused}; the recover step failed too: ${de.message}`, { oauthError: de.oauthError })));
      }
      throw this.failed(account, err);
    }
    const tok = this.commit(req, cfg, set, startedAt, true);
    if (refused) {
      this.deps.log.info('recovered the grant without the user', { account });
      this.deps.events.emit('token.recovered', account, { reason: refused });
    }
    return tok;
  }

  /** Can this account's driver obtain a grant without the user (rule 6's recover step)? */
  private recoverable(account: string, cfg: AccountConfig, driver: Driver): boolean {
    if (!driver.recover || !driver.canRecover) return false;
    return driver.canRecover(this.context(account, cfg, AbortSignal.abort()));
  }

  /** Why a refresh token is refused, for the user: an interrupted refresh may have spent it. */
  private refusalReason(message: string, grant: GrantRecord): string {
    const interrupted = grant.in_flight_since;
    return interrupted
      ? `the provider refused the refresh token (invalid_grant); a refresh interrupted at ${new Date(interrupted).toISOString()} (its answer was lost: timeout or daemon stopped mid-refresh) may have spent it`
      : `the provider refused the refresh token (${message})`;
  }

  /**
   * Rule 5: the rotated refresh token is committed (synchronous=FULL) before the new
   * access token is served. A narrowed refresh keeps the base access token.
   */
  private commit(req: RefreshRequest, cfg: AccountConfig, set: TokenSet, startedAt: number, obtainedAnew: boolean): CachedToken {
    const { key, account, scope } = req;
    const base = key === cacheKey(account);
    const update = updateFromSet(set, startedAt, scope);
    this.keepSecrets(account, set);
    let committed: GrantRecord | undefined;
    if (obtainedAnew && base) {
      // A grant obtained anew replaces the old one whole (its refresh token, if any, is dead).
      committed = this.deps.store.replaceGrant(account, { ...update, refresh_token: set.refresh_token ?? null, bound_to: identityKey(cfg) });
      this.grants.set(account, committed);
    } else if (!obtainedAnew) {
      const current = this.grants.get(account) ?? this.deps.store.getGrant(account);
      const forStore: TokenUpdate =
        base || !current?.access_token
          ? { ...update }
          : {
              access_token: current.access_token,
              token_type: current.token_type ?? 'Bearer',
              expires_at: current.expires_at,
              obtained_at: current.obtained_at ?? startedAt,
              scope: current.scope,
              refresh_token: set.refresh_token,
            };
      if (!base && !current?.access_token) forStore.expires_at = 0; // not servable as the base token
      committed = this.deps.store.commitRefresh(account, current!.generation, forStore);
      this.grants.set(account, committed);
    }
    healthy(this.healthOf(account));

    const tok: CachedToken = {
      account,
      access_token: set.access_token,
      token_type: set.token_type,
      expires_at: update.expires_at,
      obtained_at: startedAt,
      scope: update.scope,
    };
    this.cache.set(key, tok);
    this.usedKeys.delete(key);
    this.schedule(account, key, tok);
    if (committed) this.watchGrant(account, cfg, committed);
    const expiresAt = tok.expires_at ? new Date(tok.expires_at).toISOString() : null;
    this.deps.log.info('token refreshed', {
      account,
      generation: committed?.generation,
      expires_at: expiresAt,
      rotated: Boolean(set.refresh_token),
      narrowed: !base,
    });
    this.deps.events.emit('token.refreshed', account, { generation: committed?.generation, expires_at: expiresAt });
    return tok;
  }

  /** After a failed provider call: status, in-flight mark, backoff and events; returns the wire error. */
  private failed(account: string, err: unknown, grant?: GrantRecord): TokendError {
    if (err instanceof TokendError) return err;
    const de = asDriverError(err);
    const h = this.healthOf(account);
    h.lastError = de.message;
    this.deps.events.emit('token.refresh_failed', account, { error: de.oauthError ?? de.kind, message: de.message });

    if (de.kind === 'invalid_grant') {
      // `grant` is the record from before this attempt: an in-flight mark on it means an
      // earlier refresh never learnt its outcome (timeout, or the daemon was killed).
      const why = grant ? this.refusalReason(de.message, grant) : de.message;
      // The provider answered: the outcome is known, so the in-flight mark goes (the status
      // now says why). Stored secrets are kept (rule 6): a login replaces the grant.
      this.deps.store.clearInFlight(account);
      this.deps.store.setStatus(account, 'reauth_required', why);
      const g = this.deps.store.getGrant(account);
      if (g) this.grants.set(account, g);
      for (const key of [...this.cache.keys()]) if (accountOfKey(key) === account) this.cache.delete(key);
      this.deps.log.warn('account needs a new login', { account, reason: why });
      this.deps.events.emit('account.reauth_required', account, { reason: why });
      this.deps.onReauthRequired?.(account);
      return this.reauthError(account, why);
    }

    // The response, if any, was read: the refresh token was not spent (unless the
    // outcome is unknown, in which case the in-flight mark stays as a witness).
    // An older mark (an earlier attempt whose outcome is unknown) stays.
    if (grant && !de.outcomeUnknown && !grant.in_flight_since) {
      this.deps.store.clearInFlight(account);
      this.grants.set(account, { ...grant, in_flight_since: null });
    }
    const delay = backOff(h, this.now(), this.random(), this.deps.config.settings, de.retryAfterMs);
    this.deps.log.warn('refresh failed', { account, kind: de.kind, status: de.status, error: de.message, retry_in_ms: Math.round(delay) });
    const tok = this.cache.get(cacheKey(account));
    if (tok) this.schedule(account, cacheKey(account), tok);
    return wireErrorOf(de, { account, doing: 'refresh the token', retryAfter: Math.ceil(delay / 1000) });
  }

  // ---- grants and identities ----

  /**
   * Is `g` the grant of the account as configured now? A grant stored before identities
   * were recorded is adopted by the current identity (there is nothing else to go by).
   */
  private adoptOrKeep(g: GrantRecord, cfg: AccountConfig): boolean {
    const id = identityKey(cfg);
    if (g.bound_to === null) {
      this.deps.store.setBinding(g.account, id);
      g.bound_to = id;
      return true;
    }
    return g.bound_to === id;
  }

  /**
   * Revoke the stored grant at the provider that issued it, then delete it and forget the
   * account's tokens. Runs inside the account's queue. Revocation is best effort (RFC 7009
   * §2.2.1): the grant is dropped either way, and the log says whether it was revoked.
   */
  private async revokeAndDrop(account: string, why: string): Promise<{ revoked: boolean }> {
    const grant = this.grants.get(account) ?? this.deps.store.getGrant(account);
    const current = this.deps.config.getAccount(account);
    // The grant's own provider: from its recorded identity, else (an old grant) the account's.
    const issuer = grant?.bound_to ? parseIdentity(grant.bound_to) : undefined;
    const ours = current && (!grant?.bound_to || identityKey(current) === grant.bound_to);
    const cfg = ours ? current : issuer ? configForIdentity(issuer) : undefined;
    let revoked = false;
    const token = grant?.refresh_token ?? grant?.access_token;
    const driver = cfg ? this.deps.getDriver(cfg.driver) : undefined;
    if (cfg && driver?.revoke && token) {
      try {
        await this.withTimeout((signal) =>
          driver.revoke!(this.context(account, cfg, signal), token, grant?.refresh_token ? 'refresh_token' : 'access_token'),
        );
        revoked = true;
      } catch (err) {
        this.deps.log.warn('revocation at the provider failed; the grant is forgotten locally', {
          account,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    this.deps.store.deleteGrant(account);
    this.forget(account);
    if (grant && why !== 'logout') {
      this.deps.log.warn('grant dropped: it belongs to another provider or client', {
        account,
        issued_by: issuer ? describeIdentity(issuer) : undefined,
        revoked,
        reason: why,
      });
    }
    return { revoked };
  }

  /** Secrets that came with a grant (Real-Debrid's per-user client id and secret): stored encrypted with the account. */
  private keepSecrets(account: string, set: TokenSet): void {
    for (const [name, value] of Object.entries(set.secrets ?? {})) this.deps.store.putSecret(account, name, value);
  }

  private installGrant(account: string, g: GrantRecord): void {
    this.forget(account);
    this.grants.set(account, g);
    const tok = tokenFromGrant(g);
    if (tok) {
      this.cache.set(cacheKey(account), tok);
      this.schedule(account, cacheKey(account), tok);
    }
  }

  // ---- plumbing ----

  private accountOrThrow(account: string): AccountConfig {
    const cfg = this.deps.config.getAccount(account);
    if (!cfg) throw unknownAccount(account);
    return cfg;
  }

  private healthOf(account: string): AccountHealth {
    let h = this.health.get(account);
    if (!h) this.health.set(account, (h = freshHealth()));
    return h;
  }

  private reauthError(account: string, reason: string | null): TokendError {
    const login = this.deps.pendingLogin?.(account);
    if (login) return loginPendingError(account, login);
    // Where the driver has another way back than a login (AMP: the password; Cal.com: an import), it says so.
    const cfg = this.deps.config.getAccount(account);
    const next = (cfg && this.deps.getDriver(cfg.driver)?.reauthHint?.(account)) ?? `\`tokend login ${account}\``;
    return E.reauthRequired(`account "${account}" needs a new login${reason ? `: ${reason}` : ''}. Run ${next}`, { account });
  }

  private context(account: string, cfg: AccountConfig, signal: AbortSignal): DriverContext {
    const store = this.deps.store;
    return {
      name: account,
      config: cfg,
      clientSecret: store.getSecret(account, 'client_secret'),
      secret: (name) => store.getSecret(account, name),
      currentAccessToken: this.cache.get(cacheKey(account))?.access_token ?? this.grants.get(account)?.access_token ?? undefined,
      signal,
    };
  }

  private async withTimeout<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const timer = setTimeout(
      () => ac.abort(new Error(`no answer within ${this.deps.config.settings.http_timeout_ms} ms`)),
      this.deps.config.settings.http_timeout_ms,
    );
    this.inFlightAborts.add(ac);
    try {
      return await fn(ac.signal);
    } finally {
      clearTimeout(timer);
      this.inFlightAborts.delete(ac);
    }
  }

  /**
   * Rule 4: refresh when less than min(5 min, ¼ of the lifetime) remains, or when the
   * backoff allows the next attempt. Narrowed keys only while someone uses them.
   */
  private schedule(account: string, key: string, tok: CachedToken): void {
    const old = this.timers.get(key);
    if (old) clearTimeout(old);
    this.timers.delete(key);
    if (this.closed || !this.deps.config.settings.proactive_refresh || tok.expires_at === null) return;
    const lifetime = Math.max(0, tok.expires_at - tok.obtained_at);
    const lead = Math.min(5 * 60_000, lifetime / 4);
    let at = tok.expires_at - lead;
    const h = this.health.get(account);
    if (h && h.nextAttemptAt > at) at = h.nextAttemptAt;
    const delay = Math.max(0, Math.min(at - this.now(), 2 ** 31 - 1));
    const timer = setTimeout(() => {
      this.timers.delete(key);
      void this.proactive(account, key);
    }, delay);
    timer.unref();
    this.timers.set(key, timer);
  }

  /**
   * What a grant's own lifetime asks for, after every commit and at start-up:
   * - `refresh_idle_days` (Keycloak's Offline Session Idle): a provider forgets a refresh
   *   token nobody used for that long, so a keep-alive refresh runs before it, a margin of a
   *   tenth (at least a day) ahead, even when no client asks and proactive refresh is off;
   * - a known refresh-token expiry (`refresh_token_expires_in`, a JWT's `exp`): the user is
   *   told ahead (`account.reauth_soon`, and `tokend status`/`doctor` show it) instead of
   *   finding out on the day.
   */
  private watchGrant(account: string, cfg: AccountConfig, g: GrantRecord): void {
    clearTimeout(this.keepAlives.get(account));
    this.keepAlives.delete(account);
    if (this.closed) return;
    const now = this.now();
    if (g.refresh_expires_at !== null && g.refresh_token) {
      const warnFrom = g.refresh_expires_at - REAUTH_SOON_MS;
      if (now >= warnFrom && this.reauthSoonSent.get(account) !== g.refresh_expires_at) {
        this.reauthSoonSent.set(account, g.refresh_expires_at);
        const at = new Date(g.refresh_expires_at).toISOString();
        this.deps.log.warn('the refresh token expires soon: log in again before then', { account, refresh_expires_at: at });
        this.deps.events.emit('account.reauth_soon', account, { refresh_expires_at: at });
      }
    }
    if (!cfg.refresh_idle_days || !g.refresh_token) return;
    const idleMs = cfg.refresh_idle_days * DAY_MS;
    const lastUse = g.obtained_at ?? g.updated_at;
    const due = lastUse + idleMs - Math.max(DAY_MS, idleMs / 10);
    // setTimeout holds at most ~24.8 days: a longer wait re-arms itself and checks again.
    const timer = setTimeout(() => {
      this.keepAlives.delete(account);
      if (this.now() < due) return this.watchGrant(account, cfg, this.grants.get(account) ?? g);
      this.deps.log.info('keep-alive refresh: the provider forgets unused refresh tokens', { account, idle_days: cfg.refresh_idle_days });
      void this.flight({ key: cacheKey(account), account, notBefore: this.now() }).catch(() => undefined);
    }, Math.max(0, Math.min(due - now, 2 ** 31 - 1)));
    timer.unref();
    this.keepAlives.set(account, timer);
  }

  private async proactive(account: string, key: string): Promise<void> {
    if (this.closed) return;
    const grant = this.grants.get(account);
    if (!this.deps.config.getAccount(account) || grant?.status === 'reauth_required') return;
    if (key !== cacheKey(account) && !this.usedKeys.has(key)) {
      this.cache.delete(key); // nobody asked for it since: let it lapse
      return;
    }
    const [, scope, audience] = splitKey(key);
    try {
      await this.flight({ key, account, scope: scope || undefined, audience: audience || undefined, notBefore: this.now() });
    } catch (err) {
      // failed() already logged, backed off and rescheduled; nothing to add here.
      if (!(err instanceof TokendError)) this.deps.log.error('proactive refresh crashed', { account, error: err as Error });
    }
  }
}

const DAY_MS = 24 * 3_600_000;
/** How long before a refresh token's own expiry the user is told to log in again. */
export const REAUTH_SOON_MS = 7 * DAY_MS;

/** 409 login_pending: say where to finish the login; `error.login` carries the whole login object. */
function loginPendingError(account: string, login: LoginView): TokendError {
  const where =
    login.flow === 'device' ? `enter the code ${login.user_code} at ${login.verification_uri}` : `finish signing in at ${login.authorization_url}`;
  return E.loginPending(`account "${account}" is waiting for a login: ${where}`, { account, login });
}
