import type { AccountConfig } from '../../protocol/api.js';

/** A token endpoint's answer, with spec field names (RFC 6749 §5.1). */
export interface TokenSet {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  id_token?: string;
}

/** What a driver step gets: the account, its secrets, and the limits of this attempt. */
export interface DriverContext {
  name: string;
  config: AccountConfig;
  clientSecret?: string;
  /** Aborts the request (timeout, shutdown). */
  signal: AbortSignal;
}

/**
 * How a provider call failed, in the three ways the broker treats differently
 * (DESIGN.md rule 6): `transient` retries with backoff, `invalid_grant` needs
 * recovery or a login, `config` is a mistake only the user can fix.
 */
export type DriverErrorKind = 'transient' | 'invalid_grant' | 'config';

export class DriverError extends Error {
  readonly kind: DriverErrorKind;
  /** The OAuth `error` code when the provider sent one. */
  readonly oauthError?: string;
  readonly status?: number;
  /** From `Retry-After` (RFC 9110 §10.2.3), in ms. */
  readonly retryAfterMs?: number;
  /** True when the request may have reached the provider and its answer was lost (timeout, reset). */
  readonly outcomeUnknown: boolean;
  constructor(
    kind: DriverErrorKind,
    message: string,
    opts: { oauthError?: string; status?: number; retryAfterMs?: number; outcomeUnknown?: boolean } = {},
  ) {
    super(message);
    this.name = 'DriverError';
    this.kind = kind;
    this.oauthError = opts.oauthError;
    this.status = opts.status;
    this.retryAfterMs = opts.retryAfterMs;
    this.outcomeUnknown = opts.outcomeUnknown ?? false;
  }
}

export interface RefreshOptions {
  scope?: string;
  /** Sent as `resource` (RFC 8707). */
  audience?: string;
}

/** One provider family. Every step either returns a TokenSet or throws a DriverError. */
export interface Driver {
  name: string;
  /** Exchange a refresh token for new tokens (RFC 6749 §6). */
  refresh(ctx: DriverContext, refreshToken: string, opts: RefreshOptions): Promise<TokenSet>;
  /** Obtain tokens without a refresh token (client credentials, RFC 6749 §4.4), where the account allows it. */
  obtainWithoutUser?(ctx: DriverContext, opts: RefreshOptions): Promise<TokenSet>;
  /** Revoke a token at the provider (RFC 7009); best effort. */
  revoke?(ctx: DriverContext, token: string, hint: 'refresh_token' | 'access_token'): Promise<void>;
}
