/** What `tokend import` hands over, and what the broker says of it (Broker.importTokens). */
import type { AccountConfig } from '../protocol/api.js';
import type { Driver } from './drivers/driver.js';
import { E } from './errors.js';

/** What `tokend import` hands over (POST /v1/accounts/:name/import). */
export interface ImportedTokens {
  refresh_token?: string;
  access_token?: string;
  /** Epoch ms. */
  expires_at?: number;
  /** The client the refresh token belongs to, where the driver takes one (Driver.importSecrets). */
  client_id?: string;
  client_secret?: string;
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
export function importedSecrets(driver: Driver, account: string, t: ImportedTokens): Record<string, string> {
  if (t.client_id === undefined && t.client_secret === undefined) return {};
  if (!driver.importSecrets) {
    throw E.invalidRequest(
      `the ${driver.name} driver takes no client credentials with an import; the account's own client is set with \`tokend set ${account}\``,
      { account },
    );
  }
  if (!t.client_id || !t.client_secret)
    throw E.invalidRequest('an import gives client_id and client_secret together, or neither', { account });
  return driver.importSecrets({ client_id: t.client_id, client_secret: t.client_secret });
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
