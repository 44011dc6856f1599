/**
 * The standard OAuth 2.0 / OpenID Connect driver, on panva's oauth4webapi: every network
 * step is a request/process pair, and every failure goes through `toDriverError`.
 */
import * as oauth from 'oauth4webapi';
import type { ClientAuthMethod } from '../../protocol/api.js';
import {
  DriverError,
  type AuthorizationParams,
  type CodeExchangeParams,
  type DeviceAuthorization,
  type DevicePoll,
  type Driver,
  type DriverContext,
  type RefreshOptions,
  type TokenSet,
} from './driver.js';
import { checkTransport, isRetryableStatus, placeOf, retryableFailure, scrub, transportFailure } from './http-failure.js';
import { exchangeFetch, outboundFetch, type OutboundConfig } from '../outbound.js';
import { DPOP_KEY_SECRET, loadDpopKey, type DpopKey } from '../dpop/key.js';

// Moved to http-failure.ts (every driver parses Retry-After); still importable from here.
export { parseRetryAfter } from './http-failure.js';

export interface OAuth2DriverOptions {
  /** The fetch every request goes through (tests, proxies). Default: the global fetch. */
  fetch?: typeof fetch;
  /** How long discovered metadata is reused, in ms. Default 24 h. */
  discoveryTtlMs?: number;
  /** The clock for the discovery cache (tests). */
  now?: () => number;
}

/** The oauth2 driver, plus what login flows built on it need. */
export interface OAuth2Driver extends Driver {
  readonly name: 'oauth2';
  refresh(ctx: DriverContext, refreshToken: string, opts: RefreshOptions): Promise<TokenSet>;
  recover(ctx: DriverContext, opts: RefreshOptions): Promise<TokenSet>;
  canRecover(ctx: DriverContext): boolean;
  revoke(ctx: DriverContext, token: string, hint: 'refresh_token' | 'access_token'): Promise<void>;
  /** The account's authorization server metadata: discovered (cached per issuer) and/or from explicit endpoints. */
  metadata(ctx: DriverContext): Promise<oauth.AuthorizationServer>;
  startDeviceLogin(ctx: DriverContext): Promise<DeviceAuthorization>;
  pollDeviceLogin(ctx: DriverContext, deviceCode: string): Promise<DevicePoll>;
  authorizationUrl(ctx: DriverContext, params: AuthorizationParams): Promise<string>;
  exchangeCode(ctx: DriverContext, callback: URL, params: CodeExchangeParams): Promise<TokenSet>;
}

/** Which server endpoint a step talks to; names it in messages. */
export type Endpoint = 'token' | 'revocation' | 'discovery' | 'device_authorization' | 'authorization';

/** What `toDriverError` needs besides the error: the endpoint, and values that must never appear in a message. */
export interface StepInfo {
  endpoint: Endpoint;
  url?: string;
  secrets?: readonly (string | undefined)[];
  /** The step's signal: once aborted, any failure counts as an abort. */
  signal?: AbortSignal;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** Metadata we built ourselves (no issuer to discover): its `issuer` is a guess. */
const synthetic = new WeakSet<oauth.AuthorizationServer>();

// Every asymmetric JWS algorithm oauth4webapi knows. With synthetic metadata there is no
// `id_token_signing_alg_values_supported`, and oauth4webapi would insist on RS256.
const ANY_ID_TOKEN_ALG = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'Ed25519', 'EdDSA'];

