/**
 * When the broker refreshes without being asked (rule 4): the proactive refresh of each token
 * before it expires, the keep-alive refresh of grants a provider forgets when unused, the
 * warning ahead of a refresh token's own expiry, and the watch that re-arms every timer when
 * the wall clock jumps. The refresh itself is the front's (`refresh`: its single flight).
 */
import type { AccountConfig } from '../../protocol/api.js';
import { accountOfKey, cacheKey, splitKey, type CachedToken } from '../cached-token.js';
import { DueQueue } from '../due-queue.js';
import { ApiError } from '../errors.js';
import type { GrantSummary } from '../store/types.js';
import { storedTimes, type GrantMemory, type RefreshRequest, type TokenTimes } from './grant-memory.js';

const DAY_MS = 24 * 3_600_000;
/** How far the wall clock may part from the monotonic one between two checks before timers are re-armed. */
const CLOCK_JUMP_MS = 5_000;
/** Rule 4's lead: a grant is refreshed when less than min(5 min, ¼ of its lifetime) remains. */
export const PROACTIVE_LEAD_MAX_MS = 5 * 60_000;
/** How long before a refresh token's own expiry the user is told to log in again. */
export const REAUTH_SOON_MS = 7 * DAY_MS;

export class Scheduler {
  /** Proactive refreshes (cache key → when), rule 4. */
  private readonly timers = new DueQueue(
    (key) => void this.proactive(accountOfKey(key), key),
    () => this.m.now(),
  );
  /** Keep-alive refreshes of grants a provider forgets when unused (account → when). */
  private readonly keepAlives = new DueQueue(
    (account) => this.runKeepAlive(account),
    () => this.m.now(),
  );
  /** Accounts whose coming refresh-token expiry was announced (account → that expiry), once each. */
  private readonly reauthSoonSent = new Map<string, number>();
  private clockWatch?: NodeJS.Timeout;
  private clockMark = { wall: 0, mono: 0 };

  constructor(
    private readonly m: GrantMemory,
    /** The front's single flight (Broker.flight). */
    private readonly refresh: (req: RefreshRequest) => Promise<CachedToken>,
  ) {}

  /**
   * Timers run on a monotonic clock, which stops while a laptop sleeps: a refresh due "in 10
   * minutes" would fire 10 minutes after waking, and a clock set back would fire early. So
   * every `clock_check_ms` the wall clock's progress is compared with the monotonic clock's;
   * when they part by more than a few seconds (a suspend, a jump either way), every timer is
   * re-armed from the wall-clock expiries. (Serving never depends on timers: a token is
   * checked against the wall clock on every request, so none is served expired meanwhile.)
   */
  watchClock(): void {
    clearInterval(this.clockWatch);
    this.clockMark = { wall: this.m.now(), mono: this.m.monotonic() };
    this.clockWatch = setInterval(() => this.checkClock(), this.m.deps.config.settings.clock_check_ms);
    this.clockWatch.unref();
  }

  /** One comparison of the two clocks (see watchClock); true when the timers were re-armed. */
  checkClock(): boolean {
    const { m } = this;
    const now = { wall: m.now(), mono: m.monotonic() };
    const drift = now.wall - this.clockMark.wall - (now.mono - this.clockMark.mono);
    this.clockMark = now;
    if (Math.abs(drift) < CLOCK_JUMP_MS || m.closed) return false;
    m.deps.log.info('the wall clock moved apart from the monotonic clock (a suspend or a clock change); timers re-armed', {
      drift_ms: Math.round(drift),
    });
    for (const [key, tok] of m.cache) this.schedule(accountOfKey(key), key, tok);
    for (const account of m.storedTokens) {
      const g = m.grants.get(account);
      if (g) this.schedule(account, cacheKey(account), storedTimes(g));
    }
    for (const [account, g] of m.grants) {
      const cfg = m.deps.config.getAccount(account);
      if (cfg && g.status === 'active') this.watchGrant(account, cfg, g);
    }
    return true;
  }

  /**
   * Rule 4: refresh when less than min(5 min, ¼ of the lifetime) remains, or when the
   * backoff allows the next attempt. Narrowed keys only while someone uses them.
   */
  schedule(account: string, key: string, tok: TokenTimes): void {
    this.timers.delete(key);
    if (this.m.closed || !this.m.deps.config.settings.proactive_refresh || tok.expires_at === null) return;
    const lifetime = Math.max(0, tok.expires_at - tok.obtained_at);
    const lead = Math.min(PROACTIVE_LEAD_MAX_MS, lifetime / 4);
    let at = tok.expires_at - lead;
    const h = this.m.health.get(account);
    if (h && h.nextAttemptAt > at) at = h.nextAttemptAt;
    this.timers.set(key, at);
  }

