/** What `tokend import` hands over, and what the broker says of it (Broker.importTokens). */
import type { AccountConfig } from '../protocol/api.js';
import type { Driver } from './drivers/driver.js';
import { E } from './errors.js';
import { DPOP_KEY_SECRET, dpopKeyFromJwk } from './dpop/key.js';

/** What `tokend import` hands over (POST /v1/accounts/:name/import). */
export interface ImportedTokens {
  refresh_token?: string;
  access_token?: string;
  /** Epoch ms. */
  expires_at?: number;
  /** The client the refresh token belongs to, where the driver takes one (Driver.importSecrets). */
  client_id?: string;
  client_secret?: string;
  /** A DPoP account's key the tokens are bound to: a private EC P-256 JWK. */
  dpop_jwk?: { kty: 'EC'; crv: 'P-256'; x: string; y: string; d: string };
}

/** One import as the broker proves it: the account, its driver, what was handed over, and the identity it will be bound to. */
export interface ImportAttempt {
  account: string;
  cfg: AccountConfig;
  driver: Driver;
  t: ImportedTokens;
  /** The secrets the import's client credentials become (importedSecrets). */
  imported: Record<string, string>;
  boundTo: string;
}

/** The secrets an import's client credentials become; 400 where the driver takes none. */
export function importedSecrets(driver: Driver, account: string, t: ImportedTokens, cfg?: AccountConfig): Record<string, string> {
  const dpop = importedDpopKey(account, t, cfg);
  if (t.client_id === undefined && t.client_secret === undefined) return dpop;
  if (!driver.importSecrets) {
    throw E.invalidRequest(
      `the ${driver.name} driver takes no client credentials with an import; the account's own client is set with \`tokend set ${account}\``,
      { account },
    );
  }
  if (!t.client_id || !t.client_secret)
    throw E.invalidRequest('an import gives client_id and client_secret together, or neither', { account });
  return { ...driver.importSecrets({ client_id: t.client_id, client_secret: t.client_secret }), ...dpop };
}

/**
 * RFC 9449 §5: a DPoP-bound refresh token is redeemed only with a proof by its key. A DPoP
 * account takes one with that key (it becomes the account's), and refuses it without: the
 * daemon's own key would not do, and the import would fail at the provider or, worse, later.
 */
function importedDpopKey(account: string, t: ImportedTokens, cfg: AccountConfig | undefined): Record<string, string> {
  if (t.dpop_jwk) {
    if (!cfg?.dpop)
      throw E.invalidRequest(`account "${account}" does not use DPoP: a dpop_jwk has nothing to bind (turn it on with --dpop)`, {
        account,
      });
    try {
      return { [DPOP_KEY_SECRET]: dpopKeyFromJwk(t.dpop_jwk) };
    } catch {
      throw E.invalidRequest('dpop_jwk: not a usable EC P-256 private key', { account });
    }
  }
  if (cfg?.dpop && t.refresh_token) {
    throw E.importRefused(
      `account "${account}" uses DPoP: an imported refresh token is bound to the key it was issued with, and is useless without it; give that key as dpop_jwk (the private JWK) with the import, or log in instead. Nothing was changed`,
      { account },
    );
  }
  return {};
}

/**
 * Why an account's import has no known outcome: the daemon stopped during its proving refresh
 * (Store.markImport). `keptGrant`: the account had a grant, which is kept as it was.
 */
export function importInterruptedReason(at: string, keptGrant: boolean): string {
  const what = `an import of tokens began at ${at} and tokend stopped before its outcome was known`;
  return keptGrant
    ? `${what}: the account kept its grant; the imported refresh token may be spent, so import again to use it`
    : `${what}; the imported refresh token may be spent: import again or log in`;
}