/** Creates an oauth2 driver with its own discovery cache. */
export function createOAuth2Driver(opts: OAuth2DriverOptions = {}): OAuth2Driver {
  const now = opts.now ?? Date.now;
  const ttl = opts.discoveryTtlMs ?? DAY_MS;
  const customFetch = opts.fetch;
  /** issuer → discovered metadata. Only successes are stored, so a failed discovery is retried next time. */
  const discovered = new Map<string, { as: oauth.AuthorizationServer; until: number }>();
  /**
   * The stored key → its loaded form and oauth4webapi's handle, which remembers each server's
   * last DPoP-Nonce (RFC 9449 §8) for the next request. Bounded: a daemon of many DPoP
   * accounts keeps the recently used ones.
   */
  const dpopHandles = new Map<string, { key: DpopKey; handle: oauth.DPoPHandle }>();

  /** The account's DPoP handle when the account is a DPoP one (RFC 9449 §5), else undefined. */
  async function dpopOf(ctx: DriverContext): Promise<{ key: DpopKey; handle: oauth.DPoPHandle } | undefined> {
    if (!ctx.config.dpop) return undefined;
    const secret = ctx.secret(DPOP_KEY_SECRET);
    if (!secret)
      throw new DriverError('config', `account "${ctx.name}" uses DPoP but holds no DPoP key (turn --dpop off and on again for a new one)`);
    let hit = dpopHandles.get(secret);
    if (!hit) {
      let key: DpopKey;
      try {
        key = await loadDpopKey(secret);
      } catch (err) {
        throw new DriverError('config', `account "${ctx.name}": ${(err as Error).message}`);
      }
      hit = { key, handle: oauth.DPoP({}, key.pair) };
      if (dpopHandles.size >= 1000) dpopHandles.delete(dpopHandles.keys().next().value!);
      dpopHandles.set(secret, hit);
    }
    return hit;
  }

  /**
   * The transport of one request: its signal, plain http only to loopback, and the account's
   * way out (proxy, CA); the token endpoint's exchanges through the lighter `exchangeFetch`.
   */
  function httpOptions(url: string, signal: AbortSignal, cfg: OutboundConfig, exchange = false) {
    return transportOptions(url, signal, customFetch ?? (exchange ? exchangeFetch(cfg) : outboundFetch(cfg)));
  }

  /** OIDC Discovery 1.0 §4, then RFC 8414 §3; either way the answer's `issuer` must equal ours (RFC 8414 §3.3). */
  async function discover(issuer: string, signal: AbortSignal, cfg: OutboundConfig): Promise<oauth.AuthorizationServer> {
    const hit = discovered.get(issuer);
    if (hit && hit.until > now()) return hit.as;
    httpOptions(issuer, signal, cfg); // refuses plain http to a non-loopback issuer up front
    const issuerUrl = new URL(issuer);
    const reasons: string[] = [];
    for (const algorithm of ['oidc', 'oauth2'] as const) {
      const step: StepInfo = { endpoint: 'discovery', url: wellKnownUrl(issuerUrl, algorithm), signal };
      try {
        const as = await exchange(
          step,
          () => oauth.discoveryRequest(issuerUrl, { algorithm, ...httpOptions(issuer, signal, cfg) }),
          (res) => oauth.processDiscoveryResponse(issuerUrl, res),
        );
        discovered.set(issuer, { as, until: now() + ttl });
        return as;
      } catch (err) {
        // A server that is down or unreachable is down for both paths: retry later.
        if (!(err instanceof DriverError) || err.kind === 'transient') throw err;
        reasons.push(`${algorithm === 'oidc' ? 'OpenID Connect discovery' : 'RFC 8414'}: ${err.message}`);
      }
    }
    throw new DriverError('config', `no usable authorization server metadata for issuer ${issuer} (${reasons.join('; ')})`);
  }

  async function metadata(ctx: DriverContext): Promise<oauth.AuthorizationServer> {
    const c = ctx.config;
    let as: oauth.AuthorizationServer;
    if (c.issuer) {
      as = await discover(c.issuer, ctx.signal, c);
    } else {
      if (!c.token_endpoint) {
        throw new DriverError('config', `account "${ctx.name}" needs an issuer or a token_endpoint`);
      }
      // No issuer: nothing to discover or compare against, so name the token endpoint's origin.
      as = { issuer: new URL(c.token_endpoint).origin, id_token_signing_alg_values_supported: ANY_ID_TOKEN_ALG };
    }
    // Explicit endpoints in the account win over discovery.
    const explicit = {
      ...(c.token_endpoint ? { token_endpoint: c.token_endpoint } : {}),
      ...(c.revocation_endpoint ? { revocation_endpoint: c.revocation_endpoint } : {}),
      ...(c.authorization_endpoint ? { authorization_endpoint: c.authorization_endpoint } : {}),
      ...(c.device_authorization_endpoint ? { device_authorization_endpoint: c.device_authorization_endpoint } : {}),
    };
    const merged: oauth.AuthorizationServer = { ...as, ...explicit };
    if (!c.issuer) synthetic.add(merged);
    return merged;
  }

  /** POST to the token endpoint and validate the answer into a TokenSet (RFC 6749 §5.1). */
  async function tokenStep(
    ctx: DriverContext,
    secrets: readonly (string | undefined)[],
    send: (as: oauth.AuthorizationServer, client: oauth.Client, auth: oauth.ClientAuth, http: HttpOptions) => Promise<Response>,
    process: (as: oauth.AuthorizationServer, client: oauth.Client, res: Response) => Promise<oauth.TokenEndpointResponse>,
  ): Promise<TokenSet> {
    const as = await metadata(ctx);
    const url = endpointOf(as, 'token_endpoint', ctx.name);
    const client = clientOf(ctx);
    const auth = clientAuthFor(ctx, as);
    const step: StepInfo = { endpoint: 'token', url, secrets: [...secrets, ctx.clientSecret], signal: ctx.signal };
    const dpop = await dpopOf(ctx);
    const attempt = () =>
      exchange(
        step,
        () => send(as, client, auth, { ...httpOptions(url, ctx.signal, ctx.config, true), ...(dpop ? { DPoP: dpop.handle } : {}) }),
        (res) => processTokenResponse(as, client, res, process),
      );
    let body: oauth.TokenEndpointResponse;
    try {
      body = await attempt();
    } catch (err) {
      // RFC 9449 §8: `use_dpop_nonce` with a DPoP-Nonce header, which the handle remembered
      // for this server: one retry with it. The refused request spent nothing (§8: the
      // server rejects it before looking at the grant).
      if (!(dpop && err instanceof DriverError && err.oauthError === 'use_dpop_nonce')) throw err;
      body = await attempt();
    }
    return toTokenSet(body);
  }

  return {
    name: 'oauth2',
    metadata,

    // Discovery (or the explicit endpoints), and the endpoints the account's flow needs.
    validate(cfg) {
      if (!cfg.client_id) return 'client_id: the oauth2 driver needs a client id (--client-id)';
      if (!cfg.issuer && !cfg.token_endpoint) return 'issuer: give an issuer (for discovery) or a token_endpoint';
      if (cfg.flow === 'password' && !cfg.username)
        return 'username: the password flow needs --username (and the password on stdin with --password-stdin)';
      return undefined;
    },

    async check(ctx, opts) {
      const as = await metadata(ctx);
      endpointOf(as, 'token_endpoint', ctx.name);
      const flow = ctx.config.flow;
      if (flow === 'device') endpointOf(as, 'device_authorization_endpoint', ctx.name);
      if (flow === 'browser') endpointOf(as, 'authorization_endpoint', ctx.name);
      const notes: string[] = [];
      const dpopAlgs = as.dpop_signing_alg_values_supported;
      if (Array.isArray(dpopAlgs) && dpopAlgs.length) {
        // RFC 9449 §5.1: the server advertises DPoP; say so when an account is added, and whether our ES256 keys fit.
        if (!ctx.config.dpop) {
          if (opts?.adding)
            notes.push(`the provider supports DPoP-bound tokens (${dpopAlgs.join(', ')}): --dpop turns them on for this account`);
        } else if (!dpopAlgs.includes('ES256'))
          notes.push(`the provider advertises DPoP with ${dpopAlgs.join(', ')}, not ES256, the algorithm of tokend's keys`);
      } else if (ctx.config.dpop) {
        notes.push("the provider's metadata does not advertise DPoP (dpop_signing_alg_values_supported); its tokens may not be bound");
      }
      if (!flow && !as.device_authorization_endpoint && !as.authorization_endpoint) {
        notes.push(
          'the provider names neither a device authorization nor an authorization endpoint: no interactive login is possible (import a refresh token, or set --device-endpoint / --authorization-endpoint)',
        );
      }
      return notes;
    },

    // RFC 6749 §6; `scope` narrows (§6: no scope beyond the original grant), `resource` is RFC 8707 §2.
    async refresh(ctx, refreshToken, o) {
      const additionalParameters = extraParameters(o.scope, o.audience ?? ctx.config.audience);
      return tokenStep(
        ctx,
        [refreshToken],
        (as, client, auth, http) => oauth.refreshTokenGrantRequest(as, client, auth, refreshToken, { additionalParameters, ...http }),
        oauth.processRefreshTokenResponse,
      );
    },

    // A grant without the user: client credentials (RFC 6749 §4.4: the client acts on its
    // own behalf; no refresh token is expected, §4.4.3), or the password grant with the
    // stored password (§4.3; Keycloak's direct access grants, oidc-agent).
    canRecover(ctx) {
      if (ctx.config.flow === 'client-credentials') return true;
      return ctx.config.flow === 'password' && Boolean(ctx.config.username && ctx.secret('password'));
    },

    async recover(ctx, o) {
      const scope = o.scope ?? (ctx.config.scopes.length ? ctx.config.scopes.join(' ') : undefined);
      const parameters = extraParameters(scope, o.audience ?? ctx.config.audience);
      if (ctx.config.flow === 'password') {
        const password = ctx.secret('password');
        if (!ctx.config.username || !password) {
          throw new DriverError(
            'config',
            `account "${ctx.name}" uses the password flow but has no username or password (set them with --username and --password-stdin)`,
          );
        }
        const params = new URLSearchParams({ ...parameters, username: ctx.config.username, password });
        return tokenStep(
          ctx,
          [password],
          (as, client, auth, http) => oauth.genericTokenEndpointRequest(as, client, auth, 'password', params, http),
          oauth.processGenericTokenEndpointResponse,
        );
      }
      return tokenStep(
        ctx,
        [],
        (as, client, auth, http) => oauth.clientCredentialsGrantRequest(as, client, auth, parameters, http),
        oauth.processClientCredentialsResponse,
      );
    },

    // RFC 8628 §3.1: client_id (or client authentication) and scope; `resource` is RFC 8707 §2.
    async startDeviceLogin(ctx) {
      const as = await metadata(ctx);
      const url = endpointOf(as, 'device_authorization_endpoint', ctx.name);
      const client = clientOf(ctx);
      const auth = clientAuthFor(ctx, as);
      const parameters = extraParameters(accountScope(ctx), ctx.config.audience);
      return exchange(
        { endpoint: 'device_authorization', url, secrets: [ctx.clientSecret], signal: ctx.signal },
        () => oauth.deviceAuthorizationRequest(as, client, auth, parameters, httpOptions(url, ctx.signal, ctx.config)),
        async (res): Promise<DeviceAuthorization> => {
          const r = await oauth.processDeviceAuthorizationResponse(as, client, res);
          return {
            device_code: r.device_code,
            user_code: r.user_code,
            verification_uri: r.verification_uri,
            ...(typeof r.verification_uri_complete === 'string' ? { verification_uri_complete: r.verification_uri_complete } : {}),
            expires_in: r.expires_in,
            // §3.2: interval is optional (the caller then uses 5); oauth4webapi checked it is positive.
            ...(r.interval !== undefined ? { interval: r.interval } : {}),
          };
        },
      );
    },

    // RFC 8628 §3.4; §3.5: authorization_pending and slow_down are answers, not failures.
    async pollDeviceLogin(ctx, deviceCode) {
      let slowDownInterval: number | undefined;
      const process = async (as: oauth.AuthorizationServer, client: oauth.Client, res: Response) => {
        try {
          return await oauth.processDeviceCodeResponse(as, client, res);
        } catch (err) {
          // GitHub's slow_down carries the new interval; RFC 8628 only says "+5 s".
          if (err instanceof oauth.ResponseBodyError && err.error === 'slow_down') {
            const i = err.cause.interval;
            if (typeof i === 'number' && Number.isFinite(i) && i > 0) slowDownInterval = i;
          }
          throw err;
        }
      };
      try {
        const tokens = await tokenStep(
          ctx,
          [deviceCode],
          (as, client, auth, http) => oauth.deviceCodeGrantRequest(as, client, auth, deviceCode, http),
          process,
        );
        return { status: 'tokens', tokens };
      } catch (err) {
        if (err instanceof DriverError && err.oauthError === 'authorization_pending') return { status: 'pending' };
        if (err instanceof DriverError && err.oauthError === 'slow_down') {
          return slowDownInterval === undefined ? { status: 'slow_down' } : { status: 'slow_down', interval: slowDownInterval };
        }
        throw err;
      }
    },

    // RFC 6749 §4.1.1 with RFC 7636 §4.3 (S256 only: §4.2 "MUST use S256" when able).
    async authorizationUrl(ctx, p) {
      const as = await metadata(ctx);
      const endpoint = endpointOf(as, 'authorization_endpoint', ctx.name);
      transportOptions(endpoint, ctx.signal); // refuses plain http to a non-loopback host
      const url = new URL(endpoint);
      const scope = accountScope(ctx);
      const q = url.searchParams;
      q.set('response_type', 'code');
      q.set('client_id', clientOf(ctx).client_id);
      q.set('redirect_uri', p.redirect_uri);
      if (scope) q.set('scope', scope);
      q.set('state', p.state);
      q.set('code_challenge', p.code_challenge);
      q.set('code_challenge_method', 'S256');
      if (ctx.config.audience) q.set('resource', ctx.config.audience); // RFC 8707 §2.1
      // RFC 9449 §10: binds the code to the account's key, so only its holder can redeem it.
      const dpop = await dpopOf(ctx);
      if (dpop) q.set('dpop_jkt', dpop.key.jkt);
      // OIDC Core §11: offline_access is ignored unless prompt=consent (oidc-provider drops it,
      // OIDC Core §11); Keycloak issues its offline token either way.
      if (scope?.split(' ').includes('offline_access')) q.set('prompt', 'consent');
      return url.href;
    },

    // RFC 6749 §4.1.2 (state, error), RFC 9207 §2.4 (iss), then §4.1.3 with the PKCE verifier (RFC 7636 §4.5).
    async exchangeCode(ctx, callback, p) {
      const as = await metadata(ctx);
      const client = clientOf(ctx);
      const input = new URLSearchParams(callback.searchParams);
      // Without a configured issuer the metadata's issuer is a guess: an `iss` cannot be compared.
      if (synthetic.has(as)) input.delete('iss');
      let params: URLSearchParams;
      try {
        params = oauth.validateAuthResponse(as, client, input, p.state);
      } catch (err) {
        toDriverError(err, undefined, {
          endpoint: 'authorization',
          url: typeof as.authorization_endpoint === 'string' ? as.authorization_endpoint : undefined,
          secrets: [input.get('code') ?? undefined, p.code_verifier],
        });
      }
      const additionalParameters = extraParameters(undefined, ctx.config.audience);
      return tokenStep(
        ctx,
        [params.get('code') ?? undefined, p.code_verifier],
        (as, client, auth, http) =>
          oauth.authorizationCodeGrantRequest(as, client, auth, params, p.redirect_uri, p.code_verifier, { additionalParameters, ...http }),
        oauth.processAuthorizationCodeResponse,
      );
    },

    // RFC 7009 §2.1 with `token_type_hint`; 200 means revoked or already invalid (§2.2).
    async revoke(ctx, token, hint) {
      const as = await metadata(ctx);
      if (!as.revocation_endpoint) return;
      const url = endpointOf(as, 'revocation_endpoint', ctx.name);
      const client = clientOf(ctx);
      const auth = clientAuthFor(ctx, as);
      await exchange(
        { endpoint: 'revocation', url, secrets: [token, ctx.clientSecret], signal: ctx.signal },
        () =>
          oauth.revocationRequest(as, client, auth, token, {
            additionalParameters: { token_type_hint: hint },
            ...httpOptions(url, ctx.signal, ctx.config),
          }),
        (res) => oauth.processRevocationResponse(res),
      );
    },
  };
}

