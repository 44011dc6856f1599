import type { AccountConfig, LoginView } from '../protocol/api.js';
import type { ConfigStore } from './config.js';
import { DriverError, type Driver, type TokenSet } from './drivers/driver.js';
import { E, TokendError, unknownAccount } from './errors.js';
import type { EventBus } from './events.js';
import type { Logger } from './log.js';
import type { GrantRecord, Store, TokenUpdate } from './store/types.js';

/** A servable access token, held in memory (DESIGN.md rule 2). */
export interface CachedToken {
  account: string;
  access_token: string;
  token_type: string;
  /** epoch ms, or null when the provider said nothing about expiry. */
  expires_at: number | null;
  obtained_at: number;
  scope: string | null;
}

export interface TokenQuery {
  account: string;
  /** Seconds the token must still be valid; the settings' default when absent. */
  min_ttl?: number;
  scope?: string;
  audience?: string;
}

export interface BrokerDeps {
  store: Store;
  config: ConfigStore;
  getDriver: (name: string) => Driver | undefined;
  events: EventBus;
  log: Logger;
  now?: () => number;
  random?: () => number;
  /** The account's pending interactive login, if any: requests that need one get 409 login_pending. */
  pendingLogin?: (account: string) => LoginView | undefined;
}

/** Per-account refresh health: backoff after failures and the attempt budget (rule 6). */
interface AccountHealth {
  failures: number;
  nextAttemptAt: number;
  attempts: number[];
  lastError: string | null;
}

const BASE = '';

/**
 * The broker: serves tokens from memory, refreshes them once per (account, scope,
 * audience), rotates refresh tokens durably, and backs off when providers fail.
 * It owns every rule of DESIGN.md "Token serving rules".
 */
