/**
 * One refresh attempt: the one place that calls the provider for a token (rules 3–6, 8).
 * `run()` reads the grant under its lock, marks it in flight, calls the driver, commits the
 * answer, and falls back to the recover step when the refresh token is refused. It runs
 * inside the account's queue, so no other call of this daemon on the account's refresh token
 * is in flight, and under the grant's lock in the store, so no other daemon of a fleet's either.
 */
import type { AccountConfig } from '../../protocol/api.js';
import { cacheKey, satisfies, updateFromSet, type CachedToken } from '../cached-token.js';
import { asDriverError, wireErrorOf } from '../driver-errors.js';
import { DriverError, type Driver, type DriverContext, type TokenSet } from '../drivers/driver.js';
import { E, ApiError } from '../errors.js';
import { dpopKeyMismatch } from '../dpop/binding.js';
import { DPOP_KEY_SECRET, storedJkt } from '../dpop/key.js';
import { grantBinding, withDpopKey } from '../dpop/provision.js';
import { admit, backOff, healthy, waitOut } from '../refresh-health.js';
import { isStoreUnavailable } from '../store/errors.js';
import { summarize, type GrantRecord, type GrantSummary, type TokenUpdate } from '../store/types.js';
import type { FleetSync } from './fleet-sync.js';
import { withoutMark, type AccountLanes, type GrantMemory, type InFlightMark, type RefreshRequest } from './grant-memory.js';
import { mismatchMessage, noGrantError, noRecoverStep, reauthError } from './refusals.js';
import type { Revocation } from './revocation.js';
import type { Scheduler } from './schedule.js';

/** The parts of the broker an attempt works with (the Broker front makes them once). */
export interface RefreshParts {
  m: GrantMemory;
  scheduler: Scheduler;
  fleet: FleetSync;
  revocation: Revocation;
  lanes: AccountLanes;
}

/** How a commit came about (rule 5): a refresh of the stored grant, or a grant obtained anew by the recover step. */
interface CommitOptions {
  /** When the provider call started: the new token's obtained_at. */
  startedAt: number;
  /** A grant obtained anew (the recover step) replaces the stored one whole. */
  obtainedAnew: boolean;
}

export class RefreshAttempt {
  private readonly account: string;
  private config!: AccountConfig;
  private driver!: Driver;
  /** The account's secrets, read once for the whole attempt. */
  private secrets!: Map<string, string>;
  /** The grant as stored when the lock was taken (before this attempt's mark); none, or dropped by rule 8. */
  private grant: GrantRecord | undefined;

  constructor(
    private readonly parts: RefreshParts,
    private readonly req: RefreshRequest,
  ) {
    this.account = req.account;
  }