/**
 * One network step: send, refuse 5xx/429 before oauth4webapi sees them (it would call them
 * protocol errors), process, and translate any failure in one place.
 */
async function exchange<T>(step: StepInfo, send: () => Promise<Response>, process: (res: Response) => Promise<T>): Promise<T> {
  let response: Response | undefined;
  try {
    response = await send();
    if (isRetryableStatus(response.status)) toDriverError(undefined, response, step);
    return await process(response);
  } catch (err) {
    return toDriverError(err, response, step);
  }
}

/**
 * Validates a token response. oauth4webapi also validates an id_token in it (OIDC Core §12.2),
 * which tokend never reads; two of those checks must not cost us a working grant:
 * - without a configured issuer, the `iss` cannot be compared with a discovered one (§3.1.3.7
 *   step 2), so we take the one the id_token names: it came over the connection we opened to
 *   the token endpoint (§3.1.3.7 step 6);
 * - `exp`/`nbf` fail when our clock is off; we then measure the server's clock by the id_token's
 *   `iat` and check again with that skew.
 * Each adjustment validates a fresh copy of the same response; a second failure stands.
 */
async function processTokenResponse(
  as: oauth.AuthorizationServer,
  client: oauth.Client,
  res: Response,
  process: (as: oauth.AuthorizationServer, client: oauth.Client, res: Response) => Promise<oauth.TokenEndpointResponse>,
): Promise<oauth.TokenEndpointResponse> {
  if (res.status !== 200) return process(as, client, res);
  let current = res;
  for (let attempt = 0; ; attempt++) {
    const spare = attempt < 2 ? current.clone() : undefined;
    try {
      const body = await process(as, client, current);
      void spare?.body?.cancel().catch(() => {});
      return body;
    } catch (err) {
      const adjusted = spare && idTokenAdjustment(err, as, client, synthetic.has(as));
      if (!adjusted) {
        void spare?.body?.cancel().catch(() => {});
        throw err;
      }
      [as, client] = adjusted;
      current = spare;
    }
  }
}

