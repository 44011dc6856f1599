/**
 * Per-account refresh health (rule 6, docs/architecture.md): exponential backoff with jitter after a
 * failure, `Retry-After` honoured, and an attempt budget per minute so that no refresh
 * loop is possible, whatever a provider answers. Pure bookkeeping: the clock and the
 * random source are the caller's.
 */
import type { ErrorCode } from '../protocol/errors.js';
import { E, ApiError } from './errors.js';

export interface HealthSettings {
  max_refreshes_per_minute: number;
  backoff_initial_ms: number;
  backoff_max_ms: number;
}

export interface AccountHealth {
  failures: number;
  /** No provider call for this account before this time (epoch ms). */
  nextAttemptAt: number;
  /** When each provider call of the last minute started. */
  attempts: number[];
  lastError: string | null;
  /** The wire code the last failure was answered with: the backoff it started answers with the same. */
  lastCode: ErrorCode | null;
}

export function freshHealth(): AccountHealth {
  return { failures: 0, nextAttemptAt: 0, attempts: [], lastError: null, lastCode: null };
}

/**
 * Refuses while backing off, with the wait (`retry_after`); checked before the grant's lock
 * is even asked for. One cause keeps one code: the code the failure that started the
 * backoff was answered with (a refused password stays 502 `provider_rejected`, an outage
 * 503 `upstream_unavailable`), so a client can tell "fix it" from "wait" on any answer.
 */
export function waitOut(h: AccountHealth, account: string, now: number): void {
  if (h.nextAttemptAt > now) {
    const wait = Math.ceil((h.nextAttemptAt - now) / 1000);
    throw new ApiError(
      h.lastCode ?? 'upstream_unavailable',
      // The last failure says whose: the provider's, or the store's (a full disk, a fleet's database).
      `account "${account}" cannot be refreshed now (last attempt: ${h.lastError ?? 'unknown error'}); next attempt in ${wait} s`,
      { account, retryAfter: wait },
    );
  }
}

/**
 * The gate before any provider call: refuses while backing off (503 with the wait) or when
 * the minute's budget is spent (429); otherwise counts the attempt.
 */
export function admit(h: AccountHealth, account: string, now: number, settings: HealthSettings): void {
  waitOut(h, account, now);
  const windowStart = now - 60_000;
  h.attempts = h.attempts.filter((t) => t > windowStart);
  if (h.attempts.length >= settings.max_refreshes_per_minute) {
    const wait = Math.max(1, Math.ceil((h.attempts[0] + 60_000 - now) / 1000));
    throw E.rateLimited(
      `refresh attempts for "${account}" are limited to ${settings.max_refreshes_per_minute} a minute; try again in ${wait} s`,
      { account, retryAfter: wait },
    );
  }
  h.attempts.push(now);
}

/**
 * After a failed attempt: the next one waits `initial · 2^(failures-1)` ms, ±20 % jitter,
 * at most `backoff_max_ms`, and never less than the provider's `Retry-After`. Returns the delay.
 */
export function backOff(h: AccountHealth, now: number, random: number, settings: HealthSettings, retryAfterMs?: number): number {
  h.failures += 1;
  const exp = Math.min(settings.backoff_max_ms, settings.backoff_initial_ms * 2 ** (h.failures - 1));
  const jittered = exp * (0.8 + 0.4 * random);
  const delay = Math.min(Math.max(jittered, retryAfterMs ?? 0), Math.max(settings.backoff_max_ms, retryAfterMs ?? 0));
  h.nextAttemptAt = now + delay;
  return delay;
}

/** After a success: no backoff, no error (the attempt budget keeps counting). */
export function healthy(h: AccountHealth): void {
  h.failures = 0;
  h.nextAttemptAt = 0;
  h.lastError = null;
  h.lastCode = null;
}
