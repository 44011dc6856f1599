/**
 * Access tokens as the broker holds them in memory (rule 2, docs/architecture.md), their cache keys,
 * and the rule that says whether one still serves a request.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { TokenSet } from './drivers/driver.js';
import { jwtClaims } from './drivers/jwt-lifetime.js';
import type { StoredAccessToken, TokenUpdate } from './store/types.js';

/** A servable access token, held in memory. */
export interface CachedToken {
  account: string;
  access_token: string;
  token_type: string;
  /** epoch ms, or null when the provider said nothing about expiry. */
  expires_at: number | null;
  obtained_at: number;
  scope: string | null;
}

/**
 * Is `a` the token `b`? Compared by their SHA-256 digests with timingSafeEqual, so how long
 * the answer takes says nothing of how much of a token a caller guessed.
 */
export function sameToken(a: string, b: string): boolean {
  const digest = (t: string) => createHash('sha256').update(t, 'utf8').digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** The cache key of (account, scope, audience); the account name alone for the base token. */
export function cacheKey(account: string, scope?: string, audience?: string): string {
  if (!scope && !audience) return account;
  return `${account}\u0000${scope ?? ''}\u0000${audience ?? ''}`;
}

/** The (account, scope, audience) of a cache key; '' where absent. */
export function splitKey(key: string): [string, string, string] {
  const [a, s = '', au = ''] = key.split('\u0000');
  return [a, s, au];
}

export function accountOfKey(key: string): string {
  const i = key.indexOf('\u0000');
  return i < 0 ? key : key.slice(0, i);
}

/**
 * Rule 1 with one guard: a token can only satisfy `min_ttl` up to half its lifetime,
 * so a provider issuing 60 s tokens to a caller asking 120 s cannot cause a refresh
 * on every request.
 */
export function satisfies(tok: CachedToken, minTtlMs: number, now: number): boolean {
  if (tok.expires_at === null) return true;
  const lifetime = tok.expires_at - tok.obtained_at;
  const need = Math.min(minTtlMs, lifetime / 2);
  return tok.expires_at - now >= need && tok.expires_at > now;
}

/** What a provider's answer changes in the stored grant. */
export function updateFromSet(set: TokenSet, obtainedAt: number, requestedScope: string | undefined): TokenUpdate {
  return {
    access_token: set.access_token,
    token_type: set.token_type || 'Bearer',
    // RFC 6749 §5.1: expires_in is only RECOMMENDED; without it we cannot know, and
    // serve the token until a tool reports it refused. Some providers give the time itself.
    expires_at: typeof set.expires_in === 'number' ? obtainedAt + set.expires_in * 1000 : (set.expires_at ?? null),
    obtained_at: obtainedAt,
    scope: set.scope ?? requestedScope ?? null,
    refresh_token: set.refresh_token,
    ...refreshExpiry(set),
  };
}

/**
 * The refresh token's own expiry: what the provider said, else a JWT refresh token's `exp`
 * (Keycloak's are JWTs; its offline tokens carry none), else unknown (nothing to record).
 */
function refreshExpiry(set: TokenSet): { refresh_expires_at?: number } {
  if (set.refresh_expires_at !== undefined) return { refresh_expires_at: set.refresh_expires_at };
  const exp = set.refresh_token ? jwtExp(set.refresh_token) : undefined;
  return exp ? { refresh_expires_at: exp * 1000 } : {};
}

/** A JWT's `exp` (seconds), read without verifying: only to warn ahead, never to trust. */
export function jwtExp(token: string): number | undefined {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === 'number' && Number.isFinite(exp) && exp > 0 ? exp : undefined;
}

/** The base token a stored grant holds, if any. */
export function tokenFromGrant(g: StoredAccessToken): CachedToken | undefined {
  if (!g.access_token) return undefined;
  return {
    account: g.account,
    access_token: g.access_token,
    token_type: g.token_type ?? 'Bearer',
    expires_at: g.expires_at,
    obtained_at: g.obtained_at ?? g.updated_at,
    scope: g.scope,
  };
}