function idTokenAdjustment(
  err: unknown,
  as: oauth.AuthorizationServer,
  client: oauth.Client,
  issuerUnknown: boolean,
): [oauth.AuthorizationServer, oauth.Client] | undefined {
  if (!(err instanceof oauth.OperationProcessingError)) return undefined;
  const cause = err.cause as { claim?: unknown; claims?: { iss?: unknown; iat?: unknown } } | undefined;
  if (err.code === oauth.JWT_CLAIM_COMPARISON && cause?.claim === 'iss' && issuerUnknown && typeof cause.claims?.iss === 'string') {
    return [{ ...as, issuer: cause.claims.iss }, client];
  }
  if (err.code === oauth.JWT_TIMESTAMP_CHECK && typeof cause?.claims?.iat === 'number' && client[oauth.clockSkew] === undefined) {
    return [as, { ...client, [oauth.clockSkew]: cause.claims.iat - Math.floor(Date.now() / 1000) }];
  }
  return undefined;
}

function extraParameters(scope: string | undefined, audience: string | undefined): Record<string, string> {
  const p: Record<string, string> = {};
  if (scope) p.scope = scope;
  if (audience) p.resource = audience; // RFC 8707 §2: the target service, an absolute URI
  return p;
}

function toTokenSet(body: oauth.TokenEndpointResponse): TokenSet {
  return {
    access_token: body.access_token,
    // oauth4webapi lowercases token_type; some resource servers only accept the RFC 6750 §1.1 / RFC 9449 §7.1 spelling.
    token_type: body.token_type === 'bearer' ? 'Bearer' : body.token_type === 'dpop' ? 'DPoP' : body.token_type,
    ...(body.expires_in !== undefined ? { expires_in: body.expires_in } : {}),
    // RFC 6749 §6: a refresh response MAY carry a new refresh token; absent means keep the old one.
    ...(body.refresh_token ? { refresh_token: body.refresh_token } : {}),
    ...(body.scope !== undefined ? { scope: body.scope } : {}),
    ...(body.id_token ? { id_token: body.id_token } : {}),
    // Not in RFC 6749, but GitHub (and others) say how long the refresh token lives.
    ...(typeof body.refresh_token_expires_in === 'number' ? { refresh_expires_at: Date.now() + body.refresh_token_expires_in * 1000 } : {}),
  };
}

