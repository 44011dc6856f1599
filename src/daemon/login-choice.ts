/**
 * What a new login is, decided before it starts: its flow (the request's, the account's, or
 * the environment's guess), how long it waits, and the error when the driver cannot do it.
 */
import type { AccountConfig, LoginFlow } from '../protocol/api.js';
import { defaultLoginFlow, importHint } from '../protocol/rules.js';
import type { Driver } from './drivers/driver.js';
import { E, type ApiError } from './errors.js';

/** `requested`, else the account's flow, else the daemon's guess from its environment. */
export function chooseFlow(
  account: string,
  cfg: AccountConfig,
  requested: LoginFlow | undefined,
  env: Readonly<Record<string, string | undefined>>,
  platform: string,
): LoginFlow {
  if (requested) return requested;
  if (cfg.flow === 'device' || cfg.flow === 'browser') return cfg.flow;
  if (cfg.flow) {
    throw E.invalidRequest(
      `account "${account}" uses the ${cfg.flow} flow, which needs no interactive login; ask for a token (\`tokend token ${account}\`), or pass a flow (device or browser)`,
      { account },
    );
  }
  return defaultLoginFlow(env, platform);
}

/**
 * How long a new login waits, in ms (undefined: the flow's default): the request's
 * `ttl_s`, else the account's `login_ttl_s` (capped at the maximum), at most `maxS`
 * (settings.login_ttl_max_s); a request for more is a 400 naming the maximum.
 */
export function loginTtlMs(account: string, cfg: AccountConfig, ttlS: number | undefined, maxS: number): number | undefined {
  if (ttlS !== undefined && ttlS > maxS) {
    throw E.invalidRequest(`ttl_s: at most ${maxS} seconds (settings.login_ttl_max_s), got ${ttlS}`, { account });
  }
  const chosen = ttlS ?? cfg.login_ttl_s;
  return chosen === undefined ? undefined : Math.min(chosen, maxS) * 1000;
}

/** The driver cannot do this login flow: the other flow when it can, else its own way to a grant (Cal.com: an import). */
export function noSuchLogin(driver: Driver, account: string, flow: LoginFlow): ApiError {
  const other: LoginFlow = flow === 'device' ? 'browser' : 'device';
  const canOther = other === 'device' ? driver.startDeviceLogin && driver.pollDeviceLogin : driver.authorizationUrl && driver.exchangeCode;
  if (canOther) return E.invalidRequest(`the ${driver.name} driver cannot do ${flow} logins; try --flow ${other}`, { account });
  const next = driver.reauthHint?.(account) ?? `\`${importHint(driver.name, account) ?? `tokend status ${account}`}\``;
  return E.invalidRequest(`the ${driver.name} driver has no interactive login; run ${next}`, { account });
}