  /** Read, mark, call, commit; or recover (rule 6). */
  async run(): Promise<CachedToken> {
    const { m, lanes } = this.parts;
    const { key, account, scope, audience } = this.req;
    // While we queued, another flight on this account may have produced this key's token
    // (or, in a fleet, a reload brought in another daemon's).
    const cached = m.cache.get(key);
    if (cached && this.serves(cached)) return cached;

    const cfg = (this.config = m.accountOrThrow(account));
    const driver = (this.driver = m.driverOrThrow(account, cfg));
    // While backing off, fail before taking the grant's lock: an outage (of the provider, or
    // of a fleet's database) costs one attempt per backoff period, not one per request.
    waitOut(m.healthOf(account), account, m.now());
    return lanes.locked(
      account,
      async () => {
        const adopted = await this.readGrant();
        if (adopted) return adopted;
        const grant = this.grant;
        const secrets = (this.secrets = await withDpopKey(m.deps.store, account, cfg, await m.secretsOf(account)));
        const recoverable = recoverableWith(m, account, cfg, driver, secrets);
        // RFC 9449 §6: a grant bound to another key than the account's is never sent with this
        // one; the recover step (a grant obtained anew, with this key) may replace it.
        const wrongKey = cfg.dpop ? dpopKeyMismatch(account, grant?.bound_to, storedJkt(secrets.get(DPOP_KEY_SECRET))) : undefined;
        const refreshToken = grant?.status === 'active' && !wrongKey ? grant.refresh_token : null;
        if (this.req.recover) {
          // Asked for by name (Broker.recover): the recover step, within the same budget as a refresh.
          if (!recoverable) throw noRecoverStep(account, cfg.driver);
          admit(m.healthOf(account), account, m.now(), m.deps.config.settings);
          return this.recover(null);
        }
        if (!refreshToken) {
          // No refresh token (none yet, or the provider refused it): only the recover step can help.
          if (!recoverable) {
            if (wrongKey) throw wrongKey;
            if (grant?.status === 'reauth_required') throw reauthError(m.deps, account, grant.last_error);
            throw noGrantError(m.deps, account, cfg, driver);
          }
          admit(m.healthOf(account), account, m.now(), m.deps.config.settings);
          return this.recover(grant?.status === 'reauth_required' ? grant.last_error : null);
        }
        admit(m.healthOf(account), account, m.now(), m.deps.config.settings);

        const startedAt = m.now();
        await this.mark(startedAt);
        let set: TokenSet;
        try {
          set = await m.withTimeout((signal) => driver.refresh(this.context(signal), refreshToken, { scope, audience }));
        } catch (err) {
          return this.refreshFailed(err, recoverable);
        }
        return this.commit(set, { startedAt, obtainedAnew: false });
      },
      { backOff: true },
    );
  }

  /**
   * Holding the grant's lock: read the grant as stored, then either use what another daemon
   * of the fleet committed meanwhile (returned: nobody is called) or keep it for this attempt.
   */
  private async readGrant(): Promise<CachedToken | undefined> {
    const { m, fleet, revocation } = this.parts;
    const { key, account } = this.req;
    const cfg = this.config;
    let grant = await m.deps.store.getGrant(account);
    if (grant && !(await revocation.adoptOrKeep(grant, cfg))) {
      // Rule 8, last line of defence: never send a refresh token to a provider that did not
      // issue it. A fleet's grant is the other daemons' too: refused here, left alone there.
      if (m.deps.store.fleet) throw E.conflict(mismatchMessage(account, grant, cfg), { account });
      await revocation.revokeAndDrop(account, 'the account names another provider or client than the one that issued its grant');
      await m.deps.store.deleteSecrets(account);
      grant = undefined;
    }
    if (grant && fleet.movedOn(grant)) {
      // Another daemon of the fleet committed this grant since this one last read it: its
      // tokens are as good as a refresh of our own, and its refresh token is the live one.
      fleet.adoptStored(grant, cfg);
      const tok = m.cache.get(key);
      if (tok && this.serves(tok)) return tok;
    } else if (grant) {
      m.grants.set(account, summarize(grant));
    }
    this.grant = grant;
    const storeFleet = m.deps.store.fleet;
    const markedBy = grant?.status === 'active' && grant.in_flight_since ? grant.in_flight_by : null;
    if (storeFleet && markedBy && markedBy !== storeFleet.instance && (await storeFleet.holderAlive(markedBy))) {
      // The daemon that marked it lost the lock (its database connection dropped) but lives:
      // the rotation it may hold is committed before anyone sends this refresh token again.
      throw E.upstreamUnavailable(
        `another daemon of the fleet (${markedBy}) is refreshing "${account}" and has not committed its result yet; try again in a few seconds`,
        { account, retryAfter: 2 },
      );
    }
    if (grant?.in_flight_since && grant.in_flight_for === 'import' && markedBy && markedBy !== storeFleet?.instance) {
      // In a fleet, an import whose daemon is gone (Broker.start tells a daemon's own at restart):
      // the grant was not touched; this refresh's commit drops the mark.
      m.deps.log.warn('an import by another daemon of the fleet was interrupted; the account keeps the grant it had', {
        account,
        by: markedBy,
      });
    }
    if (grant?.status === 'active' && grant.in_flight_since && grant.in_flight_for !== 'import')
      await this.outlastInterrupted(grant.in_flight_since);
    return undefined;
  }