/** Where discoveryRequest looks, for messages: OIDC appends, RFC 8414 §3.1 inserts after the host. */
function wellKnownUrl(issuer: URL, algorithm: 'oidc' | 'oauth2'): string {
  const u = new URL(issuer.href);
  const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '');
  u.pathname = algorithm === 'oidc' ? `${path}/.well-known/openid-configuration` : `/.well-known/oauth-authorization-server${path}`;
  return u.href;
}

type EndpointKey = 'token_endpoint' | 'revocation_endpoint' | 'device_authorization_endpoint' | 'authorization_endpoint';

/** The option of `tokend add` that sets each endpoint, for messages. */
const ENDPOINT_FLAG: Record<EndpointKey, string> = {
  token_endpoint: '--token-endpoint',
  revocation_endpoint: '--revocation-endpoint',
  device_authorization_endpoint: '--device-endpoint',
  authorization_endpoint: '--authorization-endpoint',
};

function endpointOf(as: oauth.AuthorizationServer, key: EndpointKey, account: string): string {
  const url = as[key];
  if (typeof url !== 'string' || !url) {
    throw new DriverError('config', `account "${account}": the authorization server has no ${key} (set it with ${ENDPOINT_FLAG[key]})`);
  }
  return url;
}

/** The OAuth client of the account (RFC 6749 §2.2): every oauth2 step needs its id. */
function clientOf(ctx: DriverContext): oauth.Client {
  if (!ctx.config.client_id) throw new DriverError('config', `account "${ctx.name}" has no client id (set it with --client-id)`);
  return { client_id: ctx.config.client_id };
}

