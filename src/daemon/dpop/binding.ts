/**
 * A DPoP grant and the key it names (RFC 9449 §6): its tokens are bound to that key's
 * thumbprint, so they go out only with proofs by that key. A key replaced or gone (a secret
 * deleted or replaced, config.json edited by hand, a fleet's daemon with another key) leaves
 * the grant unusable: it is refused here, before anything is sent, and kept until a login
 * replaces it.
 */
import { E, type ApiError } from '../errors.js';
import { boundJkt } from '../grant-identity.js';

/**
 * The refusal when the grant bound as `bound` names another key than the account's (`held`,
 * undefined when it has none); undefined when they agree, or the binding names no key (written
 * before keys were named: bound to the account's current key). Thumbprints are public.
 */
export function dpopKeyMismatch(account: string, bound: string | null | undefined, held: string | undefined): ApiError | undefined {
  const named = boundJkt(bound);
  if (named === undefined || named === held) return undefined;
  const now = held === undefined ? 'the account holds no key now' : `the account's key is now ${held}`;
  return E.reauthRequired(
    `account "${account}" holds a grant bound to the DPoP key ${named}, but ${now}: its tokens are not sent with another key. ` +
      `Log in again with \`tokend login ${account}\` (the grant stays until a login replaces it)`,
    { account },
  );
}