  /**
   * Rule 5: mark the grant in flight, durably, before the request leaves. A mark that
   * cannot be written stops the refresh here: a result that could not be committed must
   * not be asked for.
   */
  private async mark(startedAt: number): Promise<void> {
    const { m } = this.parts;
    const fleet = m.deps.store.fleet;
    await m.deps.store.markInFlight(this.account, startedAt);
    m.grants.set(this.account, {
      ...summarize(this.grant!),
      in_flight_since: startedAt,
      ...(fleet ? { in_flight_by: fleet.instance } : {}),
    });
  }

  /** The provider call failed: a refused refresh token goes to the recover step where the account has one (rule 6). */
  private async refreshFailed(err: unknown, recoverable: boolean): Promise<CachedToken> {
    const { m } = this.parts;
    const { account } = this;
    const grant = this.grant!;
    const de = asDriverError(err);
    if (de.kind !== 'invalid_grant' || !recoverable) throw await this.failed(err, grant);
    // Rule 6: the refresh token is refused (or was spent by an interrupted refresh); the
    // provider allows another way in. It is one more attempt of the minute's budget.
    const why = this.refusalReason(de.message, grant);
    // One commit clears the mark and records the refusal (Store.setStatus).
    await m.bestEffort(account, () => m.deps.store.setStatus(account, 'reauth_required', why));
    m.grants.set(account, { ...withoutMark(summarize(grant)), status: 'reauth_required', last_error: why });
    m.deps.log.warn('the provider refused the refresh token; trying the recover step', { account, reason: why });
    admit(m.healthOf(account), account, m.now(), m.deps.config.settings);
    return this.recover(why);
  }

  /**
   * The recover step (rule 6): a new grant without the refresh token (client credentials,
   * the stored password, a provider's force-refresh). `refused` says why the refresh token
   * was given up, when it was; then success is announced as `token.recovered`.
   */
  private async recover(refused: string | null): Promise<CachedToken> {
    const { m } = this.parts;
    const { account, driver } = this;
    const { scope, audience } = this.req;
    const startedAt = m.now();
    let set: TokenSet;
    try {
      set = await m.withTimeout((signal) => driver.recover!(this.context(signal), { scope, audience }));
    } catch (err) {
      const de = asDriverError(err);
      if (refused && de.kind !== 'transient') {
        // Neither the refresh token nor the recover step works: only the user can help now.
        throw await this.failed(
          new DriverError('invalid_grant', `${refused}; the recover step failed too: ${de.message}`, { oauthError: de.oauthError }),
        );
      }
      throw await this.failed(err);
    }
    const tok = await this.commit(set, { startedAt, obtainedAnew: true });
    if (refused) {
      m.deps.log.info('recovered the grant without the user', { account });
      m.deps.events.emit('token.recovered', account, { reason: refused });
    }
    return tok;
  }

  /** What the driver gets for this attempt: the grant read under the lock is its current access token's fallback. */
  private context(signal: AbortSignal): DriverContext {
    return this.parts.m.context({ account: this.account, config: this.config, signal, secrets: this.secrets, stored: this.grant });
  }

