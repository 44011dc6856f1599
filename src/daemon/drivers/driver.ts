import type { AccountConfig } from '../../protocol/api.js';

/** A token endpoint's answer, with spec field names (RFC 6749 §5.1). */
export interface TokenSet {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  id_token?: string;
  /** Absolute expiry of the access token (epoch ms), where a provider says it so (Cal.com's `accessTokenExpiresAt`). */
  expires_at?: number;
  /**
   * When the refresh token itself stops working (epoch ms), where the provider says so:
   * `refresh_token_expires_in` (GitHub), Cal.com's `refreshTokenExpiresAt`, a JWT's `exp`.
   */
  refresh_expires_at?: number;
  /**
   * Secrets the provider handed over with this grant that later steps need (Real-Debrid's
   * per-user client id and secret): stored encrypted with the account, never shown.
   */
  secrets?: Record<string, string>;
}

/** What a driver step gets: the account, its secrets, and the limits of this attempt. */
export interface DriverContext {
  name: string;
  config: AccountConfig;
  clientSecret?: string;
  /** Another stored secret of the account: `password`, or what a login stored (TokenSet.secrets). */
  secret(name: string): string | undefined;
  /** The access token held now, for providers that refresh by presenting it (AMP). */
  currentAccessToken?: string;
  /** Aborts the request (timeout, shutdown). */
  signal: AbortSignal;
}

/**
 * How a provider call failed, in the three ways the broker treats differently
 * (rule 6, docs/architecture.md): `transient` retries with backoff, `invalid_grant` needs
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

/** A device authorization response (RFC 8628 §3.2). `device_code` is a secret: memory only. */
export interface DeviceAuthorization {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete?: string;
  /** Seconds until the codes expire. */
  expires_in: number;
  /** Seconds between polls, when the server says (default 5, §3.2). */
  interval?: number;
}

/**
 * One poll of the token endpoint with a device code (RFC 8628 §3.4, §3.5): tokens, or
 * "not yet" (`authorization_pending`), or "not so fast" (`slow_down`, with the server's new
 * interval when it sends one, as GitHub does). Every other answer is a DriverError.
 */
export type DevicePoll = { status: 'tokens'; tokens: TokenSet } | { status: 'pending' } | { status: 'slow_down'; interval?: number };

/** What an authorization request (RFC 6749 §4.1.1) carries besides the account's config. */
export interface AuthorizationParams {
  /** The loopback redirect, `http://127.0.0.1:PORT/callback` (RFC 8252 §7.3). */
  redirect_uri: string;
  state: string;
  /** RFC 7636 §4.2 S256 challenge of the verifier. */
  code_challenge: string;
}

/** What the code exchange (RFC 6749 §4.1.3) must check and send. */
export interface CodeExchangeParams {
  redirect_uri: string;
  /** The state we sent; the callback's must equal it (RFC 6749 §10.12). */
  state: string;
  code_verifier: string;
}

/** One provider family. Every step either returns a TokenSet or throws a DriverError. */
export interface Driver {
  name: string;
  /**
   * Statuses an API answers when the access token is no longer good, besides 401 (the
   * proxy refreshes once and retries on them): Cal.com answers 498 for an expired token.
   */
  staleStatuses?: readonly number[];
  /** Exchange a refresh token for new tokens (RFC 6749 §6). */
  refresh(ctx: DriverContext, refreshToken: string, opts: RefreshOptions): Promise<TokenSet>;
  /**
   * A config mistake only this driver knows of (a field it needs), as a message naming the
   * option that fixes it; undefined when the config is fine.
   */
  validate?(cfg: AccountConfig): string | undefined;
  /**
   * The recover step (rule 6, docs/architecture.md): a new grant without a refresh token and without
   * the user, where the account allows it (`canRecover`): client credentials (RFC 6749
   * §4.4), the password grant with the stored password (§4.3), Cal.com's force-refresh,
   * AMP's obtain_token. The broker uses it when there is no refresh token, and when a
   * refresh is refused (`invalid_grant`) before asking the user to log in again.
   */
  recover?(ctx: DriverContext, opts: RefreshOptions): Promise<TokenSet>;
  /** Can `recover` work for this account (its flow, its stored secrets)? */
  canRecover?(ctx: DriverContext): boolean;
  /**
   * May `tokend add` obtain the account's first grant with `recover` (default true)? Not
   * where the recover step reaches beyond this account: Cal.com's force-refresh ends every
   * token the platform holds for the managed user, so it waits until tokend has no other way.
   */
  recoverOnAdd?: boolean;
  /**
   * The command that gives an account of this driver a grant again, for `reauth_required`
   * messages, where it is not `tokend login NAME` (AMP: set the password; Cal.com: import).
   */
  reauthHint?(account: string): string;
  /**
   * What can be checked of an account before anyone logs in (`tokend add`): discovery,
   * the endpoints its flow needs. Throws a DriverError for what cannot work; returns notes
   * for what may not (e.g. no interactive login is possible).
   */
  check?(ctx: DriverContext, opts?: { adding?: boolean }): Promise<string[]>;
  /**
   * The secrets an import's client credentials become (`tokend import --tokens-stdin` with
   * `client_id` and `client_secret`): Real-Debrid's per-user client, which alone refreshes
   * the tokens it issued. A driver without it takes no client credentials with an import.
   */
  importSecrets?(client: { client_id: string; client_secret: string }): Record<string, string>;
  /**
   * Is this access token one the provider takes for the account (an import that came with a
   * still-valid access token is proven with it, spending nothing)? Resolves when it is;
   * throws `invalid_grant` when the provider refuses it. Without it, such a token is taken at
   * its word until its first use.
   */
  checkAccessToken?(ctx: DriverContext, accessToken: string): Promise<void>;
  /** Revoke a token at the provider (RFC 7009); best effort. */
  revoke?(ctx: DriverContext, token: string, hint: 'refresh_token' | 'access_token'): Promise<void>;
  /** Start a device login (RFC 8628 §3.1). */
  startDeviceLogin?(ctx: DriverContext): Promise<DeviceAuthorization>;
  /** Poll the token endpoint once for a device code (RFC 8628 §3.4). */
  pollDeviceLogin?(ctx: DriverContext, deviceCode: string): Promise<DevicePoll>;
  /** The authorization URL of a browser login (RFC 6749 §4.1.1, RFC 7636 §4.3). */
  authorizationUrl?(ctx: DriverContext, params: AuthorizationParams): Promise<string>;
  /** Check a browser login's callback (state, iss, error) and exchange its code (RFC 6749 §4.1.2–4.1.3, RFC 9207). */
  exchangeCode?(ctx: DriverContext, callback: URL, params: CodeExchangeParams): Promise<TokenSet>;
}
