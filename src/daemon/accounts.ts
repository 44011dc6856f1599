import { AccountConfig, PutAccountRequest, type AccountStatus, type AccountView } from '../protocol/api.js';
import type { Broker } from './broker.js';
import type { ConfigStore } from './config.js';
import type { Driver } from './drivers/driver.js';
import { E, unknownAccount } from './errors.js';
import { isLoopbackHost } from '../protocol/rules.js';
import { parseHostPattern } from './match.js';
import { applyPreset } from './presets.js';
import type { Store } from './store/types.js';

export interface AccountDeps {
  config: ConfigStore;
  store: Store;
  broker: Broker;
  getDriver: (name: string) => Driver | undefined;
  /** The account's pending login, if any (shown as status `login_pending`). */
  pendingLogin?: (account: string) => unknown;
  now?: () => number;
}

/** Refuse configs that could send a secret in clear or that no driver can serve. */
function checkAccountConfig(cfg: AccountConfig, getDriver: AccountDeps['getDriver']): void {
  if (!getDriver(cfg.driver)) throw E.invalidRequest(`driver: unknown driver "${cfg.driver}"`);
  if (cfg.driver === 'oauth2' && !cfg.issuer && !cfg.token_endpoint) {
    throw E.invalidRequest('issuer: give an issuer (for discovery) or a token_endpoint');
  }
  for (const h of cfg.hosts) {
    if (!parseHostPattern(h)) throw E.invalidRequest(`hosts: "${h.slice(0, 200)}" is not a host pattern (e.g. github.com, *.example.com, git.example.com/org)`);
  }
  for (const field of ['issuer', 'token_endpoint', 'authorization_endpoint', 'device_authorization_endpoint', 'revocation_endpoint'] as const) {
    const v = cfg[field];
    if (!v) continue;
    const u = new URL(v);
    if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
      throw E.invalidRequest(`${field}: plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost); use https`);
    }
  }
}

/** Create or replace an account; its client secret goes to the encrypted store, never to config.json. */
export async function putAccount(deps: AccountDeps, name: string, body: PutAccountRequest): Promise<AccountView> {
  const { client_secret, ...rest } = body;
  const cfg = AccountConfig.parse(applyPreset(rest));
  checkAccountConfig(cfg, deps.getDriver);
  const before = deps.config.getAccount(name);
  if (client_secret !== undefined) deps.store.putSecret(name, 'client_secret', client_secret);
  await deps.config.putAccount(name, cfg);
  // A changed provider or client makes cached tokens meaningless; an identical PUT keeps them.
  if (before && JSON.stringify(before) !== JSON.stringify(cfg)) deps.broker.forget(name);
  return viewAccount(deps, name);
}

/** Revoke where possible, then delete grant, secrets and config. */
export async function removeAccount(deps: AccountDeps, name: string): Promise<{ revoked: boolean }> {
  if (!deps.config.getAccount(name)) throw unknownAccount(name);
  const { revoked } = await deps.broker.logout(name);
  deps.store.deleteSecrets(name);
  await deps.config.deleteAccount(name);
  deps.broker.forget(name);
  return { revoked };
}

/** What the API shows of one account: never a secret. */
export function viewAccount(deps: AccountDeps, name: string): AccountView {
  const cfg = deps.config.getAccount(name);
  if (!cfg) throw unknownAccount(name);
  const now = (deps.now ?? Date.now)();
  const { grant, token, lastError } = deps.broker.grantState(name);
  let status: AccountStatus;
  if (!grant && !token) status = 'no_grant';
  else if (grant?.status === 'reauth_required') status = 'reauth_required';
  else if (token && (token.expires_at === null || token.expires_at > now)) status = 'active';
  else if (grant?.refresh_token || cfg.flow === 'client-credentials') status = 'active';
  else status = 'expired';
  if (status !== 'active' && deps.pendingLogin?.(name)) status = 'login_pending';
  const expiresAt = token?.expires_at ?? grant?.expires_at ?? null;
  return {
    name,
    driver: cfg.driver,
    preset: cfg.preset,
    status,
    expires_at: expiresAt ? new Date(expiresAt).toISOString() : null,
    scopes: cfg.scopes,
    hosts: cfg.hosts,
    issuer: cfg.issuer,
    client_id: cfg.client_id,
    has_client_secret: deps.store.getSecret(name, 'client_secret') !== undefined,
    has_refresh_token: Boolean(grant?.refresh_token),
    flow: cfg.flow,
    audience: cfg.audience,
    username: cfg.username,
    api_base: cfg.api_base,
    last_error: lastError,
    generation: grant?.generation ?? 0,
  };
}
