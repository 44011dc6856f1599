/**
 * The answers a refresh gives when it cannot give a token (each an ApiError with its wire
 * code): a login is needed or pending, the fleet's grant is another identity's, the store is
 * down. Said the same way by every part of the broker.
 */
import type { AccountConfig, LoginView } from '../../protocol/api.js';
import { importHint } from '../../protocol/rules.js';
import type { Driver } from '../drivers/driver.js';
import { E, type ApiError } from '../errors.js';
import { describeIdentity, identityOf, parseIdentity } from '../grant-identity.js';
import type { Logger } from '../log.js';
import type { GrantRecord } from '../store/types.js';

/** What the answers read of the broker's dependencies (BrokerDeps). */
export interface RefusalDeps {
  config: { getAccount(name: string): AccountConfig | undefined };
  getDriver: (name: string) => Driver | undefined;
  pendingLogin?: (account: string) => LoginView | undefined;
}

/** 401 reauth_required (or 409 login_pending while a login waits), with the way back. */
export function reauthError(deps: RefusalDeps, account: string, reason: string | null): ApiError {
  const login = deps.pendingLogin?.(account);
  if (login) return loginPendingError(account, login);
  // Where the driver has another way back than a login (AMP: the password; Cal.com: an import), it says so.
  const cfg = deps.config.getAccount(account);
  const next = (cfg && deps.getDriver(cfg.driver)?.reauthHint?.(account)) ?? `\`tokend login ${account}\``;
  return E.reauthRequired(`account "${account}" needs a new login${reason ? `: ${reason}` : ''}. Run ${next}`, { account });
}

/** An account that never had a grant: 409 login_pending while a login waits, else 401 with how to get one. */
export function noGrantError(deps: RefusalDeps, account: string, cfg: AccountConfig, driver: Driver): ApiError {
  const login = deps.pendingLogin?.(account);
  if (login) return loginPendingError(account, login);
  const imports = importHint(cfg.driver, account);
  const next = driver.reauthHint?.(account) ?? `\`tokend login ${account}\`${imports ? ` (or \`${imports}\`)` : ''}`;
  return E.reauthRequired(`account "${account}" has no grant yet: run ${next}`, { account });
}

/** 409 login_pending: say where to finish the login; `error.login` carries the whole login object. */
export function loginPendingError(account: string, login: LoginView): ApiError {
  const where =
    login.flow === 'device'
      ? `enter the code ${login.user_code} at ${login.verification_uri}`
      : `finish signing in at ${login.authorization_url}`;
  return E.loginPending(`account "${account}" is waiting for a login: ${where}`, { account, login });
}

/** Why a daemon of a fleet does not touch the fleet's grant of an account (rule 8), and the fixes. */
export function mismatchMessage(account: string, g: Pick<GrantRecord, 'bound_to'>, cfg: AccountConfig): string {
  const issuer = describeIdentity(parseIdentity(g.bound_to ?? '') ?? {});
  return (
    `the fleet's grant of account "${account}" was issued by ${issuer}, but this daemon's config names ${describeIdentity(identityOf(cfg))}: ` +
    `this daemon does not use, refresh or replace it. Make this host's config.json agree with the fleet's (docs/fleet.md), ` +
    `or replace the fleet's grant with \`tokend set ${account} … --replace-grant\``
  );
}

/** 503 for a store that cannot answer now; the cached token keeps being served while valid (getToken). */
export function storeDownError(log: Logger, account: string, err: Error, retryAfter: number): ApiError {
  log.warn('the database is unavailable; the account cannot be refreshed now', { account, error: err.message, retry_after_s: retryAfter });
  return E.upstreamUnavailable(`account "${account}" cannot be refreshed now: ${err.message}; try again in ${retryAfter} s`, {
    account,
    retryAfter,
  });
}

/** 409 for `recover` on an account whose driver has no recover step, or cannot use it as the account is set up. */
export function noRecoverStep(account: string, driver: string): ApiError {
  return E.conflict(
    `account "${account}" (driver ${driver}) has no recover step: it gets a new grant only from its refresh token or a login. ` +
      `Use \`tokend refresh ${account}\`, or \`tokend login ${account}\``,
    { account },
  );
}
