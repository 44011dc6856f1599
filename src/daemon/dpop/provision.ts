/** An account's DPoP key made where it is first needed: an account written with `dpop`, a login, a provider call. */
import type { AccountConfig } from '../../protocol/api.js';
import type { Store } from '../store/types.js';
import { bindingKey } from '../grant-identity.js';
import { DPOP_KEY_SECRET, generateDpopKey, storedJkt } from './key.js';

/**
 * The account's secrets with its DPoP key: one is generated and stored (sealed, like every
 * secret) when a DPoP account has none yet (config.json edited by hand, a key dropped with
 * a move). `secrets` is the map read once for the attempt; it gets the key too. Stored only
 * where none is yet, and the stored one used: two daemons of a fleet making a key for the
 * same account at once end with one key, which the grant then names.
 */
export async function withDpopKey(
  store: Pick<Store, 'putSecretIfAbsent'>,
  account: string,
  cfg: AccountConfig,
  secrets: Map<string, string>,
): Promise<Map<string, string>> {
  if (!cfg.dpop || secrets.has(DPOP_KEY_SECRET)) return secrets;
  const key = await store.putSecretIfAbsent(account, DPOP_KEY_SECRET, await generateDpopKey());
  secrets.set(DPOP_KEY_SECRET, key);
  return secrets;
}

/** The binding of a grant obtained with `secrets`: a DPoP account's names the key its proofs were signed with (RFC 9449 §6). */
export function grantBinding(cfg: AccountConfig, secrets: Map<string, string>): string {
  return bindingKey(cfg, storedJkt(secrets.get(DPOP_KEY_SECRET)));
}
