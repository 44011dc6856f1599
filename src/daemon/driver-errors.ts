/**
 * The one translation of a provider failure (a DriverError) into a wire error, for every
 * caller: the broker's refreshes, the start of a login, the add-time check of an account.
 * Anything that is not a DriverError is a bug in tokend: `internal`, with no detail.
 */
import { DriverError } from './drivers/driver.js';
import { E, ApiError } from './errors.js';

export interface FailureContext {
  account: string;
  /** What was being done, for the message: `refresh`, `start a device login`, `check the account`. */
  doing: string;
  /**
   * Seconds until the next attempt is allowed, when the caller decides it (the broker's
   * backoff). The message then says it too, in the words a request refused during the
   * backoff hears (refresh-health.ts waitOut): the failure that starts a backoff and the
   * refusals while it lasts tell a person the same thing.
   */
  retryAfter?: number;
}

/** Anything a driver step threw, as a DriverError (unknown failures count as transient, outcome unknown). */
export function asDriverError(err: unknown): DriverError {
  if (err instanceof DriverError) return err;
  return new DriverError('transient', `request failed: ${(err as Error)?.message ?? String(err)}`, { outcomeUnknown: true });
}

/**
 * - `transient` (network, timeout, 5xx, 429): 503 `upstream_unavailable`, with `retry_after`;
 * - `invalid_grant`: 409 `reauth_required` (the broker adds recovery and status first);
 * - `config` with an answer from the provider (`invalid_client`, a 404 endpoint): 502
 *   `provider_rejected`; without one (a missing endpoint or secret): 400 `invalid_request`.
 */
export function wireErrorOf(err: unknown, ctx: FailureContext): ApiError {
  if (err instanceof ApiError) return err;
  if (!(err instanceof DriverError))
    return E.internal(`could not ${ctx.doing} for "${ctx.account}" (see the daemon log)`, { account: ctx.account });
  const { account } = ctx;
  const retryAfter = ctx.retryAfter ?? (err.retryAfterMs !== undefined ? Math.ceil(err.retryAfterMs / 1000) : undefined);
  const next = ctx.retryAfter !== undefined ? `; next attempt in ${ctx.retryAfter} s` : '';
  switch (err.kind) {
    case 'transient':
      return E.upstreamUnavailable(`the provider for "${account}" is unavailable (could not ${ctx.doing}): ${err.message}${next}`, {
        account,
        retryAfter,
      });
    case 'invalid_grant':
      return E.reauthRequired(`account "${account}" needs a new login: ${err.message}. Run \`tokend login ${account}\``, { account });
    case 'config':
      if (err.oauthError || err.status !== undefined) {
        return E.providerRejected(`the provider refused to ${ctx.doing} for "${account}": ${err.message}${next}`, { account, retryAfter });
      }
      return E.invalidRequest(`cannot ${ctx.doing} for "${account}": ${err.message}`, { account });
  }
}
