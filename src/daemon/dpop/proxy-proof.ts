/**
 * The proxy's part of DPoP (RFC 9449 §7): the Authorization scheme and a fresh proof for each
 * upstream request of a DPoP account, and the resource server's nonce (§9) remembered per host.
 * Called from the proxy lane where it sets the upstream Authorization header.
 */
import { authScheme } from '../../protocol/helpers/auth-scheme.js';
import type { CachedToken } from '../broker.js';
import type { DpopProofs } from './proofs.js';

/**
 * The header pairs that carry the token upstream: `Authorization: Bearer …`, or for a DPoP
 * account `Authorization: DPoP …` and `DPoP: <proof>` (§7.1) with `htm`, `htu` (no query or
 * fragment, §4.2), `ath` and the host's last nonce.
 */
export function upstreamAuthorization(
  dpop: DpopProofs | undefined,
  account: string,
  method: string,
  url: URL,
  token: CachedToken,
): string[] | Promise<string[]> {
  // A Bearer account's pair at once: the proxy's hot path awaits nothing for it.
  if (!dpop?.uses(account) || token.token_type !== 'DPoP')
    return ['Authorization', `${authScheme(token.token_type)} ${token.access_token}`];
  const proof = dpop.proofForUrl(account, method, url, token.access_token);
  return typeof proof === 'string' ? dpopPairs(token, proof) : proof.then((p) => dpopPairs(token, p));
}

function dpopPairs(token: CachedToken, proof: string): string[] {
  return ['Authorization', `DPoP ${token.access_token}`, 'DPoP', proof];
}

/**
 * Note a `DPoP-Nonce` the API answered with (any status, §9), and say whether this answer is
 * the 401 that asks for one (`WWW-Authenticate: DPoP error="use_dpop_nonce"`, §9): the request
 * goes again, once, with the same token and a proof carrying the nonce. Not a stale token.
 */
export function nonceChallenge(dpop: DpopProofs | undefined, account: string, url: URL, status: number, rawHeaders: Buffer[]): boolean {
  if (!dpop?.uses(account)) return false;
  let nonce = '';
  let challenges = '';
  for (let i = 0; i < rawHeaders.length; i += 2) {
    // Per answer: only names of the two lengths are read as strings.
    const length = rawHeaders[i].length;
    if (length !== 10 && length !== 16) continue;
    const name = rawHeaders[i].toString('latin1').toLowerCase();
    if (name === 'dpop-nonce') nonce = rawHeaders[i + 1].toString('latin1');
    else if (name === 'www-authenticate') challenges += `${challenges ? ', ' : ''}${rawHeaders[i + 1].toString('latin1')}`;
  }
  if (!nonce) return false;
  dpop.rememberNonce(url.host, nonce);
  return status === 401 && /\bDPoP\b[\s\S]*\berror="?use_dpop_nonce"?/i.test(challenges);
}
