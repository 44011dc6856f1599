/**
 * The tokens an app hands over to start an account (`POST /v1/accounts/:name/import`), in
 * the forms apps hold them: the wire's snake_case, the camelCase of JavaScript code and of
 * Cal.com's platform (`accessTokenExpiresAt`), or a whole token object as an OAuth library
 * or a platform returned it. The SDK (`importTokens`) and the CLI (`tokend import
 * --tokens-stdin`) both turn them into the wire body here. No zod: the SDK imports this.
 */
import type { ImportRequest } from './api.js';

/** A token object as a platform or an OAuth library hands it over; either spelling of each field. */
export interface TokenObject {
  refresh_token?: string;
  refreshToken?: string;
  access_token?: string;
  accessToken?: string;
  /** When the access token expires: epoch milliseconds, an ISO time, or a Date. */
  expires_at?: number | string | Date;
  expiresAt?: number | string | Date;
  /** Cal.com's name for it (epoch milliseconds). */
  accessTokenExpiresAt?: number | string | Date;
  /** Seconds the access token stays valid, counted from this call (RFC 6749 §5.1 `expires_in`); `expires_at` wins when both are given. */
  expires_in?: number;
  expiresIn?: number;
  /** The client the refresh token was issued to, where the driver takes one (Real-Debrid's per-user client). */
  client_id?: string;
  clientId?: string;
  client_secret?: string;
  clientSecret?: string;
  /** A DPoP account's key: the private EC P-256 JWK the tokens are bound to (docs/dpop.md). */
  dpop_jwk?: Record<string, unknown>;
  dpopJwk?: Record<string, unknown>;
}

/** What `importTokens` takes: the fields themselves, and/or `tokens`, a whole token object (the fields given beside it win). */
export interface ImportTokens extends TokenObject {
  tokens?: TokenObject;
}

/** The first of `keys` set (neither undefined nor null) in `objects`, in order. */
function pick(objects: readonly Record<string, unknown>[], ...keys: string[]): unknown {
  for (const o of objects) for (const k of keys) if (o[k] !== undefined && o[k] !== null) return o[k];
  return undefined;
}

/**
 * The wire body of an import. Unknown fields are dropped; the daemon checks what is left
 * (a missing token, a client id without its secret) and says which field is wrong.
 */
export function importBody(t: ImportTokens, now = Date.now()): ImportRequest {
  const from = [t as Record<string, unknown>, (t.tokens ?? {}) as Record<string, unknown>];
  const expiresAt = pick(from, 'expires_at', 'expiresAt', 'accessTokenExpiresAt');
  const expiresIn = pick(from, 'expires_in', 'expiresIn');
  const body: Record<string, unknown> = {
    refresh_token: pick(from, 'refresh_token', 'refreshToken'),
    access_token: pick(from, 'access_token', 'accessToken'),
    expires_at:
      expiresAt instanceof Date
        ? expiresAt.getTime()
        : (expiresAt ?? (typeof expiresIn === 'number' ? now + Math.floor(expiresIn * 1000) : undefined)),
    client_id: pick(from, 'client_id', 'clientId'),
    client_secret: pick(from, 'client_secret', 'clientSecret'),
    // A DPoP account's key, the private JWK its tokens are bound to (RFC 9449; docs/dpop.md).
    dpop_jwk: pick(from, 'dpop_jwk', 'dpopJwk'),
  };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return body as ImportRequest;
}
