import type { AccountConfig, LoginView } from '../protocol/api.js';
import { importHint } from '../protocol/rules.js';
import { importedSecrets, importInterruptedReason, type ImportAttempt, type ImportedTokens } from './imports.js';
import { accountOfKey, cacheKey, satisfies, splitKey, tokenFromGrant, updateFromSet, type CachedToken } from './cached-token.js';
import type { ConfigStore } from './config.js';
import { asDriverError, wireErrorOf } from './driver-errors.js';
import { DriverError, type Driver, type DriverContext, type TokenSet } from './drivers/driver.js';
import { E, TokendError, unknownAccount } from './errors.js';
import type { EventBus } from './events.js';
import { configForIdentity, describeIdentity, identityKey, identityOf, isBoundTo, parseIdentity } from './grant-identity.js';
import type { Logger } from './log.js';
import { admit, backOff, freshHealth, healthy, waitOut, type AccountHealth } from './refresh-health.js';
import { GenerationMismatchError, isStoreUnavailable } from './store/errors.js';
import { summarize, type GrantRecord, type GrantSummary, type Store, type StoredAccessToken, type TokenUpdate } from './store/types.js';
import { DueQueue } from './due-queue.js';

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
  /**
   * In a fleet, another daemon's fresh result also satisfies the request when it is valid this
   * long (the caller's min_ttl; a proactive refresh's lead). Absent for a forced refresh, which
   * wants a token obtained after it was asked for.
   */
  minTtlMs?: number;
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

/** A rotated grant the provider issued but the fleet's database could not take: committed before any other use of the grant. */
interface PendingCommit {
  expectedGeneration: number;
  update: TokenUpdate;
  since: number;
  retries: number;
}

export interface BrokerDeps {
  store: Store;
  config: Pick<ConfigStore, 'getAccount' | 'settings'>;
  getDriver: (name: string) => Driver | undefined;
  events: Pick<EventBus, 'emit'>;
  log: Logger;
  now?: () => number;
  /** A clock that does not jump (tests move `now` alone to play a suspend). */
  monotonic?: () => number;
  random?: () => number;
  /** How the broker waits (tests record the wait and move their clock instead). */
  sleep?: (ms: number) => Promise<void>;
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
  /** Each grant as memory holds it: no token in it (GrantSummary). */
  private readonly grants = new Map<string, GrantSummary>();
  /**
   * Accounts whose access token is in the store and not read yet: read and decrypted on its
   * first use (readStoredToken), not all at start-up.
   */
  private readonly storedTokens = new Set<string>();
  private readonly health = new Map<string, AccountHealth>();
  /** Proactive refreshes (cache key → when), rule 4. */
  private readonly timers = new DueQueue((key) => void this.proactive(accountOfKey(key), key), () => this.now());
  /** Keep-alive refreshes of grants a provider forgets when unused (account → when). */
  private readonly keepAlives = new DueQueue((account) => this.runKeepAlive(account), () => this.now());
  /** Accounts whose coming refresh-token expiry was announced (account → that expiry), once each. */
  private readonly reauthSoonSent = new Map<string, number>();
  /** Keys other than the base key that were asked for since their last refresh. */
  private readonly usedKeys = new Set<string>();
  /**
   * The generation of each grant this daemon last read or wrote. In a fleet, a stored grant
   * with another generation was committed by another daemon: its tokens are used as they are.
   */
  private readonly seen = new Map<string, number>();
  /** Rotations the provider answered whose commit failed because the fleet's database was down. */
  private readonly pendingCommits = new Map<string, PendingCommit>();
  private readonly pendingTimers = new Map<string, NodeJS.Timeout>();
  /** Accounts with a reload from the fleet's database queued (notifications coalesce). */
  private readonly reloads = new Set<string>();
  /** Accounts whose fleet grant belongs to another identity, already logged (once each). */
  private readonly mismatchLogged = new Set<string>();
  /** Accounts whose import this daemon is proving now: a placeholder of theirs (Store.markImport) is no grant yet. */
  private readonly importing = new Set<string>();
  private readonly now: () => number;
  private readonly monotonic: () => number;
  private clockWatch?: NodeJS.Timeout;
  private clockMark = { wall: 0, mono: 0 };
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private closed = false;
  private readonly inFlightAborts = new Set<AbortController>();

  constructor(private readonly deps: BrokerDeps) {
    this.now = deps.now ?? Date.now;
    this.monotonic = deps.monotonic ?? (() => performance.now());
    this.random = deps.random ?? Math.random;
    this.sleep = deps.sleep ?? sleepUnref;
  }

  /**
   * Fill memory from the store and arm proactive refresh; called once at start-up. In a fleet,
   * then listen for the grants other daemons commit.
   */
  async start(): Promise<void> {
    // Grants from before bindings were recorded take the account's identity, all in one commit.
    const unbound: Array<{ account: string; boundTo: string }> = [];
    const interruptedImports: GrantSummary[] = [];
    for (const g of await this.deps.store.listGrants()) {
      const cfg = this.deps.config.getAccount(g.account);
      if (!cfg) continue;
      this.seen.set(g.account, g.generation);
      const id = identityKey(cfg);
      // So do grants bound before the authorization and device endpoints joined the identity,
      // matched on the fields they were bound with (grant-identity.ts); a fleet's stay as they
      // are, for its daemons not yet upgraded.
      if (g.bound_to === null || (g.bound_to !== id && !this.deps.store.fleet && isBoundTo(g.bound_to, cfg))) {
        g.bound_to = id;
        unbound.push({ account: g.account, boundTo: id });
      }
      // Rule 8: a grant whose provider or client is not the account's any more is never
      // served or refreshed; it is revoked where it came from and dropped. A fleet's grant
      // is left alone: it is the other daemons' too, and this host's config is the odd one.
      if (!isBoundTo(g.bound_to, cfg)) {
        if (this.deps.store.fleet) this.logMismatch(g.account, g, cfg);
        else void this.retire(g.account, 'the account names another provider or client than the one that issued its grant');
        continue;
      }
      g.bound_to = id; // one string for all the grants of an identity, not a copy per row
      this.grants.set(g.account, g);
      if (g.in_flight_since && g.in_flight_for === 'import' && !g.in_flight_by) {
        interruptedImports.push(g);
      } else if (g.in_flight_since && g.status === 'active' && !g.in_flight_by) {
        this.deps.log.warn('a refresh was interrupted when the daemon stopped; its refresh token may be spent', {
          account: g.account,
          since: new Date(g.in_flight_since).toISOString(),
        });
      }
      if (g.has_access_token && g.status === 'active') {
        this.storedTokens.add(g.account);
        this.schedule(g.account, cacheKey(g.account), storedTimes(g));
      }
      if (g.status === 'active') this.watchGrant(g.account, cfg, g);
    }
    if (unbound.length > 0) await this.deps.store.setBindings(unbound);
    for (const g of interruptedImports) await this.importInterrupted(g);
    this.watchClock();
    this.deps.store.fleet?.watch({
      grantChanged: (account) => this.onFleetChange(account),
      resync: () => {
        this.resync().catch((err) => this.deps.log.warn('could not reconcile with the fleet database', { error: (err as Error).message }));
      },
    });
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
    this.deps.log.warn('an import was interrupted when the daemon stopped; the account keeps the grant it had', { account: g.account, since: at, had_grant: g.generation > 0 });
    await this.deps.store.setStatus(g.account, g.status, why);
    this.grants.set(g.account, { ...g, in_flight_since: null, in_flight_for: null, last_error: why });
  }

