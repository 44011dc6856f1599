import type { LoginView } from '../protocol/api.js';
import type { ErrorCode } from '../protocol/errors.js';

/**
 * What went wrong, as a code a program can switch on:
 * - the daemon's wire codes (`reauth_required`, `login_pending`, `not_found`, `conflict`,
 *   `upstream_unavailable`, …; docs/api.md);
 * - `daemon_unreachable`: nothing answered on the socket and the daemon could not be started,
 *   or the connection to it broke before its answer was read (a restart): never a raw
 *   socket error (`ECONNRESET`, `EPIPE`);
 * - `daemon_not_found`: nothing answered on the socket, and there is no `tokend` command to
 *   start (neither `TOKEND_BIN` nor `tokend` on `PATH`): install tokend, or start it;
 * - a failed login's own code (`access_denied`, `expired_token`, `cancelled`, …) from
 *   `waitForLogin`.
 */
export type TokendErrorCode = ErrorCode | 'daemon_unreachable' | 'daemon_not_found' | (string & {});

export interface TokendErrorFields {
  /** The HTTP status of the daemon's answer; 0 when there was none. */
  status?: number;
  account?: string;
  /** Seconds until trying again makes sense (`rate_limited`, `upstream_unavailable`). */
  retryAfter?: number;
  /** `login_pending`: the login in progress (its code and URL); a failed `waitForLogin`: the login as it ended. */
  login?: LoginView;
  /** Default: whether the code is one of {@link RETRYABLE_CODES}. */
  retryable?: boolean;
}

/**
 * The codes for which the same call may succeed later without anything changed: the daemon
 * or the provider was away or busy. Any other code needs a change first (a login, a
 * password, the config).
 */
export const RETRYABLE_CODES: ReadonlySet<string> = new Set([
  'daemon_unreachable',
  'upstream_unavailable',
  'upstream_timeout',
  'upstream_failed',
  'rate_limited',
]);

/** The one error the SDK throws (besides an AbortError when the caller's signal fires). */
export class TokendError extends Error {
  readonly code: TokendErrorCode;
  readonly status: number;
  readonly account?: string;
  readonly retryAfter?: number;
  readonly login?: LoginView;
  /** Trying the same call again later may work (after `retryAfter` seconds, when given). */
  readonly retryable: boolean;

  constructor(code: TokendErrorCode, message: string, fields: TokendErrorFields = {}) {
    super(message);
    this.name = 'TokendError';
    this.code = code;
    this.status = fields.status ?? 0;
    if (fields.account !== undefined) this.account = fields.account;
    if (fields.retryAfter !== undefined) this.retryAfter = fields.retryAfter;
    if (fields.login !== undefined) this.login = fields.login;
    this.retryable = fields.retryable ?? RETRYABLE_CODES.has(code);
  }
}

/** The daemon could not be reached, nor started (`daemon_not_found`: for want of its command). */
export function daemonUnreachable(message: string, code: 'daemon_unreachable' | 'daemon_not_found' = 'daemon_unreachable'): TokendError {
  return new TokendError(code, message);
}

/**
 * The one translation of a failure of the socket itself (the daemon closed it, stopped or
 * was killed: `ECONNRESET`, `EPIPE`, a response cut short) into the SDK's error. What is
 * already a TokendError, and the caller's own abort, pass as they are.
 */
export function connectionError(err: unknown, socket: string, signal?: AbortSignal): unknown {
  if (err instanceof TokendError || signal?.aborted) return err;
  const why = (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err);
  return daemonUnreachable(
    `the connection to tokend at ${socket} broke before its answer was complete (${why}); the daemon may be restarting, and whether it did what was asked is unknown`,
  );
}

/**
 * The error for a non-2xx answer of the daemon: its wire body
 * `{"error": {"code", "message", "account"?, "retry_after"?, "login"?}}` when it sent one.
 */
export function errorFromAnswer(status: number, text: string, retryAfterHeader?: string): TokendError {
  let e: { code?: unknown; message?: unknown; account?: unknown; retry_after?: unknown; login?: unknown } | undefined;
  try {
    e = (JSON.parse(text) as { error?: typeof e })?.error;
  } catch {
    e = undefined;
  }
  const headerSeconds = retryAfterHeader !== undefined && /^\d+$/.test(retryAfterHeader) ? Number(retryAfterHeader) : undefined;
  return new TokendError(
    typeof e?.code === 'string' ? e.code : status >= 500 ? 'internal' : 'invalid_request',
    typeof e?.message === 'string' ? e.message : `the daemon answered ${status} without an error body`,
    {
      status,
      account: typeof e?.account === 'string' ? e.account : undefined,
      retryAfter: typeof e?.retry_after === 'number' ? e.retry_after : headerSeconds,
      login: e?.login && typeof e.login === 'object' ? (e.login as LoginView) : undefined,
    },
  );
}

/** The error a finished login that did not succeed becomes (`waitForLogin`). */
export function loginError(login: LoginView): TokendError {
  const code = login.error?.code ?? (login.status === 'expired' ? 'expired_token' : 'login_failed');
  const why = login.error?.message ?? `the login ${login.status === 'expired' ? 'expired' : 'failed'}`;
  return new TokendError(code, `login to "${login.account}" ${login.status}: ${why}`, { account: login.account, login });
}