  /** Re-arm the base token's proactive refresh (after a failure moved the next attempt). */
  rescheduleBase(account: string): void {
    const key = cacheKey(account);
    const tok = this.m.cache.get(key);
    const g = this.m.grants.get(account);
    if (tok) this.schedule(account, key, tok);
    else if (g && this.m.storedTokens.has(account)) this.schedule(account, key, storedTimes(g));
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
  watchGrant(account: string, cfg: AccountConfig, g: GrantSummary): void {
    this.keepAlives.delete(account);
    if (this.m.closed) return;
    const now = this.m.now();
    if (g.refresh_expires_at !== null && g.has_refresh_token) {
      const warnFrom = g.refresh_expires_at - REAUTH_SOON_MS;
      if (now >= warnFrom && this.reauthSoonSent.get(account) !== g.refresh_expires_at) {
        this.reauthSoonSent.set(account, g.refresh_expires_at);
        const at = new Date(g.refresh_expires_at).toISOString();
        this.m.deps.log.warn('the refresh token expires soon: log in again before then', { account, refresh_expires_at: at });
        this.m.deps.events.emit('account.reauth_soon', account, { refresh_expires_at: at });
      }
    }
    const due = keepAliveDue(cfg, g);
    if (due !== undefined) this.keepAlives.set(account, due);
  }

  /** Stop every timer of an account (after logout/remove/config change). */
  forget(account: string): void {
    for (const key of [...this.timers.keys()]) if (accountOfKey(key) === account) this.timers.delete(key);
    this.keepAlives.delete(account);
    this.reauthSoonSent.delete(account);
  }

  /** Start no more refreshes of its own (first step of shutdown). */
  stop(): void {
    clearInterval(this.clockWatch);
    this.timers.clear();
    this.keepAlives.clear();
  }

  /** A keep-alive refresh came due (watchGrant): the refresh token must be used before the provider forgets it. */
  private runKeepAlive(account: string): void {
    const { m } = this;
    const cfg = m.deps.config.getAccount(account);
    const g = m.grants.get(account);
    if (m.closed || !cfg || !g || g.status !== 'active') return;
    const due = keepAliveDue(cfg, g);
    if (due === undefined) return;
    if (m.now() < due) {
      this.watchGrant(account, cfg, g); // a clock that moved back, or a grant refreshed meanwhile
      return;
    }
    m.deps.log.info('keep-alive refresh: the provider forgets unused refresh tokens', { account, idle_days: cfg.refresh_idle_days });
    // The refresh token must be used: a valid access token does not answer this refresh.
    void this.refresh({ key: cacheKey(account), account, notBefore: m.now() }).catch(() => undefined);
  }

  private async proactive(account: string, key: string): Promise<void> {
    const { m } = this;
    if (m.closed) return;
    const grant = m.grants.get(account);
    if (!m.deps.config.getAccount(account) || grant?.status === 'reauth_required') return;
    if (key !== cacheKey(account) && !m.usedKeys.has(key)) {
      m.cache.delete(key); // nobody asked for it since: let it lapse
      return;
    }
    const [, scope, audience] = splitKey(key);
    try {
      // In a fleet, a token another daemon obtained that is not due itself makes this refresh moot.
      await this.refresh({
        key,
        account,
        scope: scope || undefined,
        audience: audience || undefined,
        notBefore: m.now(),
        minTtlMs: PROACTIVE_LEAD_MAX_MS,
      });
    } catch (err) {
      // failed() already logged, backed off and rescheduled; nothing to add here.
      if (!(err instanceof ApiError)) m.deps.log.error('proactive refresh crashed', { account, error: err as Error });
    }
  }
}

/** When a grant's keep-alive refresh is due (`refresh_idle_days`, a margin of a tenth and at least a day ahead); undefined when it needs none. */
export function keepAliveDue(cfg: AccountConfig, g: GrantSummary): number | undefined {
  if (!cfg.refresh_idle_days || !g.has_refresh_token) return undefined;
  const idleMs = cfg.refresh_idle_days * DAY_MS;
  const lastUse = g.obtained_at ?? g.updated_at;
  return lastUse + idleMs - Math.max(DAY_MS, idleMs / 10);
}