  /**
   * Timers run on a monotonic clock, which stops while a laptop sleeps: a refresh due "in 10
   * minutes" would fire 10 minutes after waking, and a clock set back would fire early. So
   * every `clock_check_ms` the wall clock's progress is compared with the monotonic clock's;
   * when they part by more than a few seconds (a suspend, a jump either way), every timer is
   * re-armed from the wall-clock expiries. (Serving never depends on timers: a token is
   * checked against the wall clock on every request, so none is served expired meanwhile.)
   */
  private watchClock(): void {
    clearInterval(this.clockWatch);
    this.clockMark = { wall: this.now(), mono: this.monotonic() };
    this.clockWatch = setInterval(() => this.checkClock(), this.deps.config.settings.clock_check_ms);
    this.clockWatch.unref();
  }

  /** One comparison of the two clocks (see watchClock); true when the timers were re-armed. */
  checkClock(): boolean {
    const now = { wall: this.now(), mono: this.monotonic() };
    const drift = now.wall - this.clockMark.wall - (now.mono - this.clockMark.mono);
    this.clockMark = now;
    if (Math.abs(drift) < CLOCK_JUMP_MS || this.closed) return false;
    this.deps.log.info('the wall clock moved apart from the monotonic clock (a suspend or a clock change); timers re-armed', {
      drift_ms: Math.round(drift),
    });
    for (const [key, tok] of this.cache) this.schedule(accountOfKey(key), key, tok);
    for (const account of this.storedTokens) {
      const g = this.grants.get(account);
      if (g) this.schedule(account, cacheKey(account), storedTimes(g));
    }
    for (const [account, g] of this.grants) {
      const cfg = this.deps.config.getAccount(account);
      if (cfg && g.status === 'active') this.watchGrant(account, cfg, g);
    }
    return true;
  }

  /** rules 1–3, docs/architecture.md: memory first, else one refresh shared by every waiting caller. */
  async getToken(q: TokenQuery): Promise<CachedToken> {
    const key = cacheKey(q.account, q.scope, q.audience);
    let hit = this.cache.get(key);
    if (!hit && key === q.account && this.storedTokens.has(key)) hit = await this.readStoredToken(key);
    const now = this.now();
    const minTtlMs = (q.min_ttl ?? this.deps.config.settings.default_min_ttl) * 1000;
    if (hit && satisfies(hit, minTtlMs, now)) {
      if (key !== q.account) this.usedKeys.add(key);
      return hit;
    }
    const cfg = this.deps.config.getAccount(q.account);
    if (!cfg) throw unknownAccount(q.account);
    const grant = this.grants.get(q.account);
    try {
      if (grant?.status === 'reauth_required') {
        const driver = this.deps.getDriver(cfg.driver);
        if (!driver || !(await this.recoverable(q.account, cfg, driver))) throw this.reauthError(q.account, grant.last_error);
      }
      if (key !== q.account) this.usedKeys.add(key);
      return await this.flight({ key, account: q.account, scope: q.scope, audience: q.audience, notBefore: now, minTtlMs });
    } catch (err) {
      // Rule 6: while the provider is down, a cached token that is still valid is
      // better than an error, even if it is shorter-lived than the caller wanted.
      const stillValid = hit && (hit.expires_at === null || hit.expires_at - this.now() > 1000);
      if (hit && stillValid && err instanceof TokendError && (err.code === 'upstream_unavailable' || err.code === 'rate_limited')) {
        return hit;
      }
      throw err;
    }
  }

  /**
   * A stored access token's first use since start-up, before readStoredTokens came to it:
   * read and decrypted now. While a fleet's database is down, nothing is read: the request
   * goes the refresh's way, which says so.
   */
  private async readStoredToken(account: string): Promise<CachedToken | undefined> {
    let stored: StoredAccessToken | undefined;
    try {
      stored = await this.deps.store.getAccessToken(account);
    } catch (err) {
      if (isStoreUnavailable(err)) return undefined;
      throw err;
    }
    return this.takeStoredToken(account, stored);
  }