/** The scope a login asks for: the account's scopes (RFC 6749 §3.3), or none. */
function accountScope(ctx: DriverContext): string | undefined {
  return ctx.config.scopes.length ? ctx.config.scopes.join(' ') : undefined;
}

/**
 * Client authentication, RFC 6749 §2.3 / RFC 7591 §2 `token_endpoint_auth_method`. Without a
 * configured method: `none` for a public client; with a secret, `client_secret_basic` (the
 * method every AS MUST support, §2.3.1) unless the metadata advertises only `client_secret_post`.
 */
export function clientAuthFor(ctx: DriverContext, as?: oauth.AuthorizationServer): oauth.ClientAuth {
  const method: ClientAuthMethod = ctx.config.token_endpoint_auth_method ?? defaultAuthMethod(ctx.clientSecret, as);
  if (method === 'none') return oauth.None();
  if (!ctx.clientSecret) {
    throw new DriverError('config', `account "${ctx.name}" uses ${method} but has no client secret`);
  }
  return method === 'client_secret_post' ? oauth.ClientSecretPost(ctx.clientSecret) : oauth.ClientSecretBasic(ctx.clientSecret);
}

function defaultAuthMethod(secret: string | undefined, as?: oauth.AuthorizationServer): ClientAuthMethod {
  if (!secret) return 'none';
  const supported = as?.token_endpoint_auth_methods_supported;
  // RFC 8414 §2: when omitted, the default is client_secret_basic.
  if (supported && !supported.includes('client_secret_basic') && supported.includes('client_secret_post')) {
    return 'client_secret_post';
  }
  return 'client_secret_basic';
}