export class Broker {
  private readonly cache = new Map<string, CachedToken>();
  private readonly flights = new Map<string, Promise<CachedToken>>();
  /** One upstream call per account at a time: two keys refreshing with one refresh token would be a replay. */
  private readonly accountQueues = new Map<string, Promise<unknown>>();
  private readonly grants = new Map<string, GrantRecord>();
  private readonly health = new Map<string, AccountHealth>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
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
      if (!this.deps.config.getAccount(g.account)) continue;
      this.grants.set(g.account, g);
      if (g.in_flight_since) {
        this.deps.log.warn('a refresh was interrupted when the daemon stopped; its refresh token may be spent', {
          account: g.account,
          since: new Date(g.in_flight_since).toISOString(),
        });
      }
      const tok = tokenFromGrant(g);
      if (tok && g.status === 'active') {
        this.cache.set(cacheKey(g.account), tok);
        this.schedule(g.account, BASE, tok);
      }
    }
  }

  /** DESIGN.md rules 1–3: memory first, else one refresh shared by every waiting caller. */
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
    if (grant?.status === 'reauth_required') throw this.reauthError(q.account, grant.last_error);
    if (key !== q.account) this.usedKeys.add(key);
    try {
      return await this.flight(key, q.account, cfg, q.scope, q.audience, now);
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
    const cfg = this.deps.config.getAccount(account);
    if (!cfg) throw unknownAccount(account);
    const key = cacheKey(account);
    await this.flight(key, account, cfg, undefined, undefined, this.now() + 1);
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

  /** Start from a known refresh token (`tokend import`): replaces the grant, then refreshes once to prove it. */
  async importRefreshToken(account: string, refreshToken: string): Promise<GrantRecord> {
    const cfg = this.deps.config.getAccount(account);
    if (!cfg) throw unknownAccount(account);
    await this.queue(account, async () => {
      const g = this.deps.store.replaceGrant(account, { refresh_token: refreshToken });
      this.installGrant(account, g);
    });
    this.health.delete(account);
    await this.forceRefresh(account);
    return this.grants.get(account)!;
  }

  /** Install a grant obtained by a login; the old one is replaced only now (never deleted on failure). */
  async installLogin(account: string, set: TokenSet): Promise<GrantRecord> {
    return this.queue(account, async () => {
      const now = this.now();
      const g = this.deps.store.replaceGrant(account, {
        ...updateFromSet(set, now, undefined),
        refresh_token: set.refresh_token ?? null,
      });
      this.installGrant(account, g);
      this.health.delete(account);
      return g;
    });
  }

  /** Revoke at the provider where possible, then forget the grant (`logout`); config stays. */
  async logout(account: string): Promise<{ revoked: boolean }> {
    const cfg = this.deps.config.getAccount(account);
    if (!cfg) throw unknownAccount(account);
    return this.queue(account, async () => {
      const grant = this.grants.get(account) ?? this.deps.store.getGrant(account);
      let revoked = false;
      const driver = this.deps.getDriver(cfg.driver);
      const token = grant?.refresh_token ?? grant?.access_token;
      if (driver?.revoke && token) {
        try {
          await this.withTimeout((signal) =>
            driver.revoke!(this.context(account, cfg, signal), token, grant?.refresh_token ? 'refresh_token' : 'access_token'),
          );
          revoked = true;
        } catch (err) {
          // RFC 7009 §2.2.1: the token may still exist; we forget it anyway, and say so.
          this.deps.log.warn('revocation at the provider failed; the grant is forgotten locally', {
            account,
            error: err instanceof Error ? err.message : String(err),
          });
        }
      }
      this.deps.store.deleteGrant(account);
      this.forget(account);
      return { revoked };
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
  }

  /** Stop timers and abort provider requests still in flight (last step of shutdown). */
  close(): void {
    this.stopTimers();
    for (const ac of this.inFlightAborts) ac.abort(new Error('tokend is shutting down'));
  }

  // ---- internals ----

  private flight(
    key: string,
    account: string,
    cfg: AccountConfig,
    scope: string | undefined,
    audience: string | undefined,
    requestedAt: number,
  ): Promise<CachedToken> {
    const running = this.flights.get(key);
    if (running) return running;
    const p = this.queue(account, () => this.refreshKey(key, account, cfg, scope, audience, requestedAt)).finally(() => {
      this.flights.delete(key);
    });
    this.flights.set(key, p);
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

  private async refreshKey(
    key: string,
    account: string,
    cfg: AccountConfig,
    scope: string | undefined,
    audience: string | undefined,
    requestedAt: number,
  ): Promise<CachedToken> {
    // While we queued, another flight on this account may have produced this key's token.
    const cached = this.cache.get(key);
    if (cached && cached.obtained_at >= requestedAt) return cached;

    const driver = this.deps.getDriver(cfg.driver);
    if (!driver) throw E.internal(`account "${account}" uses an unknown driver "${cfg.driver}"`);
    const grant = this.grants.get(account) ?? this.deps.store.getGrant(account);
    if (grant?.status === 'reauth_required') throw this.reauthError(account, grant.last_error);
    const withoutUser = !grant?.refresh_token && cfg.flow === 'client-credentials' && driver.obtainWithoutUser;
    if (!grant?.refresh_token && !withoutUser) {
      const login = this.deps.pendingLogin?.(account);
      if (login) throw loginPendingError(account, login);
      throw E.reauthRequired(
        `account "${account}" has no grant yet: run \`tokend login ${account}\` (or \`tokend import ${account} --refresh-token-stdin\`)`,
        { account },
      );
    }
    this.admit(account);

    const opts = { scope, audience };
    const startedAt = this.now();
    let set: TokenSet;
    if (withoutUser) {
      try {
        set = await this.withTimeout((signal) => driver.obtainWithoutUser!(this.context(account, cfg, signal), opts));
      } catch (err) {
        throw this.failed(account, err, false);
      }
    } else {
      // Rule 5: mark the grant in flight, durably, before the request leaves.
      this.deps.store.markInFlight(account, startedAt);
      this.grants.set(account, { ...grant!, in_flight_since: startedAt });
      try {
        set = await this.withTimeout((signal) => driver.refresh(this.context(account, cfg, signal), grant!.refresh_token!, opts));
      } catch (err) {
        throw this.failed(account, err, true, grant!);
      }
    }

    const base = key === cacheKey(account);
    const update = updateFromSet(set, startedAt, scope);
    let committed: GrantRecord | undefined;
    if (!withoutUser || base) {
      // Rule 5: the rotated refresh token is committed (synchronous=FULL) before
      // the new access token is served. A narrowed refresh keeps the base access token.
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
      committed = current
        ? this.deps.store.commitRefresh(account, current.generation, forStore)
        : this.deps.store.replaceGrant(account, { ...forStore, refresh_token: set.refresh_token ?? null });
      this.grants.set(account, committed);
    }
    this.health.set(account, { ...this.healthOf(account), failures: 0, nextAttemptAt: 0, lastError: null });

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
    this.deps.log.info('token refreshed', {
      account,
      generation: committed?.generation,
      expires_at: tok.expires_at ? new Date(tok.expires_at).toISOString() : null,
      rotated: Boolean(set.refresh_token),
      narrowed: !base,
    });
    this.deps.events.emit('token.refreshed', account, {
      generation: committed?.generation,
      expires_at: tok.expires_at ? new Date(tok.expires_at).toISOString() : null,
    });
    return tok;
  }

  /** Rule 6: the attempt budget and the backoff gate, before any request leaves. */
  private admit(account: string): void {
    const h = this.healthOf(account);
    const now = this.now();
    if (h.nextAttemptAt > now) {
      const wait = Math.ceil((h.nextAttemptAt - now) / 1000);
      throw E.upstreamUnavailable(
        `the provider for "${account}" is unavailable (${h.lastError ?? "unknown error"}); next attempt in ${wait} s`,
        { account, retryAfter: wait },
      );
    }
    const windowStart = now - 60_000;
    h.attempts = h.attempts.filter((t) => t > windowStart);
    if (h.attempts.length >= this.deps.config.settings.max_refreshes_per_minute) {
      const wait = Math.max(1, Math.ceil((h.attempts[0] + 60_000 - now) / 1000));
      throw E.rateLimited(
        `refresh attempts for "${account}" are limited to ${this.deps.config.settings.max_refreshes_per_minute} a minute; try again in ${wait} s`,
        { account, retryAfter: wait },
      );
    }
    h.attempts.push(now);
    this.health.set(account, h);
  }

  private healthOf(account: string): AccountHealth {
    return this.health.get(account) ?? { failures: 0, nextAttemptAt: 0, attempts: [], lastError: null };
  }

  /** Turn a driver failure into the wire error, updating backoff, status and events. */
  private failed(account: string, err: unknown, usedRefreshToken: boolean, grant?: GrantRecord): TokendError {
    if (err instanceof TokendError) return err;
    const de =
      err instanceof DriverError ? err : new DriverError('transient', `request failed: ${(err as Error)?.message ?? String(err)}`, { outcomeUnknown: true });
    const h = this.healthOf(account);
    h.lastError = de.message;
    this.deps.events.emit('token.refresh_failed', account, { error: de.oauthError ?? de.kind, message: de.message });

    if (de.kind === 'invalid_grant') {
      // `grant` is the record from before this attempt: an in-flight mark on it means an
      // earlier refresh never learnt its outcome (timeout, or the daemon was killed).
      const interrupted = grant?.in_flight_since;
      const why = interrupted
        ? `the provider refused the refresh token (invalid_grant); a refresh interrupted at ${new Date(grant!.in_flight_since!).toISOString()} (its answer was lost: timeout or daemon stopped mid-refresh) may have spent it`
        : `the provider refused the refresh token (${de.message})`;
      // Stored secrets are kept (rule 6): a login replaces the grant when it succeeds.
      this.deps.store.setStatus(account, 'reauth_required', why);
      const g = this.deps.store.getGrant(account);
      if (g) this.grants.set(account, g);
      for (const key of [...this.cache.keys()]) if (accountOfKey(key) === account) this.cache.delete(key);
      this.health.set(account, h);
      this.deps.log.warn('account needs a new login', { account, reason: why });
      this.deps.events.emit('account.reauth_required', account, { reason: why });
      return this.reauthError(account, why);
    }

    // The response, if any, was read: the refresh token was not spent (unless the
    // outcome is unknown, in which case the in-flight mark stays as a witness).
    // An older mark (an earlier attempt whose outcome is unknown) stays.
    if (usedRefreshToken && !de.outcomeUnknown && grant && !grant.in_flight_since) {
      this.deps.store.clearInFlight(account);
      this.grants.set(account, { ...grant, in_flight_since: null });
    }
    h.failures += 1;
    const { backoff_initial_ms, backoff_max_ms } = this.deps.config.settings;
    const exp = Math.min(backoff_max_ms, backoff_initial_ms * 2 ** (h.failures - 1));
    const jittered = exp * (0.8 + 0.4 * this.random());
    const delay = Math.min(Math.max(jittered, de.retryAfterMs ?? 0), Math.max(backoff_max_ms, de.retryAfterMs ?? 0));
    h.nextAttemptAt = this.now() + delay;
    this.health.set(account, h);
    this.deps.log.warn('refresh failed', { account, kind: de.kind, status: de.status, error: de.message, retry_in_ms: Math.round(delay) });
    const tok = this.cache.get(cacheKey(account));
    if (tok) this.schedule(account, BASE, tok);
    const retryAfter = Math.ceil(delay / 1000);
    if (de.kind === 'config') {
      return E.providerRejected(`the provider refused the request for "${account}": ${de.message}`, { account, retryAfter });
    }
    return E.upstreamUnavailable(`the provider for "${account}" is unavailable: ${de.message}`, { account, retryAfter });
  }

  private reauthError(account: string, reason: string | null): TokendError {
    const login = this.deps.pendingLogin?.(account);
    if (login) return loginPendingError(account, login);
    return E.reauthRequired(
      `account "${account}" needs a new login${reason ? `: ${reason}` : ''}. Run \`tokend login ${account}\``,
      { account },
    );
  }

  private installGrant(account: string, g: GrantRecord): void {
    this.forget(account);
    this.grants.set(account, g);
    const tok = tokenFromGrant(g);
    if (tok) {
      this.cache.set(cacheKey(account), tok);
      this.schedule(account, BASE, tok);
    }
  }

  private context(account: string, cfg: AccountConfig, signal: AbortSignal) {
    return { name: account, config: cfg, clientSecret: this.deps.store.getSecret(account, 'client_secret'), signal };
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
  private schedule(account: string, keyOrBase: string, tok: CachedToken): void {
    const key = keyOrBase === BASE ? cacheKey(account) : keyOrBase;
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

  private async proactive(account: string, key: string): Promise<void> {
    if (this.closed) return;
    const cfg = this.deps.config.getAccount(account);
    const grant = this.grants.get(account);
    if (!cfg || grant?.status === 'reauth_required') return;
    if (key !== cacheKey(account) && !this.usedKeys.has(key)) {
      this.cache.delete(key); // nobody asked for it since: let it lapse
      return;
    }
    const [, scope, audience] = splitKey(key);
    try {
      await this.flight(key, account, cfg, scope || undefined, audience || undefined, this.now());
    } catch (err) {
      // failed() already logged, backed off and rescheduled; nothing to add here.
      if (!(err instanceof TokendError)) this.deps.log.error('proactive refresh crashed', { account, error: err as Error });
    }
  }
}

/** 409 login_pending: say where to finish the login; `error.login` carries the whole login object. */
function loginPendingError(account: string, login: LoginView): TokendError {
  const where =
    login.flow === 'device' ? `enter the code ${login.user_code} at ${login.verification_uri}` : `finish signing in at ${login.authorization_url}`;
  return E.loginPending(`account "${account}" is waiting for a login: ${where}`, { account, login });
}

/** The cache key of (account, scope, audience); the account name alone for the base token. */
export function cacheKey(account: string, scope?: string, audience?: string): string {
  if (!scope && !audience) return account;
  return `${account}\u0000${scope ?? ''}\u0000${audience ?? ''}`;
}
function splitKey(key: string): [string, string, string] {
  const [a, s = '', au = ''] = key.split('\u0000');
  return [a, s, au];
}
function accountOfKey(key: string): string {
  const i = key.indexOf('\u0000');
  return i < 0 ? key : key.slice(0, i);
}

/**
 * Rule 1 with one guard: a token can only satisfy `min_ttl` up to half its lifetime,
 * so a provider issuing 60 s tokens to a caller asking 120 s cannot cause a refresh
 * on every request.
 */
export function satisfies(tok: CachedToken, minTtlMs: number, now: number): boolean {
  if (tok.expires_at === null) return true;
  const lifetime = tok.expires_at - tok.obtained_at;
  const need = Math.min(minTtlMs, lifetime / 2);
  return tok.expires_at - now >= need && tok.expires_at > now;
}

function updateFromSet(set: TokenSet, obtainedAt: number, requestedScope: string | undefined): TokenUpdate {
  return {
    access_token: set.access_token,
    token_type: set.token_type || 'Bearer',
    // RFC 6749 §5.1: expires_in is only RECOMMENDED; without it we cannot know, and
    // serve the token until a tool reports it refused.
    expires_at: typeof set.expires_in === 'number' ? obtainedAt + set.expires_in * 1000 : null,
    obtained_at: obtainedAt,
    scope: set.scope ?? requestedScope ?? null,
    refresh_token: set.refresh_token,
  };
}

function tokenFromGrant(g: GrantRecord): CachedToken | undefined {
  if (!g.access_token) return undefined;
  return {
    account: g.account,
    access_token: g.access_token,
    token_type: g.token_type ?? 'Bearer',
    expires_at: g.expires_at,
    obtained_at: g.obtained_at ?? g.updated_at,
    scope: g.scope,
  };
}