  /**
   * Read the stored access tokens into memory after start-up, in turns of STORED_TOKENS_PER_TURN
   * with the event loop free between them: start-up reads none (100 000 decrypts took a
   * second before the daemon could answer), and the first request of an account should not
   * pay for reading its token either (it set hot tokens' p99 at 100 000 accounts). Stops at the first error:
   * what is left is read on each account's first use.
   */
  async readStoredTokens(): Promise<void> {
    let after: string | undefined;
    while (!this.closed && this.storedTokens.size > 0) {
      let batch: StoredAccessToken[];
      try {
        batch = await this.deps.store.listAccessTokens(after, STORED_TOKENS_PER_TURN);
      } catch (err) {
        this.deps.log.warn('could not read the stored access tokens ahead; each is read on first use', { error: (err as Error).message });
        return;
      }
      for (const stored of batch) this.takeStoredToken(stored.account, stored);
      if (batch.length < STORED_TOKENS_PER_TURN) return;
      after = batch.at(-1)!.account;
      await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * A stored access token, read: served from memory from now on, unless something changed
   * the grant since start-up (a refresh, a fleet's reload, a logout): that wins over the read.
   */
  private takeStoredToken(account: string, stored: StoredAccessToken | undefined): CachedToken | undefined {
    const current = this.cache.get(account);
    if (current || !this.storedTokens.delete(account)) return current;
    const held = this.grants.get(account);
    if (!held || stored?.generation !== held.generation || stored.status !== 'active') return undefined;
    const tok = tokenFromGrant(stored);
    if (tok) this.cache.set(account, tok);
    return tok;
  }

  /** Force a refresh of the account's base token now (`tokend refresh`). */
  async forceRefresh(account: string): Promise<GrantSummary> {
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
   * Start from tokens the user already holds (`tokend import`): a refresh token (with the
   * client it belongs to, where the driver takes one: Real-Debrid's per-user client), and
   * maybe the access token issued with it (Cal.com hands both to a platform). Proven before
   * it replaces anything: unless a still-valid access token came along, the imported refresh
   * token is refreshed once on the side, and only a success is committed, the old grant to
   * the new in one write. A refusal (400 `import_refused`) or a provider that cannot answer
   * (503) leaves the account exactly as it was.
   */
  async importTokens(account: string, t: ImportedTokens): Promise<GrantSummary> {
    let proven = false;
    const g = await this.queue(account, () =>
      this.locked(account, async () => {
        this.importing.add(account);
        const cfg = this.accountOrThrow(account);
        const driver = this.deps.getDriver(cfg.driver);
        if (!driver) throw E.internal(`account "${account}" uses an unknown driver "${cfg.driver}"`);
        const boundTo = identityKey(cfg);
        await this.refuseForeignGrant(account, boundTo);
        const secrets = importedSecrets(driver, account, t);
        const now = this.now();
        const usable = t.access_token && (t.expires_at === undefined || t.expires_at > now + 60_000);
        // The tokens are proven for this account as it is configured now.
        const attempt: ImportAttempt = { account, cfg, driver, t, imported: secrets, boundTo };
        const tokens = usable ? await this.checkImport(attempt) : await this.proveImport(attempt);
        proven = tokens.access_token !== t.access_token;
        const grant = await this.deps.store.replaceGrant(account, { ...tokens, bound_to: boundTo }, secrets);
        this.installGrant(account, grant);
        this.watchGrant(account, cfg, summarize(grant));
        return grant;
      }).finally(() => this.importing.delete(account)),
    );
    this.health.delete(account);
    const expiresAt = g.expires_at ? new Date(g.expires_at).toISOString() : null;
    // The proving refresh is a refresh at the provider, and logged as one.
    this.deps.log.info(proven ? 'token refreshed' : 'tokens imported', { account, generation: g.generation, expires_at: expiresAt, imported: true });
    this.deps.events.emit('token.refreshed', account, { generation: g.generation, expires_at: expiresAt });
    return this.grants.get(account)!;
  }

  /**
   * An import that came with a still-valid access token: proven by the driver's check of it
   * (Driver.checkAccessToken), which spends nothing; where the provider refuses it, by the
   * proving refresh of the refresh token that came along. A driver without a check takes the
   * access token at its word until its first use.
   */
  private async checkImport(a: ImportAttempt): Promise<Omit<TokenUpdate, 'refresh_token'> & { refresh_token: string | null }> {
    const { account, cfg, driver, t, imported } = a;
    const tokens = { refresh_token: t.refresh_token ?? null, access_token: t.access_token!, token_type: 'Bearer', obtained_at: this.now(), expires_at: t.expires_at ?? null, scope: null };
    if (!driver.checkAccessToken) return tokens;
    this.importBudget(account);
    const secrets = new Map([...(await this.secretsOf(account)), ...Object.entries(imported)]);
    try {
      await this.withTimeout((signal) => driver.checkAccessToken!(this.context(account, cfg, signal, secrets), t.access_token!));
      return tokens;
    } catch (err) {
      const de = asDriverError(err);
      if (de.kind === 'invalid_grant' && t.refresh_token) return this.proveImport(a);
      throw this.importFailure(account, de);
    }
  }

  /** Rule 6's budget for an import's provider call, only: a refresh backing off after an outage does not stop the user's import. */
  private importBudget(account: string): void {
    const h = this.healthOf(account);
    const gate = { ...h, nextAttemptAt: 0 };
    admit(gate, account, this.now(), this.deps.config.settings);
    h.attempts = gate.attempts;
  }

  /** An import not proven: the provider's answer as the wire error (its error named, never a token); the account is unchanged. */
  private importFailure(account: string, de: DriverError): TokendError {
    this.deps.log.warn('an import was not proven; the account is unchanged', { account, kind: de.kind, error: de.message });
    if (de.kind === 'invalid_grant') {
      return E.importRefused(`the provider refused the tokens imported for "${account}" (${de.oauthError ?? 'refused'}: ${de.message}); nothing was changed`, { account });
    }
    return wireErrorOf(de, { account, doing: 'prove the imported tokens (nothing was changed)' });
  }

  /**
   * An import's proving refresh (rule 5 for an import): the imported refresh token, with the
   * client credentials that came with it, goes to the account's driver; the stored grant is
   * neither read for it nor touched, only marked (Store.markImport) so a crash meanwhile is
   * told. Counts against the account's refresh budget (rule 6), never against its health.
   */
  private async proveImport(a: ImportAttempt): Promise<Omit<TokenUpdate, 'refresh_token'> & { refresh_token: string }> {
    const { account, cfg, driver, t, imported, boundTo } = a;
    if (!t.refresh_token) {
      throw E.importRefused(`the access token given for "${account}" has expired and no refresh token came with it; nothing was changed`, { account });
    }
    this.importBudget(account);
    const secrets = new Map([...(await this.secretsOf(account)), ...Object.entries(imported)]);
    const startedAt = this.now();
    const at = new Date(startedAt).toISOString();
    await this.deps.store.markImport(account, startedAt, {
      boundTo,
      lastError: importInterruptedReason(at, false),
    });
    let set: TokenSet;
    try {
      set = await this.withTimeout((signal) =>
        driver.refresh({ ...this.context(account, cfg, signal, secrets), currentAccessToken: t.access_token }, t.refresh_token!, {}),
      );
    } catch (err) {
      await this.bestEffort(account, () => this.deps.store.endImport(account));
      throw this.importFailure(account, asDriverError(err));
    }
    return { ...updateFromSet(set, startedAt, undefined), refresh_token: set.refresh_token ?? t.refresh_token };
  }

  /**
   * Install a grant obtained by a login; the old one is replaced only now (never deleted
   * on failure). `issuedBy` is the identity the login talked to: if the account has moved
   * to another provider or client since the login started, the grant is refused (409
   * `conflict`), so tokens of one provider never serve an account that names another.
   */
  async installLogin(account: string, set: TokenSet, issuedBy: string): Promise<GrantRecord> {
    return this.queue(account, () =>
      this.locked(account, async () => {
        const cfg = this.accountOrThrow(account);
        if (!isBoundTo(issuedBy, cfg)) {
          throw E.conflict(
            `account "${account}" was changed to ${describeIdentity(JSON.parse(identityKey(cfg)))} while this login with ${describeIdentity(parseIdentity(issuedBy) ?? {})} was in progress; its grant was not kept. Log in again`,
            { account },
          );
        }
        await this.refuseForeignGrant(account, issuedBy);
        await this.keepSecrets(account, set);
        const now = this.now();
        const g = await this.deps.store.replaceGrant(account, {
          ...updateFromSet(set, now, undefined),
          refresh_token: set.refresh_token ?? null,
          bound_to: issuedBy,
        });
        this.installGrant(account, g);
        this.watchGrant(account, cfg, summarize(g));
        this.health.delete(account);
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
    if (!this.deps.store.fleet) return;
    await this.refuseForeignGrant(account, identity);
  }

  /** Revoke at the provider where possible, then forget the grant (`logout`); config stays. */
  async logout(account: string): Promise<{ revoked: boolean }> {
    if (!this.deps.config.getAccount(account)) throw unknownAccount(account);
    return this.queue(account, () => this.locked(account, () => this.revokeAndDrop(account, 'logout')));
  }

  /**
   * Rule 8: the account no longer names the provider or client that issued its grant.
   * Revoke the grant there (with that provider's own config, never the new one), drop it
   * and every cached or narrowed token of it. Queued behind any refresh in flight.
   */
  async retire(account: string, why: string): Promise<{ revoked: boolean; hadGrant: boolean }> {
    this.forget(account);
    return this.queue(account, () =>
      this.locked(account, async () => {
        const hadGrant = Boolean(await this.deps.store.getGrant(account));
        const { revoked } = await this.revokeAndDrop(account, why);
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
    if (!this.deps.store.fleet) {
      await this.retire(account, why);
      return;
    }
    this.forget(account);
    this.mismatchLogged.delete(account);
    const g = await this.deps.store.getGrant(account).catch(() => undefined);
    const cfg = this.deps.config.getAccount(account);
    if (g && cfg && g.bound_to && !isBoundTo(g.bound_to, cfg)) this.logMismatch(account, g, cfg);
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
        result = await this.locked(account, async () => {
          const hadGrant = Boolean(this.grants.get(account) ?? (await this.deps.store.getGrant(account)));
          return { ...(await this.revokeAndDrop(account, opts.why)), hadGrant };
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
    this.grants.delete(account);
    this.storedTokens.delete(account);
    this.health.delete(account);
    for (const key of [...this.cache.keys()]) if (accountOfKey(key) === account) this.cache.delete(key);
    for (const key of [...this.timers.keys()]) if (accountOfKey(key) === account) this.timers.delete(key);
    for (const key of [...this.usedKeys]) if (accountOfKey(key) === account) this.usedKeys.delete(key);
    this.keepAlives.delete(account);
    this.reauthSoonSent.delete(account);
  }

  /**
   * What the API shows of an account's grant. A fleet's grant that another identity holds
   * is not this daemon's to show as usable: none, and the reason as the last error.
   */
  async grantState(account: string): Promise<GrantState> {
    let grant = this.grants.get(account);
    if (!grant) {
      try {
        const stored = await this.deps.store.getGrant(account);
        grant = stored && !(stored.generation === 0 && this.importing.has(account)) ? summarize(stored) : undefined;
      } catch (err) {
        if (!isStoreUnavailable(err)) throw err;
      }
    }
    const cfg = this.deps.config.getAccount(account);
    if (grant && cfg && this.deps.store.fleet && grant.bound_to && !isBoundTo(grant.bound_to, cfg)) {
      return { lastError: mismatchMessage(account, grant, cfg), failing: false, retryAt: null };
    }
    const h = this.health.get(account);
    return {
      grant,
      token: this.cache.get(cacheKey(account)) ?? (grant && this.storedTokens.has(account) ? storedTimes(grant) : undefined),
      lastError: h?.lastError ?? grant?.last_error ?? null,
      // Health is cleared by every success (healthy), so an error there is a failure since the last token.
      failing: Boolean(h?.lastError),
      retryAt: h && h.nextAttemptAt > this.now() ? h.nextAttemptAt : null,
    };
  }

  /** Start no more proactive refreshes (first step of shutdown). */
  stopTimers(): void {
    this.closed = true;
    clearInterval(this.clockWatch);
    this.timers.clear();
    this.keepAlives.clear();
    for (const t of this.pendingTimers.values()) clearTimeout(t);
    this.pendingTimers.clear();
  }

  /** Stop timers and abort provider requests still in flight (last step of shutdown). */
  close(): void {
    this.stopTimers();
    for (const [account, p] of this.pendingCommits) {
      this.deps.log.error('stopping with a rotated grant the database never took: its refresh token is lost', {
        account,
        held_ms: this.now() - p.since,
      });
    }
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
   * account's queue, so no other call of this daemon on the account's refresh token is in
   * flight, and under the grant's lock in the store, so no other daemon of a fleet's either.
   */
  private async refreshOnce(req: RefreshRequest): Promise<CachedToken> {
    const { key, account } = req;
    // While we queued, another flight on this account may have produced this key's token
    // (or, in a fleet, a reload brought in another daemon's).
    const cached = this.cache.get(key);
    if (cached && this.serves(cached, req)) return cached;

    const cfg = this.accountOrThrow(account);
    const driver = this.deps.getDriver(cfg.driver);
    if (!driver) throw E.internal(`account "${account}" uses an unknown driver "${cfg.driver}"`);
    // While backing off, fail before taking the grant's lock: an outage (of the provider, or
    // of a fleet's database) costs one attempt per backoff period, not one per request.
    waitOut(this.healthOf(account), account, this.now());
    return this.locked(account, () => this.refreshLocked(req, cfg, driver), { backOff: true });
  }

  /**
   * refreshOnce, holding the grant's lock: read the grant as stored, then either use what
   * another daemon of the fleet committed meanwhile (nobody is called) or refresh it.
   */
  private async refreshLocked(req: RefreshRequest, cfg: AccountConfig, driver: Driver): Promise<CachedToken> {
    const { key, account, scope, audience } = req;
    let grant = await this.deps.store.getGrant(account);
    if (grant && !(await this.adoptOrKeep(grant, cfg))) {
      // Rule 8, last line of defence: never send a refresh token to a provider that did not
      // issue it. A fleet's grant is the other daemons' too: refused here, left alone there.
      if (this.deps.store.fleet) throw E.conflict(mismatchMessage(account, grant, cfg), { account });
      await this.revokeAndDrop(account, 'the account names another provider or client than the one that issued its grant');
      await this.deps.store.deleteSecrets(account);
      grant = undefined;
    }
    if (grant && this.movedOn(grant)) {
      // Another daemon of the fleet committed this grant since this one last read it: its
      // tokens are as good as a refresh of our own, and its refresh token is the live one.
      this.adoptStored(grant, cfg);
      const tok = this.cache.get(key);
      if (tok && this.serves(tok, req)) return tok;
    } else if (grant) {
      this.grants.set(account, summarize(grant));
    }
    const fleet = this.deps.store.fleet;
    const markedBy = grant?.status === 'active' && grant.in_flight_since ? grant.in_flight_by : null;
    if (fleet && markedBy && markedBy !== fleet.instance && (await fleet.holderAlive(markedBy))) {
      // The daemon that marked it lost the lock (its database connection dropped) but lives:
      // the rotation it may hold is committed before anyone sends this refresh token again.
      throw E.upstreamUnavailable(
        `another daemon of the fleet (${markedBy}) is refreshing "${account}" and has not committed its result yet; try again in a few seconds`,
        { account, retryAfter: 2 },
      );
    }
    if (grant?.in_flight_since && grant.in_flight_for === 'import' && markedBy && markedBy !== fleet?.instance) {
      // In a fleet, an import whose daemon is gone (Broker.start tells a daemon's own at restart):
      // the grant was not touched; this refresh's commit drops the mark.
      this.deps.log.warn('an import by another daemon of the fleet was interrupted; the account keeps the grant it had', { account, by: markedBy });
    }
    if (grant?.status === 'active' && grant.in_flight_since && grant.in_flight_for !== 'import') await this.outlastInterrupted(account, grant.in_flight_since);
    const secrets = await this.secretsOf(account);
    const recoverable = this.recoverableWith(account, cfg, driver, secrets);
    const refreshToken = grant?.status === 'active' ? grant.refresh_token : null;
    if (!refreshToken) {
      // No refresh token (none yet, or the provider refused it): only the recover step can help.
      if (!recoverable) {
        if (grant?.status === 'reauth_required') throw this.reauthError(account, grant.last_error);
        const login = this.deps.pendingLogin?.(account);
        if (login) throw loginPendingError(account, login);
        const imports = importHint(cfg.driver, account);
        const next = driver.reauthHint?.(account) ?? `\`tokend login ${account}\`${imports ? ` (or \`${imports}\`)` : ''}`;
        throw E.reauthRequired(`account "${account}" has no grant yet: run ${next}`, { account });
      }
      admit(this.healthOf(account), account, this.now(), this.deps.config.settings);
      return this.recoverOnce(req, cfg, driver, secrets, grant?.status === 'reauth_required' ? grant.last_error : null, grant);
    }
    admit(this.healthOf(account), account, this.now(), this.deps.config.settings);

    const startedAt = this.now();
    // Rule 5: mark the grant in flight, durably, before the request leaves. A mark that
    // cannot be written stops the refresh here: a result that could not be committed must
    // not be asked for.
    await this.deps.store.markInFlight(account, startedAt);
    this.grants.set(account, { ...summarize(grant!), in_flight_since: startedAt, ...(fleet ? { in_flight_by: fleet.instance } : {}) });
    let set: TokenSet;
    try {
      set = await this.withTimeout((signal) => driver.refresh(this.context(account, cfg, signal, secrets, grant), refreshToken, { scope, audience }));
    } catch (err) {
      const de = asDriverError(err);
      if (de.kind !== 'invalid_grant' || !recoverable) throw await this.failed(account, err, grant!);
      // Rule 6: the refresh token is refused (or was spent by an interrupted refresh); the
      // provider allows another way in. It is one more attempt of the minute's budget.
      const why = this.refusalReason(de.message, grant!);
      // One commit clears the mark and records the refusal (Store.setStatus).
      await this.bestEffort(account, () => this.deps.store.setStatus(account, 'reauth_required', why));
      this.grants.set(account, { ...withoutMark(summarize(grant!)), status: 'reauth_required', last_error: why });
      this.deps.log.warn('the provider refused the refresh token; trying the recover step', { account, reason: why });
      admit(this.healthOf(account), account, this.now(), this.deps.config.settings);
      return this.recoverOnce(req, cfg, driver, secrets, why, grant);
    }
    return this.commit(req, cfg, set, startedAt, false, grant);
  }

  /**
   * The recover step (rule 6): a new grant without the refresh token (client credentials,
   * the stored password, a provider's force-refresh). `refused` says why the refresh token
   * was given up, when it was; then success is announced as `token.recovered`.
   */
  private async recoverOnce(
    req: RefreshRequest,
    cfg: AccountConfig,
    driver: Driver,
    secrets: Map<string, string>,
    refused: string | null,
    stored: GrantRecord | undefined,
  ): Promise<CachedToken> {
    const { account, scope, audience } = req;
    const startedAt = this.now();
    let set: TokenSet;
    try {
      set = await this.withTimeout((signal) => driver.recover!(this.context(account, cfg, signal, secrets, stored), { scope, audience }));
    } catch (err) {
      const de = asDriverError(err);
      if (refused && de.kind !== 'transient') {
        // Neither the refresh token nor the recover step works: only the user can help now.
        throw await this.failed(account, new DriverError('invalid_grant', `${refused}; the recover step failed too: ${de.message}`, { oauthError: de.oauthError }));
      }
      throw await this.failed(account, err);
    }
    const tok = await this.commit(req, cfg, set, startedAt, true);
    if (refused) {
      this.deps.log.info('recovered the grant without the user', { account });
      this.deps.events.emit('token.recovered', account, { reason: refused });
    }
    return tok;
  }

  /**
   * Does a token that appeared while the request waited answer it? One obtained after it was
   * asked for always does; another (a fleet daemon's rotation, a login) when it is valid for
   * the request's min_ttl. A forced refresh has none: it wants a new token.
   */
  private serves(tok: CachedToken, req: RefreshRequest): boolean {
    return tok.obtained_at >= req.notBefore || (req.minTtlMs !== undefined && satisfies(tok, req.minTtlMs, this.now()));
  }

  /** Can this account's driver obtain a grant without the user (rule 6's recover step)? */
  private async recoverable(account: string, cfg: AccountConfig, driver: Driver): Promise<boolean> {
    if (!driver.recover || !driver.canRecover) return false;
    return this.recoverableWith(account, cfg, driver, await this.secretsOf(account));
  }

  private recoverableWith(account: string, cfg: AccountConfig, driver: Driver, secrets: Map<string, string>): boolean {
    if (!driver.recover || !driver.canRecover) return false;
    return driver.canRecover(this.context(account, cfg, AbortSignal.abort(), secrets));
  }

  /**
   * An interrupted refresh (its daemon stopped, or its answer timed out) may still be under
   * way at the provider until its own timeout has passed since it left. Sending the same
   * refresh token before then races it: a rotating provider that sees the interrupted one
   * second takes it for a replay and revokes the whole grant, the rotation this daemon has
   * just committed included, and nobody is told why (RFC 9700 §4.14.2). So the token goes
   * again only once that request is over: at most http_timeout_ms, and only after a crash
   * or a timeout (a timeout's own wait is already over).
   */
  private async outlastInterrupted(account: string, since: number): Promise<void> {
    const timeout = this.deps.config.settings.http_timeout_ms;
    const left = Math.min(timeout, since + timeout - this.now());
    if (left <= 0) return;
    this.deps.log.info('waiting until an interrupted refresh is surely over before sending its refresh token again', { account, ms: left });
    await this.sleep(left);
  }

  /** Why a refresh token is refused, for the user: an interrupted refresh may have spent it. */
  private refusalReason(message: string, grant: InFlightMark): string {
    // An import's mark: the grant's own refresh token was not sent then.
    const interrupted = grant.in_flight_for === 'import' ? null : grant.in_flight_since;
    if (!interrupted) return `the provider refused the refresh token (${message})`;
    const at = new Date(interrupted).toISOString();
    const by = grant.in_flight_by;
    if (by && by !== this.deps.store.fleet?.instance) {
      return `the provider refused the refresh token (invalid_grant); a refresh by another daemon of the fleet (${by}) interrupted at ${at} (that daemon stopped, or lost the database, before it could commit the rotated token) may have spent it`;
    }
    return `the provider refused the refresh token (invalid_grant); a refresh interrupted at ${at} (its answer was lost: timeout or daemon stopped mid-refresh) may have spent it`;
  }

  /**
   * Rule 5: the rotated refresh token is committed (durably) before the new access token is
   * served. A narrowed refresh keeps the base access token.
   */
  private async commit(
    req: RefreshRequest,
    cfg: AccountConfig,
    set: TokenSet,
    startedAt: number,
    obtainedAnew: boolean,
    stored?: GrantRecord,
  ): Promise<CachedToken> {
    const { key, account, scope } = req;
    const base = key === cacheKey(account);
    const update = updateFromSet(set, startedAt, scope);
    const committed = await this.persist(account, cfg, set, update, { base, obtainedAnew, startedAt, stored });
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
    if (base) this.storedTokens.delete(account);
    this.usedKeys.delete(key);
    this.schedule(account, key, tok);
    if (committed) this.watchGrant(account, cfg, summarize(committed));
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

  /**
   * The store's part of a commit. When a fleet's database is down at this moment, a rotation
   * the provider has answered is kept in memory and committed as soon as the database is back,
   * before any other use of the grant (its old refresh token is spent; the new one lives only
   * here). A grant obtained anew without the user is just obtained again next time.
   */
  private async persist(
    account: string,
    cfg: AccountConfig,
    set: TokenSet,
    update: TokenUpdate,
    opts: { base: boolean; obtainedAnew: boolean; startedAt: number; stored?: GrantRecord },
  ): Promise<GrantRecord | undefined> {
    const current = this.grants.get(account);
    let forStore: TokenUpdate | undefined;
    try {
      await this.keepSecrets(account, set);
      if (opts.obtainedAnew) {
        if (!opts.base) return undefined;
        // A grant obtained anew replaces the old one whole (its refresh token, if any, is dead).
        const g = await this.deps.store.replaceGrant(account, { ...update, refresh_token: set.refresh_token ?? null, bound_to: identityKey(cfg) });
        this.remember(account, g);
        return g;
      }
      // A narrowed refresh keeps the base access token as stored (read with the refresh token).
      const kept = opts.stored?.access_token ? opts.stored : undefined;
      forStore =
        opts.base || !kept
          ? { ...update }
          : {
              access_token: kept.access_token!,
              token_type: kept.token_type ?? 'Bearer',
              expires_at: kept.expires_at,
              obtained_at: kept.obtained_at ?? opts.startedAt,
              scope: kept.scope,
              refresh_token: set.refresh_token,
            };
      if (!opts.base && !kept) forStore.expires_at = 0; // not servable as the base token
      const g = await this.deps.store.commitRefresh(account, current!.generation, forStore);
      this.remember(account, g);
      return g;
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      if (!forStore || !current) {
        this.deps.log.warn('could not store a grant obtained without the user (the database is unavailable); it serves from memory and is obtained again next time', {
          account,
          error: err.message,
        });
        return undefined;
      }
      this.keepPending(account, current, forStore, err);
      return undefined;
    }
  }

  /** The provider rotated, the database could not take it: hold the rotation in memory and commit it when the database is back. */
  private keepPending(account: string, current: GrantSummary, update: TokenUpdate, err: Error): void {
    this.pendingCommits.set(account, { expectedGeneration: current.generation, update, since: this.now(), retries: 0 });
    this.grants.set(account, {
      ...withoutMark(current),
      token_type: update.token_type,
      expires_at: update.expires_at,
      obtained_at: update.obtained_at,
      scope: update.scope,
      has_access_token: true,
      has_refresh_token: update.refresh_token !== undefined || current.has_refresh_token,
      refresh_expires_at: update.refresh_expires_at ?? current.refresh_expires_at,
    });
    this.deps.log.error('the rotated grant could not be committed (the database is unavailable): it is kept in memory and committed as soon as the database is back', {
      account,
      error: err.message,
    });
    this.armPendingFlush(account);
  }

  /** Retry a pending commit after a while (the lock's first step commits it: see `locked`). */
  private armPendingFlush(account: string): void {
    const p = this.pendingCommits.get(account);
    if (!p || this.closed || this.pendingTimers.has(account)) return;
    const timer = setTimeout(
      () => {
        this.pendingTimers.delete(account);
        this.queue(account, () => this.locked(account, async () => undefined)).catch(() => this.armPendingFlush(account));
      },
      Math.min(5_000, 500 * 2 ** Math.min(p.retries, 4)),
    );
    timer.unref();
    this.pendingTimers.set(account, timer);
  }

  /** Commit the rotation held in memory; runs under the grant's lock, before anything else touches the grant. */
  private async flushPending(account: string): Promise<void> {
    const p = this.pendingCommits.get(account)!;
    p.retries++;
    try {
      const g = await this.deps.store.commitRefresh(account, p.expectedGeneration, p.update);
      this.pendingCommits.delete(account);
      this.remember(account, g);
      this.deps.log.info('the rotated grant held in memory is committed', { account, generation: g.generation, held_ms: this.now() - p.since });
    } catch (err) {
      if (!(err instanceof GenerationMismatchError)) throw err;
      // Someone replaced the grant meanwhile (a login, or another daemon that judged this one
      // dead): the stored grant wins, and the refresh token held here is lost.
      this.pendingCommits.delete(account);
      this.deps.log.error('the rotated grant held in memory could not be committed: the stored grant moved on meanwhile, so its refresh token is lost', {
        account,
        expected_generation: p.expectedGeneration,
        stored_generation: err.stored,
      });
    }
  }

  /** After a failed provider call: status, in-flight mark, backoff and events; returns the wire error. */
  private async failed(account: string, err: unknown, grant?: GrantRecord | GrantSummary): Promise<TokendError> {
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
      // now says why), in the same commit. Stored secrets are kept (rule 6): a login replaces the grant.
      await this.bestEffort(account, () => this.deps.store.setStatus(account, 'reauth_required', why));
      const g = (await this.bestEffort(account, () => this.deps.store.getGrant(account))) ?? (grant && { ...withoutMark(summarize(grant)), status: 'reauth_required' as const, last_error: why });
      if (g) this.grants.set(account, summarize(g));
      for (const key of [...this.cache.keys()]) if (accountOfKey(key) === account) this.cache.delete(key);
      this.storedTokens.delete(account);
      this.deps.log.warn('account needs a new login', { account, reason: why });
      this.deps.events.emit('account.reauth_required', account, { reason: why });
      this.deps.onReauthRequired?.(account);
      return this.reauthError(account, why);
    }

    // The response, if any, was read: the refresh token was not spent (unless the
    // outcome is unknown, in which case the in-flight mark stays as a witness).
    // An older mark (an earlier attempt whose outcome is unknown) stays.
    if (grant && !de.outcomeUnknown && !grant.in_flight_since) {
      await this.bestEffort(account, () => this.deps.store.clearInFlight(account));
      this.grants.set(account, withoutMark(summarize(grant)));
    } else if (grant) {
      // The witness stays, but no daemon will commit that attempt any more.
      await this.bestEffort(account, () => this.deps.store.abandonInFlight(account));
    }
    const delay = backOff(h, this.now(), this.random(), this.deps.config.settings, de.retryAfterMs);
    this.deps.log.warn('refresh failed', { account, kind: de.kind, status: de.status, error: de.message, retry_in_ms: Math.round(delay) });
    this.rescheduleBase(account);
    const wire = wireErrorOf(de, { account, doing: 'refresh the token', retryAfter: Math.ceil(delay / 1000) });
    h.lastCode = wire.code; // what the backoff answers with (refresh-health.ts, waitOut)
    return wire;
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
        if (this.pendingCommits.has(account)) await this.flushPending(account);
        return fn();
      });
    } catch (err) {
      if (isStoreUnavailable(err)) throw this.storeDown(account, err, opts.backOff ?? false);
      throw err;
    }
  }

  /** 503 for a store that cannot answer now; the cached token keeps being served while valid (getToken). */
  private storeDown(account: string, err: Error, withBackOff: boolean): TokendError {
    let retryAfter = 5;
    if (withBackOff) {
      const h = this.healthOf(account);
      h.lastError = err.message;
      h.lastCode = 'upstream_unavailable';
      retryAfter = Math.max(1, Math.ceil(backOff(h, this.now(), this.random(), this.deps.config.settings) / 1000));
      this.rescheduleBase(account);
    }
    this.deps.log.warn('the database is unavailable; the account cannot be refreshed now', { account, error: err.message, retry_after_s: retryAfter });
    return E.upstreamUnavailable(`account "${account}" cannot be refreshed now: ${err.message}; try again in ${retryAfter} s`, { account, retryAfter });
  }

  /** A store write whose failure must not hide the provider's answer: a database that is down is logged, anything else thrown. */
  private async bestEffort<T>(account: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      this.deps.log.warn('could not record the outcome of a refresh: the database is unavailable', { account, error: err.message });
      return undefined;
    }
  }

  private async secretsOf(account: string): Promise<Map<string, string>> {
    try {
      return await this.deps.store.getSecrets(account);
    } catch (err) {
      if (isStoreUnavailable(err)) throw this.storeDown(account, err, false);
      throw err;
    }
  }

  // ---- a fleet: grants other daemons commit ----

  /** Did another daemon of the fleet commit this grant since this daemon last read or wrote it? */
  private movedOn(g: GrantRecord | GrantSummary): boolean {
    return Boolean(this.deps.store.fleet) && this.seen.get(g.account) !== g.generation;
  }

  /**
   * Take a grant another daemon of the fleet committed: its access token becomes this
   * daemon's cached token, timers follow it, and a refused grant stops being served. Tokens
   * narrowed from the grant stay cached: they are still valid, and dropping them would make
   * each daemon refresh its own after every rotation by another.
   */
  private adoptStored(g: GrantRecord, cfg: AccountConfig): void {
    const account = g.account;
    const wasActive = this.grants.get(account)?.status !== 'reauth_required';
    this.remember(account, g);
    if (g.status === 'reauth_required') {
      for (const key of [...this.cache.keys()]) if (accountOfKey(key) === account) this.cache.delete(key);
      if (wasActive) {
        this.deps.log.warn('another daemon of the fleet found that the account needs a new login', { account, reason: g.last_error });
        this.deps.events.emit('account.reauth_required', account, { reason: g.last_error });
      }
      return;
    }
    healthy(this.healthOf(account));
    const tok = tokenFromGrant(g);
    if (tok) {
      this.cache.set(cacheKey(account), tok);
      this.storedTokens.delete(account);
      this.schedule(account, cacheKey(account), tok);
    }
    this.watchGrant(account, cfg, summarize(g));
    const expiresAt = g.expires_at ? new Date(g.expires_at).toISOString() : null;
    this.deps.log.debug('grant reloaded: another daemon of the fleet committed it', { account, generation: g.generation, expires_at: expiresAt });
    this.deps.events.emit('token.refreshed', account, { generation: g.generation, expires_at: expiresAt, by: 'fleet' });
  }

  /** A notification from the fleet: reload the grant into memory (coalesced, in the account's queue). */
  private onFleetChange(account: string): void {
    if (this.closed || this.reloads.has(account) || !this.deps.config.getAccount(account)) return;
    this.reloads.add(account);
    this.queue(account, () => {
      this.reloads.delete(account);
      return this.reloadFromStore(account);
    }).catch((err) => this.deps.log.warn('could not reload a grant another daemon of the fleet changed', { account, error: (err as Error).message }));
  }

  private async reloadFromStore(account: string): Promise<void> {
    const cfg = this.deps.config.getAccount(account);
    // A rotation held in memory is committed first, under the lock: nothing to take before that.
    if (!cfg || this.pendingCommits.has(account)) return;
    const g = await this.deps.store.getGrant(account);
    if (!g) {
      if (!this.seen.has(account) && !this.grants.has(account)) return;
      this.seen.delete(account);
      this.forget(account);
      this.deps.log.info('another daemon of the fleet dropped the grant (logout, or the account moved)', { account });
      return;
    }
    const mem = this.grants.get(account);
    if (this.seen.get(account) === g.generation && (!mem || mem.status === g.status)) return;
    if (g.bound_to && !isBoundTo(g.bound_to, cfg)) {
      this.forget(account);
      this.seen.set(account, g.generation);
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
    for (const account of this.pendingCommits.keys()) {
      clearTimeout(this.pendingTimers.get(account));
      this.pendingTimers.delete(account);
      this.queue(account, () => this.locked(account, async () => undefined)).catch(() => this.armPendingFlush(account));
    }
    const stored = await this.deps.store.fleet!.generations();
    for (const account of new Set([...stored.keys(), ...this.seen.keys()])) {
      const s = stored.get(account);
      const mem = this.grants.get(account);
      if (s && this.seen.get(account) === s.generation && (!mem || mem.status === s.status)) continue;
      this.onFleetChange(account);
    }
  }

  private logMismatch(account: string, g: GrantRecord | GrantSummary, cfg: AccountConfig): void {
    if (this.mismatchLogged.has(account)) return;
    this.mismatchLogged.add(account);
    this.deps.log.warn('this daemon does not use the fleet grant: the account names another provider or client here', {
      account,
      reason: mismatchMessage(account, g, cfg),
    });
  }

  /** In a fleet, refuse to replace a grant that another identity holds (rule 8: a login or import here would overwrite it). */
  private async refuseForeignGrant(account: string, identity: string): Promise<void> {
    if (!this.deps.store.fleet) return;
    const g = await this.deps.store.getGrant(account);
    const cfg = this.deps.config.getAccount(account);
    if (g?.bound_to && g.bound_to !== identity && cfg && !isBoundTo(g.bound_to, cfg)) throw E.conflict(mismatchMessage(account, g, cfg), { account });
  }

  // ---- grants and identities ----

  /**
   * Is `g` the grant of the account as configured now? A grant stored before identities
   * were recorded is adopted by the current identity (there is nothing else to go by).
   */
  private async adoptOrKeep(g: GrantRecord | GrantSummary, cfg: AccountConfig): Promise<boolean> {
    const id = identityKey(cfg);
    if (g.bound_to === null) {
      await this.deps.store.setBindings([{ account: g.account, boundTo: id }]);
      g.bound_to = id;
      return true;
    }
    return isBoundTo(g.bound_to, cfg);
  }

  /**
   * Revoke the stored grant at the provider that issued it, then delete it and forget the
   * account's tokens. Runs inside the account's queue and the grant's lock. Revocation is
   * best effort (RFC 7009 §2.2.1): the grant is dropped either way, and the log says whether
   * it was revoked.
   */
  private async revokeAndDrop(account: string, why: string): Promise<{ revoked: boolean }> {
    const stored = await this.deps.store.getGrant(account);
    const grant = stored ?? this.grants.get(account);
    const current = this.deps.config.getAccount(account);
    // The grant's own provider: from its recorded identity, else (an old grant) the account's.
    const issuer = grant?.bound_to ? parseIdentity(grant.bound_to) : undefined;
    const ours = current && (!grant?.bound_to || isBoundTo(grant.bound_to, current));
    const cfg = ours ? current : issuer ? configForIdentity(issuer) : undefined;
    let revoked = false;
    // Memory holds no token: only a grant still in the store can be revoked.
    const token = stored?.refresh_token ?? stored?.access_token ?? this.cache.get(cacheKey(account))?.access_token;
    const driver = cfg ? this.deps.getDriver(cfg.driver) : undefined;
    if (cfg && driver?.revoke && token) {
      try {
        const secrets = await this.deps.store.getSecrets(account);
        await this.withTimeout((signal) =>
          driver.revoke!(this.context(account, cfg, signal, secrets, stored), token, stored?.refresh_token ? 'refresh_token' : 'access_token'),
        );
        revoked = true;
      } catch (err) {
        this.deps.log.warn('revocation at the provider failed; the grant is forgotten locally', {
          account,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    await this.deps.store.deleteGrant(account);
    this.seen.delete(account);
    this.pendingCommits.delete(account);
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
  private async keepSecrets(account: string, set: TokenSet): Promise<void> {
    for (const [name, value] of Object.entries(set.secrets ?? {})) await this.deps.store.putSecret(account, name, value);
  }


  private installGrant(account: string, g: GrantRecord): void {
    this.forget(account);
    this.remember(account, g);
    const tok = tokenFromGrant(g);
    if (tok) {
      this.cache.set(cacheKey(account), tok);
      this.schedule(account, cacheKey(account), tok);
    }
  }

  /** The grant as this daemon last read or wrote it. */
  private remember(account: string, g: GrantRecord | GrantSummary): void {
    this.grants.set(account, summarize(g));
    this.seen.set(account, g.generation);
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

  /** What a driver step gets; the account's secrets were read once for the whole attempt. */
  private context(account: string, cfg: AccountConfig, signal: AbortSignal, secrets: Map<string, string>, stored?: GrantRecord): DriverContext {
    return {
      name: account,
      config: cfg,
      clientSecret: secrets.get('client_secret'),
      secret: (name) => secrets.get(name),
      // Memory holds no token but its cache: the grant as the store holds it, where the caller read it.
      currentAccessToken: this.cache.get(cacheKey(account))?.access_token ?? stored?.access_token ?? undefined,
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
  private schedule(account: string, key: string, tok: TokenTimes): void {
    this.timers.delete(key);
    if (this.closed || !this.deps.config.settings.proactive_refresh || tok.expires_at === null) return;
    const lifetime = Math.max(0, tok.expires_at - tok.obtained_at);
    const lead = Math.min(PROACTIVE_LEAD_MAX_MS, lifetime / 4);
    let at = tok.expires_at - lead;
    const h = this.health.get(account);
    if (h && h.nextAttemptAt > at) at = h.nextAttemptAt;
    this.timers.set(key, at);
  }

  /** Re-arm the base token's proactive refresh (after a failure moved the next attempt). */
  private rescheduleBase(account: string): void {
    const key = cacheKey(account);
    const tok = this.cache.get(key);
    const g = this.grants.get(account);
    if (tok) this.schedule(account, key, tok);
    else if (g && this.storedTokens.has(account)) this.schedule(account, key, storedTimes(g));
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
  private watchGrant(account: string, cfg: AccountConfig, g: GrantSummary): void {
    this.keepAlives.delete(account);
    if (this.closed) return;
    const now = this.now();
    if (g.refresh_expires_at !== null && g.has_refresh_token) {
      const warnFrom = g.refresh_expires_at - REAUTH_SOON_MS;
      if (now >= warnFrom && this.reauthSoonSent.get(account) !== g.refresh_expires_at) {
        this.reauthSoonSent.set(account, g.refresh_expires_at);
        const at = new Date(g.refresh_expires_at).toISOString();
        this.deps.log.warn('the refresh token expires soon: log in again before then', { account, refresh_expires_at: at });
        this.deps.events.emit('account.reauth_soon', account, { refresh_expires_at: at });
      }
    }
    const due = keepAliveDue(cfg, g);
    if (due !== undefined) this.keepAlives.set(account, due);
  }

  /** A keep-alive refresh came due (watchGrant): the refresh token must be used before the provider forgets it. */
  private runKeepAlive(account: string): void {
    const cfg = this.deps.config.getAccount(account);
    const g = this.grants.get(account);
    if (this.closed || !cfg || !g || g.status !== 'active') return;
    const due = keepAliveDue(cfg, g);
    if (due === undefined) return;
    if (this.now() < due) return this.watchGrant(account, cfg, g); // a clock that moved back, or a grant refreshed meanwhile
    this.deps.log.info('keep-alive refresh: the provider forgets unused refresh tokens', { account, idle_days: cfg.refresh_idle_days });
    // The refresh token must be used: a valid access token does not answer this refresh.
    void this.flight({ key: cacheKey(account), account, notBefore: this.now() }).catch(() => undefined);
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
      // In a fleet, a token another daemon obtained that is not due itself makes this refresh moot.
      await this.flight({ key, account, scope: scope || undefined, audience: audience || undefined, notBefore: this.now(), minTtlMs: PROACTIVE_LEAD_MAX_MS });
    } catch (err) {
      // failed() already logged, backed off and rescheduled; nothing to add here.
      if (!(err instanceof TokendError)) this.deps.log.error('proactive refresh crashed', { account, error: err as Error });
    }
  }
}

const DAY_MS = 24 * 3_600_000;
/** Stored access tokens read (and decrypted) in one turn after start-up: a few milliseconds of the event loop. */
const STORED_TOKENS_PER_TURN = 500;
/** How far the wall clock may part from the monotonic one between two checks before timers are re-armed. */
const CLOCK_JUMP_MS = 5_000;
/** Rule 4's lead: a grant is refreshed when less than min(5 min, ¼ of its lifetime) remains. */
const PROACTIVE_LEAD_MAX_MS = 5 * 60_000;
/** How long before a refresh token's own expiry the user is told to log in again. */
export const REAUTH_SOON_MS = 7 * DAY_MS;

/** When a grant's keep-alive refresh is due (`refresh_idle_days`, a margin of a tenth and at least a day ahead); undefined when it needs none. */
function keepAliveDue(cfg: AccountConfig, g: GrantSummary): number | undefined {
  if (!cfg.refresh_idle_days || !g.has_refresh_token) return undefined;
  const idleMs = cfg.refresh_idle_days * DAY_MS;
  const lastUse = g.obtained_at ?? g.updated_at;
  return lastUse + idleMs - Math.max(DAY_MS, idleMs / 10);
}

/** When a token expires and when it was obtained: what its proactive refresh is scheduled from. */
type TokenTimes = Pick<CachedToken, 'expires_at' | 'obtained_at'>;

/** The times of a stored access token memory has not read (a grant's own). */
function storedTimes(g: GrantSummary): TokenTimes {
  return { expires_at: g.expires_at, obtained_at: g.obtained_at ?? g.updated_at };
}

/** A grant's in-flight mark (rule 5). */
type InFlightMark = Pick<GrantRecord, 'in_flight_since' | 'in_flight_by' | 'in_flight_for'>;

/** The grant without its in-flight mark (and, in a fleet, without the daemon that set it). */
function withoutMark<G extends InFlightMark>(g: G): G {
  return { ...g, in_flight_since: null, in_flight_for: null, ...('in_flight_by' in g ? { in_flight_by: null } : {}) };
}

/** Why a daemon of a fleet does not touch the fleet's grant of an account (rule 8), and the fixes. */
function mismatchMessage(account: string, g: Pick<GrantRecord, 'bound_to'>, cfg: AccountConfig): string {
  const issuer = describeIdentity(parseIdentity(g.bound_to ?? '') ?? {});
  return (
    `the fleet's grant of account "${account}" was issued by ${issuer}, but this daemon's config names ${describeIdentity(identityOf(cfg))}: ` +
    `this daemon does not use, refresh or replace it. Make this host's config.json agree with the fleet's (docs/fleet.md), ` +
    `or replace the fleet's grant with \`tokend set ${account} … --replace-grant\``
  );
}

/** 409 login_pending: say where to finish the login; `error.login` carries the whole login object. */
function loginPendingError(account: string, login: LoginView): TokendError {
  const where =
    login.flow === 'device' ? `enter the code ${login.user_code} at ${login.verification_uri}` : `finish signing in at ${login.authorization_url}`;
  return E.loginPending(`account "${account}" is waiting for a login: ${where}`, { account, login });
}

/** A wait that never keeps the daemon alive by itself (its server does). */
function sleepUnref(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