type HttpOptions = {
  signal: AbortSignal;
  [oauth.allowInsecureRequests]?: boolean;
  [oauth.customFetch]?: (url: string, options: oauth.CustomFetchOptions<string, unknown>) => Promise<Response>;
};

/**
 * The oauth4webapi transport options for a request to `url`: the abort signal, the custom
 * fetch, and plain http only to loopback (RFC 6749 §3.1 / §3.2 require TLS; a local test
 * server is the one exception we make).
 */
export function transportOptions(url: string, signal: AbortSignal, customFetch?: typeof fetch): HttpOptions {
  const parsed = checkTransport(url);
  const options: HttpOptions = { signal };
  if (parsed.protocol === 'http:') options[oauth.allowInsecureRequests] = true;
  if (customFetch) options[oauth.customFetch] = (u, o) => customFetch(u, o as RequestInit);
  return options;
}

// --- errors -------------------------------------------------------------------------------

/** OAuth error codes that mean "try again later", whatever the status (RFC 6749 §4.1.2.1; some token endpoints use them). */
const TRANSIENT_OAUTH_ERRORS = new Set(['server_error', 'temporarily_unavailable']);

/**
 * Translates anything a step can throw (fetch, oauth4webapi, an unusable response) into a
 * DriverError: the only place that does (like openid-client's `errorHandler`). Messages hold
 * no token or secret: server-supplied text is scrubbed of `step.secrets`, and no `cause` is
 * attached (oauth4webapi's causes can hold request or response bodies).
 */
