/**
 * How long an access token that is a JWT lives, read from its own claims (RFC 7519 §4.1.4
 * `exp`, §4.1.6 `iat`), for providers whose token answer says nothing about expiry (AMP).
 * The signature is not checked: tokend only schedules its next refresh by it, and never
 * trusts a claim for anything else.
 */
import type { TokenSet } from './driver.js';

/**
 * `expires_in` when the token carries both `iat` and `exp` (the issuer's own lifetime, which
 * our clock's skew cannot distort), `expires_at` when it carries only `exp`, nothing when it
 * is no JWT or has no `exp` (then the token serves until an API refuses it).
 */
export function jwtLifetime(token: string): Pick<TokenSet, 'expires_in' | 'expires_at'> {
  const claims = jwtClaims(token);
  const exp = claims?.exp;
  if (typeof exp !== 'number' || !Number.isFinite(exp) || exp <= 0) return {};
  const iat = claims?.iat;
  if (typeof iat === 'number' && Number.isFinite(iat) && exp > iat) return { expires_in: exp - iat };
  return { expires_at: exp * 1000 };
}

/** A JWT's claims, decoded without verifying (only for scheduling and warnings), or undefined. */
export function jwtClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as unknown;
    return payload && typeof payload === 'object' && !Array.isArray(payload) ? (payload as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
