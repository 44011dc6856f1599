/**
 * The Broker's memory, shared by every part of it (docs/architecture.md, "The Broker's
 * parts"): what it holds of each grant and token, its dependencies and clocks, and the
 * small steps every part takes the same way (a provider call's timeout, a store write that
 * must not hide the provider's answer, a driver step's context). It imports no other part.
 */
import type { AccountConfig, LoginView } from '../../protocol/api.js';
import { accountOfKey, cacheKey, tokenFromGrant, type CachedToken } from '../cached-token.js';
import type { ConfigStore } from '../config.js';
import { driverContext } from '../driver-context.js';
import type { Driver, DriverContext, TokenSet } from '../drivers/driver.js';
import { E, unknownAccount } from '../errors.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../log.js';
import { freshHealth, type AccountHealth } from '../refresh-health.js';
import { isStoreUnavailable } from '../store/errors.js';
import { summarize, type GrantRecord, type GrantSummary, type Store, type StoredAccessToken } from '../store/types.js';
import { storeDownError } from './refusals.js';

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
  /** Go straight to the driver's recover step (`POST /v1/accounts/:name/recover`), not a refresh. */
  recover?: boolean;
}

/**
 * What the parts ask of the Broker front: the account's queue (one upstream call per account
 * at a time), the grant's lock, and forgetting an account everywhere.
 */
export interface AccountLanes {
  queue<T>(account: string, fn: () => Promise<T>): Promise<T>;
  locked<T>(account: string, fn: () => Promise<T>, opts?: { backOff?: boolean }): Promise<T>;
  forget(account: string): void;
}

/** When a token expires and when it was obtained: what its proactive refresh is scheduled from. */
export type TokenTimes = Pick<CachedToken, 'expires_at' | 'obtained_at'>;

/** A grant's in-flight mark (rule 5). */
export type InFlightMark = Pick<GrantRecord, 'in_flight_since' | 'in_flight_by' | 'in_flight_for'>;

/** Stored access tokens read (and decrypted) in one turn after start-up: a few milliseconds of the event loop. */
const STORED_TOKENS_PER_TURN = 500;

export class GrantMemory {
  /** Tokens served from memory (rule 2), by cache key. */
  readonly cache = new Map<string, CachedToken>();
  /** Each grant as memory holds it: no token in it (GrantSummary). */
  readonly grants = new Map<string, GrantSummary>();
  /**
   * Accounts whose access token is in the store and not read yet: read and decrypted on its
   * first use (readStoredToken), not all at start-up.
   */
  readonly storedTokens = new Set<string>();
  readonly health = new Map<string, AccountHealth>();
  /** Keys other than the base key that were asked for since their last refresh. */
  readonly usedKeys = new Set<string>();
  /**
   * The generation of each grant this daemon last read or wrote. In a fleet, a stored grant
   * with another generation was committed by another daemon: its tokens are used as they are.
   */
  readonly seen = new Map<string, number>();
  /** Accounts whose import this daemon is proving now: a placeholder of theirs (Store.markImport) is no grant yet. */
  readonly importing = new Set<string>();
  readonly now: () => number;
  readonly monotonic: () => number;
  readonly random: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  /** Set at shutdown: nothing new is started. */
  closed = false;
  private readonly inFlightAborts = new Set<AbortController>();

  constructor(readonly deps: BrokerDeps) {
    this.now = deps.now ?? Date.now;
    this.monotonic = deps.monotonic ?? (() => performance.now());
    this.random = deps.random ?? Math.random;
    this.sleep = deps.sleep ?? sleepUnref;
  }

  /** The grant as this daemon last read or wrote it. */
  remember(account: string, g: GrantRecord | GrantSummary): void {
    this.grants.set(account, summarize(g));
    this.seen.set(account, g.generation);
  }

  healthOf(account: string): AccountHealth {
    let h = this.health.get(account);
    if (!h) this.health.set(account, (h = freshHealth()));
    return h;
  }

  /** Stop serving every token of the account (its base token and the narrowed ones). */
  dropTokens(account: string): void {
    for (const key of [...this.cache.keys()]) if (accountOfKey(key) === account) this.cache.delete(key);
  }

  /** Drop what memory holds of an account (the front's forget also stops its timers). */
  forget(account: string): void {
    this.grants.delete(account);
    this.storedTokens.delete(account);
    this.health.delete(account);
    this.dropTokens(account);
    for (const key of [...this.usedKeys]) if (accountOfKey(key) === account) this.usedKeys.delete(key);
  }

  accountOrThrow(account: string): AccountConfig {
    const cfg = this.deps.config.getAccount(account);
    if (!cfg) throw unknownAccount(account);
    return cfg;
  }

  driverOrThrow(account: string, cfg: AccountConfig): Driver {
    const driver = this.deps.getDriver(cfg.driver);
    if (!driver) throw E.internal(`account "${account}" uses an unknown driver "${cfg.driver}"`);
    return driver;
  }

  /** What a driver step gets; the account's secrets were read once for the whole attempt. */
  context(o: {
    account: string;
    config: AccountConfig;
    signal: AbortSignal;
    secrets: Map<string, string>;
    stored?: GrantRecord;
  }): DriverContext {
    const { account, stored } = o;
    return driverContext({
      ...o,
      // Memory holds no token but its cache: the grant as the store holds it, where the caller read it.
      currentAccessToken: this.cache.get(cacheKey(account))?.access_token ?? stored?.access_token ?? undefined,
    });
  }

  /** One provider call, bounded by http_timeout_ms and aborted at shutdown (abortAll). */
  async withTimeout<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
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

  /** Abort every provider request still in flight (the last step of shutdown). */
  abortAll(reason: Error): void {
    for (const ac of this.inFlightAborts) ac.abort(reason);
  }

  /** A store write whose failure must not hide the provider's answer: a database that is down is logged, anything else thrown. */
  async bestEffort<T>(account: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      this.deps.log.warn('could not record the outcome of a refresh: the database is unavailable', { account, error: err.message });
      return undefined;
    }
  }

  /** Secrets that came with a grant (Real-Debrid's per-user client id and secret): stored encrypted with the account. */
  async keepSecrets(account: string, set: TokenSet): Promise<void> {
    for (const [name, value] of Object.entries(set.secrets ?? {})) await this.deps.store.putSecret(account, name, value);
  }

  async secretsOf(account: string): Promise<Map<string, string>> {
    try {
      return await this.deps.store.getSecrets(account);
    } catch (err) {
      if (isStoreUnavailable(err)) throw storeDownError(this.deps.log, account, err, 5);
      throw err;
    }
  }

  // ---- stored access tokens, read after start-up (rule 2) ----

  /**
   * A stored access token's first use since start-up, before readStoredTokens came to it:
   * read and decrypted now. While a fleet's database is down, nothing is read: the request
   * goes the refresh's way, which says so.
   */
  async readStoredToken(account: string): Promise<CachedToken | undefined> {
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
}

/** The times of a stored access token memory has not read (a grant's own). */
export function storedTimes(g: GrantSummary): TokenTimes {
  return { expires_at: g.expires_at, obtained_at: g.obtained_at ?? g.updated_at };
}

/** The grant without its in-flight mark (and, in a fleet, without the daemon that set it). */
export function withoutMark<G extends InFlightMark>(g: G): G {
  return { ...g, in_flight_since: null, in_flight_for: null, ...('in_flight_by' in g ? { in_flight_by: null } : {}) };
}

/** A wait that never keeps the daemon alive by itself (its server does). */
function sleepUnref(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
