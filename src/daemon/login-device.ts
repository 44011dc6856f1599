/**
 * Polling the token endpoint for a device code (RFC 8628 §3.4–3.5), in the daemon. The
 * schedule is a pure function of the answers, so tests drive it with fabricated polls.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { DriverError, type DevicePoll, type TokenSet } from './drivers/driver.js';

/** Why a login did not succeed: the provider's OAuth error code when it sent one. */
export interface LoginError {
  code: string;
  message: string;
}

export type DeviceOutcome =
  | { kind: 'tokens'; tokens: TokenSet }
  | { kind: 'expired'; error: LoginError }
  | { kind: 'failed'; error: LoginError }
  | { kind: 'stopped' };

export interface DevicePollOptions {
  /** One token request with the device code; the caller bounds it with its own timeout. */
  poll: () => Promise<DevicePoll>;
  /** The device authorization response's `interval` in seconds; absent means 5 (RFC 8628 §3.2). */
  interval?: number;
  /** How many ms one interval second lasts (1000 but in tests: settings.device_poll_unit_ms). */
  unitMs: number;
  /** Epoch ms when the device code dies (`expires_in`, never scaled). */
  expiresAt: number;
  /** Stops polling (shutdown, login replaced). */
  signal: AbortSignal;
  now?: () => number;
  /** Called when the interval changes, for the log. */
  onInterval?: (seconds: number, why: 'slow_down' | 'unreachable') => void;
}

/** RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default." */
export const DEFAULT_INTERVAL_S = 5;
/** §3.5: slow_down adds 5 seconds, "for this and all subsequent requests". */
export const SLOW_DOWN_STEP_S = 5;
/** Doubling after timeouts stops here (a slow_down may still go beyond). */
export const MAX_BACKOFF_INTERVAL_S = 60;

/**
 * Poll until the user approves, denies, or the code expires (RFC 8628 §3.5):
 * - wait `interval` before every request, the first one included;
 * - `authorization_pending`: poll again; `slow_down`: +5 s for good, or the server's new
 *   `interval` when it sends one (GitHub does; never faster than before);
 * - a connection timeout (or any answer about the server's state: 5xx, 429, network error)
 *   halves the polling rate for good, and `Retry-After` is honoured;
 * - `expired_token` or `expires_in` elapsed: expired; `access_denied` and every other error: failed.
 */
export async function pollDeviceCode(o: DevicePollOptions): Promise<DeviceOutcome> {
  const now = o.now ?? Date.now;
  let interval = o.interval ?? DEFAULT_INTERVAL_S;
  let retryAfterMs = 0;
  for (;;) {
    const left = o.expiresAt - now();
    if (left <= 0) return expired();
    const wait = Math.max(interval * o.unitMs, retryAfterMs);
    retryAfterMs = 0;
    try {
      await delay(Math.min(wait, left), undefined, { signal: o.signal });
    } catch {
      return { kind: 'stopped' };
    }
    if (now() >= o.expiresAt) return expired();

    let answer: DevicePoll;
    try {
      answer = await o.poll();
    } catch (err) {
      if (o.signal.aborted) return { kind: 'stopped' };
      if (err instanceof DriverError && err.kind === 'transient') {
        // §3.5: "On encountering a connection timeout, clients MUST unilaterally reduce their
        // polling frequency before retrying"; doubling is what the RFC suggests.
        interval = Math.max(interval, Math.min(interval * 2, MAX_BACKOFF_INTERVAL_S));
        retryAfterMs = err.retryAfterMs ?? 0;
        o.onInterval?.(interval, 'unreachable');
        continue;
      }
      if (err instanceof DriverError && err.oauthError === 'expired_token') {
        return { kind: 'expired', error: { code: 'expired_token', message: err.message } };
      }
      // §3.5: access_denied, and "any other error code", MUST stop polling.
      return { kind: 'failed', error: loginErrorOf(err) };
    }
    switch (answer.status) {
      case 'tokens':
        return { kind: 'tokens', tokens: answer.tokens };
      case 'pending':
        continue;
      case 'slow_down':
        // The server's new interval when it sends one (never faster than now), else +5 s.
        interval = answer.interval !== undefined ? Math.max(answer.interval, interval) : interval + SLOW_DOWN_STEP_S;
        o.onInterval?.(interval, 'slow_down');
        continue;
    }
  }
}

function expired(): DeviceOutcome {
  return {
    kind: 'expired',
    error: { code: 'expired_token', message: 'the code expired before the login was approved; run the login again' },
  };
}

/** The login error for any failure of a login step: the provider's code when there is one. */
export function loginErrorOf(err: unknown): LoginError {
  if (err instanceof DriverError) {
    const code =
      err.oauthError ??
      (err.kind === 'transient' ? 'temporarily_unavailable' : err.kind === 'invalid_grant' ? 'invalid_grant' : 'login_failed');
    return { code, message: err.message };
  }
  return { code: 'internal', message: 'the login failed inside tokend (see the daemon log)' };
}
