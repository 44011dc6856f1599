/**
 * An import is proven before it replaces anything (rule 5 for an import; docs/api.md,
 * "Imports are proven first"): a still-valid access token by the driver's check of it, else
 * the imported refresh token by one refresh on the side. The stored grant is neither read
 * for it nor touched, only marked (Store.markImport) so a crash meanwhile is told.
 */
import { updateFromSet } from '../cached-token.js';
import { asDriverError, wireErrorOf } from '../driver-errors.js';
import type { DriverError, TokenSet } from '../drivers/driver.js';
import { E, type ApiError } from '../errors.js';
import { importInterruptedReason, type ImportAttempt } from '../imports.js';
import { admit } from '../refresh-health.js';
import type { TokenUpdate } from '../store/types.js';
import type { GrantMemory } from './grant-memory.js';

/** The tokens an import is committed with: its refresh token, where one came along. */
export type ProvenTokens = Omit<TokenUpdate, 'refresh_token'> & { refresh_token: string | null };

/**
 * An import that came with a still-valid access token: proven by the driver's check of it
 * (Driver.checkAccessToken), which spends nothing; where the provider refuses it, by the
 * proving refresh of the refresh token that came along. A driver without a check takes the
 * access token at its word until its first use.
 */
export async function checkImport(m: GrantMemory, a: ImportAttempt): Promise<ProvenTokens> {
  const { account, cfg, driver, t, imported } = a;
  const tokens = {
    refresh_token: t.refresh_token ?? null,
    access_token: t.access_token!,
    token_type: cfg.dpop ? 'DPoP' : 'Bearer',
    obtained_at: m.now(),
    expires_at: t.expires_at ?? null,
    scope: null,
  };
  if (!driver.checkAccessToken) return tokens;
  importBudget(m, account);
  const secrets = new Map([...(await m.secretsOf(account)), ...Object.entries(imported)]);
  try {
    await m.withTimeout((signal) => driver.checkAccessToken!(m.context({ account, config: cfg, signal, secrets }), t.access_token!));
    return tokens;
  } catch (err) {
    const de = asDriverError(err);
    if (de.kind === 'invalid_grant' && t.refresh_token) return proveImport(m, a);
    throw importFailure(m, account, de);
  }
}

/**
 * An import's proving refresh (rule 5 for an import): the imported refresh token, with the
 * client credentials that came with it, goes to the account's driver; the stored grant is
 * neither read for it nor touched, only marked (Store.markImport) so a crash meanwhile is
 * told. Counts against the account's refresh budget (rule 6), never against its health.
 */
export async function proveImport(
  m: GrantMemory,
  a: ImportAttempt,
): Promise<Omit<TokenUpdate, 'refresh_token'> & { refresh_token: string }> {
  const { account, cfg, driver, t, imported, boundTo } = a;
  if (!t.refresh_token) {
    throw E.importRefused(`the access token given for "${account}" has expired and no refresh token came with it; nothing was changed`, {
      account,
    });
  }
  importBudget(m, account);
  const secrets = new Map([...(await m.secretsOf(account)), ...Object.entries(imported)]);
  const startedAt = m.now();
  const at = new Date(startedAt).toISOString();
  await m.deps.store.markImport(account, startedAt, {
    boundTo,
    lastError: importInterruptedReason(at, false),
  });
  let set: TokenSet;
  try {
    set = await m.withTimeout((signal) =>
      driver.refresh({ ...m.context({ account, config: cfg, signal, secrets }), currentAccessToken: t.access_token }, t.refresh_token!, {}),
    );
  } catch (err) {
    await m.bestEffort(account, () => m.deps.store.endImport(account));
    throw importFailure(m, account, asDriverError(err));
  }
  return { ...updateFromSet(set, startedAt, undefined), refresh_token: set.refresh_token ?? t.refresh_token };
}

/** Rule 6's budget for an import's provider call, only: a refresh backing off after an outage does not stop the user's import. */
function importBudget(m: GrantMemory, account: string): void {
  const h = m.healthOf(account);
  const gate = { ...h, nextAttemptAt: 0 };
  admit(gate, account, m.now(), m.deps.config.settings);
  h.attempts = gate.attempts;
}

/** An import not proven: the provider's answer as the wire error (its error named, never a token); the account is unchanged. */
function importFailure(m: GrantMemory, account: string, de: DriverError): ApiError {
  m.deps.log.warn('an import was not proven; the account is unchanged', { account, kind: de.kind, error: de.message });
  if (de.kind === 'invalid_grant') {
    return E.importRefused(
      `the provider refused the tokens imported for "${account}" (${de.oauthError ?? 'refused'}: ${de.message}); nothing was changed`,
      { account },
    );
  }
  return wireErrorOf(de, { account, doing: 'prove the imported tokens (nothing was changed)' });
}