  /**
   * Does a token that appeared while the request waited answer it? One obtained after it was
   * asked for always does; another (a fleet daemon's rotation, a login) when it is valid for
   * the request's min_ttl. A forced refresh has none: it wants a new token.
   */
  private serves(tok: CachedToken): boolean {
    const { req } = this;
    return tok.obtained_at >= req.notBefore || (req.minTtlMs !== undefined && satisfies(tok, req.minTtlMs, this.parts.m.now()));
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
  private async outlastInterrupted(since: number): Promise<void> {
    const { m } = this.parts;
    const timeout = m.deps.config.settings.http_timeout_ms;
    const left = Math.min(timeout, since + timeout - m.now());
    if (left <= 0) return;
    m.deps.log.info('waiting until an interrupted refresh is surely over before sending its refresh token again', {
      account: this.account,
      ms: left,
    });
    await m.sleep(left);
  }

  /** Why a refresh token is refused, for the user: an interrupted refresh may have spent it. */
  private refusalReason(message: string, grant: InFlightMark): string {
    // An import's mark: the grant's own refresh token was not sent then.
    const interrupted = grant.in_flight_for === 'import' ? null : grant.in_flight_since;
    if (!interrupted) return `the provider refused the refresh token (${message})`;
    const at = new Date(interrupted).toISOString();
    const by = grant.in_flight_by;
    if (by && by !== this.parts.m.deps.store.fleet?.instance) {
      return `the provider refused the refresh token (invalid_grant); a refresh by another daemon of the fleet (${by}) interrupted at ${at} (that daemon stopped, or lost the database, before it could commit the rotated token) may have spent it`;
    }
    return `the provider refused the refresh token (invalid_grant); a refresh interrupted at ${at} (its answer was lost: timeout or daemon stopped mid-refresh) may have spent it`;
  }

  /**
   * Rule 5: the rotated refresh token is committed (durably) before the new access token is
   * served. A narrowed refresh keeps the base access token.
   */
  private async commit(set: TokenSet, opts: CommitOptions): Promise<CachedToken> {
    const { m, scheduler } = this.parts;
    const { account, config: cfg } = this;
    const { key, scope } = this.req;
    const { startedAt } = opts;
    const base = key === cacheKey(account);
    const update = updateFromSet(set, startedAt, scope);
    const committed = await this.persist(set, update, { ...opts, base });
    healthy(m.healthOf(account));

    const tok: CachedToken = {
      account,
      access_token: set.access_token,
      token_type: set.token_type,
      expires_at: update.expires_at,
      obtained_at: startedAt,
      scope: update.scope,
    };
    m.cache.set(key, tok);
    if (base) m.storedTokens.delete(account);
    m.usedKeys.delete(key);
    scheduler.schedule(account, key, tok);
    if (committed) scheduler.watchGrant(account, cfg, summarize(committed));
    const expiresAt = tok.expires_at ? new Date(tok.expires_at).toISOString() : null;
    m.deps.log.info('token refreshed', {
      account,
      generation: committed?.generation,
      expires_at: expiresAt,
      rotated: Boolean(set.refresh_token),
      narrowed: !base,
    });
    m.deps.events.emit('token.refreshed', account, { generation: committed?.generation, expires_at: expiresAt });
    return tok;
  }

  /**
   * The store's part of a commit. When a fleet's database is down at this moment, a rotation
   * the provider has answered is kept in memory and committed as soon as the database is back,
   * before any other use of the grant (its old refresh token is spent; the new one lives only
   * here). A grant obtained anew without the user is just obtained again next time.
   */
  private async persist(set: TokenSet, update: TokenUpdate, opts: CommitOptions & { base: boolean }): Promise<GrantRecord | undefined> {
    const { m, fleet } = this.parts;
    const { account, config: cfg } = this;
    const current = m.grants.get(account);
    let forStore: TokenUpdate | undefined;
    try {
      await m.keepSecrets(account, set);
      if (opts.obtainedAnew) {
        if (!opts.base) return undefined;
        // A grant obtained anew replaces the old one whole (its refresh token, if any, is dead).
        const g = await m.deps.store.replaceGrant(account, {
          ...update,
          refresh_token: set.refresh_token ?? null,
          bound_to: grantBinding(cfg, this.secrets),
        });
        m.remember(account, g);
        return g;
      }
      // A narrowed refresh keeps the base access token as stored (read with the refresh token).
      const kept = this.grant?.access_token ? this.grant : undefined;
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
      const g = await m.deps.store.commitRefresh(account, current!.generation, forStore);
      m.remember(account, g);
      return g;
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      if (!forStore || !current) {
        m.deps.log.warn(
          'could not store a grant obtained without the user (the database is unavailable); it serves from memory and is obtained again next time',
          {
            account,
            error: err.message,
          },
        );
        return undefined;
      }
      fleet.keepPending(account, current, forStore, err);
      return undefined;
    }
  }

  /** After a failed provider call: status, in-flight mark, backoff and events; returns the wire error. */
  private async failed(err: unknown, grant?: GrantRecord | GrantSummary): Promise<ApiError> {
    if (err instanceof ApiError) return err;
    const { m, scheduler } = this.parts;
    const { account } = this;
    const de = asDriverError(err);
    const h = m.healthOf(account);
    h.lastError = de.message;
    m.deps.events.emit('token.refresh_failed', account, { error: de.oauthError ?? de.kind, message: de.message });

    if (de.kind === 'invalid_grant') {
      // `grant` is the record from before this attempt: an in-flight mark on it means an
      // earlier refresh never learnt its outcome (timeout, or the daemon was killed).
      const why = grant ? this.refusalReason(de.message, grant) : de.message;
      // The provider answered: the outcome is known, so the in-flight mark goes (the status
      // now says why), in the same commit. Stored secrets are kept (rule 6): a login replaces the grant.
      await m.bestEffort(account, () => m.deps.store.setStatus(account, 'reauth_required', why));
      const g =
        (await m.bestEffort(account, () => m.deps.store.getGrant(account))) ??
        (grant && { ...withoutMark(summarize(grant)), status: 'reauth_required' as const, last_error: why });
      if (g) m.grants.set(account, summarize(g));
      m.dropTokens(account);
      m.storedTokens.delete(account);
      m.deps.log.warn('account needs a new login', { account, reason: why });
      m.deps.events.emit('account.reauth_required', account, { reason: why });
      m.deps.onReauthRequired?.(account);
      return reauthError(m.deps, account, why);
    }

    // The response, if any, was read: the refresh token was not spent (unless the
    // outcome is unknown, in which case the in-flight mark stays as a witness).
    // An older mark (an earlier attempt whose outcome is unknown) stays.
    if (grant && !de.outcomeUnknown && !grant.in_flight_since) {
      await m.bestEffort(account, () => m.deps.store.clearInFlight(account));
      m.grants.set(account, withoutMark(summarize(grant)));
    } else if (grant) {
      // The witness stays, but no daemon will commit that attempt any more.
      await m.bestEffort(account, () => m.deps.store.abandonInFlight(account));
    }
    const delay = backOff(h, m.now(), m.random(), m.deps.config.settings, de.retryAfterMs);
    m.deps.log.warn('refresh failed', { account, kind: de.kind, status: de.status, error: de.message, retry_in_ms: Math.round(delay) });
    scheduler.rescheduleBase(account);
    const wire = wireErrorOf(de, { account, doing: 'refresh the token', retryAfter: Math.ceil(delay / 1000) });
    h.lastCode = wire.code; // what the backoff answers with (refresh-health.ts, waitOut)
    return wire;
  }
}

/** Can this account's driver obtain a grant without the user (rule 6's recover step)? */
export async function recoverable(m: GrantMemory, account: string, cfg: AccountConfig, driver: Driver): Promise<boolean> {
  if (!driver.recover || !driver.canRecover) return false;
  return recoverableWith(m, account, cfg, driver, await m.secretsOf(account));
}

/**
 * The signal of a context that calls nobody (canRecover reads the config and the secrets):
 * aborted, so a request made with it would fail at once. One for all: an aborted signal made
 * per refresh cost a DOMException with its stack each time.
 */
const NO_CALLS = AbortSignal.abort();

function recoverableWith(m: GrantMemory, account: string, cfg: AccountConfig, driver: Driver, secrets: Map<string, string>): boolean {
  if (!driver.recover || !driver.canRecover) return false;
  return driver.canRecover(m.context({ account, config: cfg, signal: NO_CALLS, secrets }));
}