export function toDriverError(err: unknown, response?: Response, step: StepInfo = { endpoint: 'token' }): never {
  if (err instanceof DriverError) throw err;
  const where = describe(step);
  const clean = (text: string) => scrub(text, step.secrets);

  // 5xx, 429, 408 first: a verdict on the server's state, not on our request.
  if (response && isRetryableStatus(response.status)) throw retryableFailure(response, where);

  // Aborted or timed out (ctx.signal), or the network: the request may have been processed and its answer lost.
  const transport = transportFailure(err, where, step.signal);
  if (transport) throw transport;
  const e = err as { message?: unknown; cause?: unknown } | undefined;

  if (err instanceof oauth.ResponseBodyError) {
    throw oauthError(err.error, err.error_description, err.status, where, clean);
  }

  // RFC 6749 §4.1.2.1: the authorization server redirected back with `error` (e.g. access_denied).
  if (err instanceof oauth.AuthorizationResponseError) {
    throw oauthError(err.error, err.error_description, undefined, where, clean);
  }

  // RFC 6749 §5.2: invalid_client may come as 401 with WWW-Authenticate (oidc-provider sends
  // `Basic realm=…, error="invalid_client", error_description=…`).
  if (err instanceof oauth.WWWAuthenticateChallengeError) {
    throw challengeError(err, where, clean);
  }

  if (err instanceof oauth.OperationProcessingError) {
    const status = response?.status;
    switch (err.code) {
      case oauth.HTTP_REQUEST_FORBIDDEN:
      case oauth.REQUEST_PROTOCOL_FORBIDDEN:
      case oauth.MISSING_SERVER_METADATA:
      case oauth.INVALID_SERVER_METADATA:
        throw new DriverError('config', `${where}: ${err.message}`);
      case oauth.JSON_ATTRIBUTE_COMPARISON: {
        // RFC 8414 §3.3 / OIDC Discovery §4.3: the metadata names another issuer.
        const named = (e?.cause as { body?: { issuer?: unknown } } | undefined)?.body?.issuer;
        throw new DriverError('config', `the ${where} names a different issuer${typeof named === 'string' ? ` (${clean(named)})` : ''}`);
      }
      case oauth.JWT_CLAIM_COMPARISON:
      case oauth.JWT_TIMESTAMP_CHECK:
        throw new DriverError('config', `the ${where} answered with an id_token that does not validate: ${err.message}`);
    }
    if (status === 200) {
      if (step.endpoint === 'discovery') {
        throw new DriverError('config', `the ${where} answered 200 with a body that is not authorization server metadata`);
      }
      // Not JSON, or JSON without access_token/token_type: a broken proxy or a bad deploy; try again later.
      throw new DriverError('transient', `the ${where} answered 200 with a body that is not a valid ${step.endpoint} response`, {
        status,
      });
    }
    if (status !== undefined) {
      // 3xx (a moved endpoint), 404, a 4xx without an OAuth error body: the configuration is wrong.
      throw new DriverError('config', `the ${where} answered HTTP ${status} without an OAuth error`, { status });
    }
    throw new DriverError('config', `${where}: ${err.message}`);
  }

  if (err instanceof oauth.UnsupportedOperationError) {
    // e.g. a token_type other than Bearer/DPoP (RFC 6749 §7.1): we would not know how to use the token.
    throw new DriverError('config', `the ${where} answered with something tokend cannot use: ${err.message}`);
  }

  // oauth4webapi's argument checks (TypeError with code ERR_INVALID_ARG_*; network TypeErrors were handled above).
  if (err instanceof TypeError) {
    throw new DriverError('config', `${where}: ${clean(String(e?.message ?? 'invalid argument'))}`);
  }

  // Anything else is unexpected: assume the worst about whether the request went out.
  const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  throw new DriverError('transient', `unexpected failure talking to the ${where}: ${clean(what)}`, { outcomeUnknown: true });
}

function oauthError(
  code: string,
  description: string | undefined,
  status: number | undefined,
  where: string,
  clean: (s: string) => string,
): DriverError {
  const detail = description ? ` (${clean(description)})` : '';
  const safeCode = clean(code).slice(0, 64);
  if (code === 'invalid_grant') {
    // RFC 6749 §5.2: the refresh token is invalid, expired, revoked or was issued to another client.
    return new DriverError('invalid_grant', `the ${where} rejected the grant: invalid_grant${detail}`, { oauthError: code, status });
  }
  if (TRANSIENT_OAUTH_ERRORS.has(code)) {
    return new DriverError('transient', `the ${where} answered ${safeCode}${detail}`, { oauthError: code, status });
  }
  // invalid_client, unauthorized_client, unsupported_grant_type, invalid_scope, invalid_request,
  // invalid_target (RFC 8707 §2), unsupported_token_type (RFC 7009 §2.2.1), …: only the user can fix these.
  return new DriverError('config', `the ${where} answered ${safeCode}${detail}`, { oauthError: code, status });
}

function challengeError(err: oauth.WWWAuthenticateChallengeError, where: string, clean: (s: string) => string): never {
  const params = err.cause.find((c) => c.parameters.error)?.parameters;
  // The body is unread here and toDriverError is synchronous, so the challenge speaks; servers
  // that send a bare challenge get the code §5.2 prescribes for a 401.
  void err.response.body?.cancel().catch(() => {});
  const code = params?.error ?? (err.status === 401 ? 'invalid_client' : 'invalid_request');
  throw oauthError(code, params?.error_description, err.status, where, clean);
}

function describe(step: StepInfo): string {
  const label =
    step.endpoint === 'discovery'
      ? 'discovery endpoint'
      : step.endpoint === 'device_authorization'
        ? 'device authorization endpoint'
        : `${step.endpoint} endpoint`;
  return placeOf(label, step.url);
}
