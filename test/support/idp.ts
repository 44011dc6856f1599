/**
 * A real OpenID Provider for tokend's tests: npm `oidc-provider` (v9) on 127.0.0.1, a random
 * port, in memory. Configured as oidc-provider 9 documents it, checked end to end.
 *
 * ```ts
 * const idp = await startIdp();                       // issuer http://127.0.0.1:PORT
 * const { refresh_token } = await idp.issueRefreshToken('conf');
 * idp.setFault({ kind: '500', times: 2 });            // the next two POST /token answer 500
 * expect(idp.stats.refreshes).toBe(1);
 * await idp.close();
 * ```
 *
 * Clients (secrets in {@link CLIENTS}):
 * - `cli`: public native client (`none`), authorization_code + refresh_token + device_code.
 * - `conf`: confidential, `client_secret_basic`, secret `conf-secret`, those grants + client_credentials.
 * - `conf-post`: like `conf` but `client_secret_post`, secret `conf-post-secret`.
 * - `svc`: client_credentials only, `client_secret_basic`, secret `svc-secret`.
 * All interactive clients are `native` with redirect `http://127.0.0.1/callback` (any port, RFC 8252 §7.3).
 *
 * Behaviour worth knowing (RFC 9700 §4.14.2, §8):
 * - `rotateRefreshToken: true`: every refresh returns a new refresh token; presenting a used
 *   one answers `invalid_grant` and revokes the whole grant (the newest token dies too).
 * - Scopes `openid offline_access api`; a refresh token is issued only with `offline_access`.
 * - Resource indicators (RFC 8707): only {@link TEST_RESOURCE} is a known resource server
 *   (scope `api`, opaque access tokens whose introspection shows `aud`). Refresh tokens from
 *   {@link TestIdp.issueRefreshToken} are granted that resource unless `resource: null`.
 * - No `interval` in device authorization responses, never `slow_down` (RFC 8628 §3.5 allows both).
 * - The token endpoint's faults and counters live in the node http layer, before the provider.
 */
import http from 'node:http';
import https from 'node:https';
import { Agent as UndiciAgent, fetch as undiciFetch } from 'undici';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
// oidc-provider ships no type declarations; OidcProvider below types what tests use.
// @ts-expect-error: no declarations (see above)
import ProviderModule, { errors as providerErrorsModule } from 'oidc-provider';
import { listenOnLoopback } from './loopback.js';

/** The subject every approved login belongs to. */
export const TEST_ACCOUNT = 'test-user';
/** The one resource server the IdP knows (RFC 8707 `resource`, tokend's `audience`). */
export const TEST_RESOURCE = 'https://api.example.test';
/** Scope granted by default. */
export const DEFAULT_SCOPE = 'openid offline_access api';
/** A redirect URI registered for the interactive clients; any port is accepted (native + loopback). */
export const TEST_REDIRECT_URI = 'http://127.0.0.1/callback';
/** A private-use URI scheme redirect (RFC 8252 §7.1) registered for the interactive clients: a desktop app's deep link. */
export const TEST_APP_REDIRECT_URI = 'com.example.tokend:/oauth2redirect';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
/** The password {@link TEST_ACCOUNT} signs in with through the password grant (RFC 6749 §4.3). */
export const TEST_PASSWORD = 'test-password';

/** The registered clients and how each authenticates at the token endpoint (RFC 6749 §2.3). */
export const CLIENTS = {
  cli: { secret: undefined, method: 'none' },
  conf: { secret: 'conf-secret', method: 'client_secret_basic' },
  'conf-post': { secret: 'conf-post-secret', method: 'client_secret_post' },
  svc: { secret: 'svc-secret', method: 'client_secret_basic' },
} as const satisfies Record<string, { secret: string | undefined; method: string }>;
export type TestClientId = keyof typeof CLIENTS;

/**
 * A fault the token endpoint (`POST /token`) answers with instead of the provider.
 * `times` limits it to the next N token requests (default: until `setFault(null)`).
 * - `500`: 500 with an HTML body. `429`: 429 with `Retry-After: retryAfter` when given.
 * - `hang`: never answers (until close). `reset`: reads the request, then destroys the socket.
 * - `garbage`: 200 `application/json` with `{not json`.
 * - `invalid_grant`: 400 `{"error":"invalid_grant","error_description":"test says no"}`.
 */
export type TokenFault =
  | { kind: '500'; times?: number }
  | { kind: '429'; retryAfter?: string; times?: number }
  | { kind: 'hang'; times?: number }
  | { kind: 'reset'; times?: number }
  | { kind: 'garbage'; times?: number }
  | { kind: 'invalid_grant'; times?: number }
  /** The provider answers for real, `ms` later (a slow provider). */
  | { kind: 'delay'; ms: number; times?: number }
  /** The provider answers for real once `until` settles: the test decides when (what happens meanwhile, say). */
  | { kind: 'hold'; until: Promise<unknown>; times?: number };

export interface IdpStats {
  /** Every POST to the token endpoint from outside the fixture, faulted or not. */
  tokenRequests: number;
  /** Token requests answered by a fault. */
  faulted: number;
  /** Successful refresh_token grants. */
  refreshes: number;
  /** Failed refresh_token grants as the provider saw them (`detail` is its internal `error_detail`). */
  refreshErrors: { error: string; detail?: string }[];
  /** Replays: a used refresh token, device code or authorization code presented again (the grant gets revoked). */
  replays: number;
  /** Successful grants by grant_type (device_code, client_credentials, …). */
  grants: Record<string, number>;
}

export interface IssuedTokens {
  refresh_token: string;
  access_token: string;
  id_token?: string;
  expires_in: number;
  scope: string;
  token_type: string;
}

export interface Introspection {
  active: boolean;
  client_id?: string;
  sub?: string;
  scope?: string;
  aud?: string | string[];
  exp?: number;
  iat?: number;
  iss?: string;
  token_type?: string;
  [k: string]: unknown;
}

/** The parts of an oidc-provider instance tests use; everything else is there, untyped. */
export interface OidcProvider {
  issuer: string;
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
  on(event: string, listener: (...args: any[]) => void): unknown;
  use(mw: (ctx: any, next: () => Promise<unknown>) => Promise<unknown>): void;
  interactionDetails(req: http.IncomingMessage, res: http.ServerResponse): Promise<any>;
  interactionResult(req: http.IncomingMessage, res: http.ServerResponse, result: object, opts?: object): Promise<string>;
  Grant: any;
  DeviceCode: any;
  RefreshToken: any;
  AccessToken: any;
  Client: any;
  [k: string]: any;
}

export interface TestIdp {
  /** `http://127.0.0.1:PORT`, exactly what discovery answers. */
  issuer: string;
  port: number;
  provider: OidcProvider;
  /** Live counters (the same object across resetStats). */
  stats: IdpStats;
  /** Date.now() of every outside token request, in arrival order. */
  lastTokenRequestAt: number[];
  /** Server-side milliseconds of every answered outside token request (arrival → response finished), in the order they finished. */
  tokenRequestMs: number[];
  resetStats(): void;
  /** Every refresh token the token endpoint handed out so far (fixture's own included), oldest first; for leak checks. */
  issuedRefreshTokens(): string[];
  /** Every access token the token endpoint handed out so far, oldest first; for leak checks. */
  issuedAccessTokens(): string[];
  /** The grant (oidc-provider's grant id) a refresh token this IdP issued belongs to. */
  grantOf(refreshToken: string): string | undefined;
  /**
   * The replays since the last resetStats, by grant: for each grant whose used refresh token
   * was presented again, the refresh tokens presented (once per replay, in order).
   */
  replaysByGrant(): Map<string, string[]>;
  /** Fault the token endpoint from the next request on; `null` heals it. */
  setFault(f: TokenFault | null): void;
  /** The lifetime of access tokens issued from now on (seconds); what a test set at start otherwise. */
  setAccessTokenTtl(seconds: number): void;
  /**
   * A real refresh token (with access token) for `clientId`: runs the device flow, approving
   * the code through the provider's model, and polls the token endpoint once with the
   * client's authentication. Does not count in `stats.tokenRequests` and ignores faults.
   * `resource`: grant this resource too (default {@link TEST_RESOURCE}; `null` for none).
   */
  issueRefreshToken(clientId?: TestClientId, scope?: string, opts?: { resource?: string | null }): Promise<IssuedTokens>;
  /** Approve a pending device code (RFC 8628 §3.3) as {@link TEST_ACCOUNT}, as the `/device` page would. */
  approveDevice(userCode: string, opts?: { scope?: string; resource?: string | null }): Promise<void>;
  /** Deny a pending device code: the next poll gets `access_denied`. */
  denyDevice(userCode: string): Promise<void>;
  /**
   * Play the browser for an authorization URL (RFC 6749 §4.1.1): follow the provider's redirects
   * with a cookie jar through the auto-approving interaction and return the final redirect to
   * the client (its `code`, `state`, `iss` or `error`) without requesting it.
   */
  authorize(authorizationUrl: string | URL): Promise<URL>;
  /** RFC 7662 introspection, authenticated as `conf` (its own tokens and other clients' both work). */
  introspect(token: string): Promise<Introspection>;
  /** RFC 7009 revocation at the IdP, as the token's own client (found by introspection) unless `clientId` says otherwise. */
  revokeAtIdp(token: string, clientId?: TestClientId): Promise<void>;
  /** Stops listening and destroys every open connection, hanging ones included. */
  close(): Promise<void>;
}

export interface IdpOptions {
  /** Access token (and client credentials) lifetime in seconds; default 60. */
  accessTokenTtl?: number;
  /** Refresh token rotation (RFC 9700 §4.14.2); default true. */
  rotate?: boolean;
  /** Refresh token lifetime in seconds; default 3600. */
  refreshTokenTtl?: number;
  /** Device code lifetime (`expires_in` of RFC 8628 §3.2) in seconds; default 120. */
  deviceCodeTtl?: number;
  /**
   * Serve https with this certificate (a test CA's, see tls.ts): the issuer is then
   * `https://localhost:PORT`, and the fixture's own requests trust `ca`.
   */
  tls?: { key: string; cert: string; ca: string };
  /**
   * DPoP (RFC 9449; oidc-provider's `features.dPoP`, on by default for requests that carry a
   * proof): `requireNonce` makes the token endpoint answer `use_dpop_nonce` with a
   * `DPoP-Nonce` to a proof without its current nonce (§8).
   */
  dpop?: { requireNonce?: boolean };
}

const Provider = ProviderModule as unknown as new (issuer: string, config: object) => OidcProvider;
const providerErrors = providerErrorsModule as Record<
  'InvalidTarget' | 'InvalidRequest' | 'InvalidGrant',
  new (
    description?: string,
  ) => Error
>;

// One signing key per test process: 2048-bit RSA costs ~100 ms, and oidc-provider otherwise
// uses its dev keystore with a warning. RS256 is what clients expect by default.
let signingJwk: object | undefined;
function jwks(): { keys: object[] } {
  signingJwk ??= {
    ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
    kid: 'test-rs256',
    alg: 'RS256',
    use: 'sig',
  };
  return { keys: [signingJwk] };
}

/** Starts a test IdP; see the module comment. Always `close()` it. */
export async function startIdp(opts: IdpOptions = {}): Promise<TestIdp> {
  let accessTokenTtl = opts.accessTokenTtl ?? 60;
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }) : http.createServer();
  const listener = await listenOnLoopback(server);
  const port = listener.port;
  const issuer = opts.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`;
  // The fixture's own requests (issuing, introspecting) trust the test CA too.
  const tlsAgent = opts.tls ? new UndiciAgent({ connect: { ca: opts.tls.ca } }) : undefined;
  const fetch = (
    tlsAgent
      ? (url: string | URL, init?: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher: tlsAgent } as never)
      : globalThis.fetch
  ) as typeof globalThis.fetch;
  const internalKey = randomBytes(16).toString('hex');

  const interactive = {
    application_type: 'native',
    response_types: ['code'],
    redirect_uris: [TEST_REDIRECT_URI, TEST_APP_REDIRECT_URI],
  };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'cli',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
        ...interactive,
      },
      ...(['conf', 'conf-post'] as const).map((id) => ({
        client_id: id,
        client_secret: CLIENTS[id].secret,
        token_endpoint_auth_method: CLIENTS[id].method,
        grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT, 'client_credentials', 'password'],
        ...interactive,
      })),
      {
        client_id: 'svc',
        client_secret: CLIENTS.svc.secret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    features: {
      devInteractions: { enabled: false }, // the middleware below approves instead
      dPoP: {
        enabled: true,
        ...(opts.dpop?.requireNonce ? { nonceSecret: randomBytes(32), requireNonce: () => true } : {}),
      },
      deviceFlow: { enabled: true },
      clientCredentials: { enabled: true },
      // The default policies, spelled out so oidc-provider does not print a notice about them:
      // revoking another client's token is refused (silently for a public client, §6.7) …
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx: any, c: any, token: any) => {
          if (token.clientId === c.clientId) return true;
          if (c.clientAuthMethod === 'none') return false;
          throw new providerErrors.InvalidRequest('client is not authorized to revoke the presented token');
        },
      },
      // … and a public client may only introspect its own tokens.
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx: any, c: any, token: any) =>
          !(c.clientAuthMethod === 'none' && token.clientId !== ctx.oidc.client.clientId),
      },
      resourceIndicators: {
        enabled: true,
        // RFC 8707: only TEST_RESOURCE exists; anything else is `invalid_target`.
        async getResourceServerInfo(_ctx: unknown, resource: string) {
          if (resource === TEST_RESOURCE) {
            return { scope: 'api', audience: TEST_RESOURCE, accessTokenFormat: 'opaque' };
          }
          throw new providerErrors.InvalidTarget();
        },
      },
    },
    rotateRefreshToken: opts.rotate ?? true,
    scopes: ['openid', 'offline_access', 'api'],
    pkce: { required: () => true },
    ttl: {
      AccessToken: () => accessTokenTtl,
      ClientCredentials: () => accessTokenTtl,
      RefreshToken: opts.refreshTokenTtl ?? 3600,
      DeviceCode: opts.deviceCodeTtl ?? 120,
      // Set so oidc-provider does not print a notice for each default it falls back to.
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Interaction: 600,
      Session: 14 * 24 * 3600,
    },
    jwks: jwks(),
    adapter: createMemoryAdapter(),
    cookies: { keys: [randomBytes(16).toString('hex')] },
    findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
    interactions: { url: (_ctx: unknown, i: { uid: string }) => `/interaction/${i.uid}` },
  });

  // Auto-finishing interaction: logs in TEST_ACCOUNT, consents to everything asked.
  provider.use(async (ctx, next) => {
    if (!/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
    const d = await provider.interactionDetails(ctx.req, ctx.res);
    const grant = d.grantId
      ? await provider.Grant.find(d.grantId)
      : new provider.Grant({ accountId: d.session?.accountId ?? TEST_ACCOUNT, clientId: d.params.client_id });
    if (d.params.scope) grant.addOIDCScope(d.params.scope);
    if (typeof d.params.resource === 'string') grant.addResourceScope(d.params.resource, d.params.scope ?? '');
    const result: Record<string, unknown> = { consent: { grantId: await grant.save() } };
    if (d.prompt.name === 'login') result.login = { accountId: TEST_ACCOUNT };
    ctx.status = 303;
    ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
  });

  // The resource owner password credentials grant (RFC 6749 §4.3), which oidc-provider does
  // not ship (OAuth 2.1 drops it) but lets one register, as Keycloak's direct access grants
  // still offer it: TEST_ACCOUNT with TEST_PASSWORD gets a real grant (issued through the
  // device flow inside), refreshable like any other.
  provider.registerGrantType(
    'password',
    async (ctx: any) => {
      const { username, password, scope } = ctx.oidc.params as Record<string, string | undefined>;
      if (username !== TEST_ACCOUNT || password !== TEST_PASSWORD) throw new providerErrors.InvalidGrant('invalid username or password');
      const tokens = await issueRefreshToken(ctx.oidc.client.clientId, scope ?? DEFAULT_SCOPE);
      ctx.body = {
        access_token: tokens.access_token,
        token_type: tokens.token_type,
        expires_in: tokens.expires_in,
        refresh_token: tokens.refresh_token,
        scope: tokens.scope,
      };
    },
    new Set(['username', 'password', 'scope']),
  );

  const stats: IdpStats = { tokenRequests: 0, faulted: 0, refreshes: 0, refreshErrors: [], replays: 0, grants: {} };
  const lastTokenRequestAt: number[] = [];
  const tokenRequestMs: number[] = [];

  const issuedRefresh: string[] = [];
  const issuedAccess: string[] = [];
  const grantOfRefresh = new Map<string, string>();
  const replayed = new Map<string, string[]>();
  // Counters come from the provider's own events, never from reading request bodies.
  provider.on('grant.success', (ctx: any) => {
    // The handler has set the response body before it emits (actions/token.js).
    if (typeof ctx.body?.refresh_token === 'string') {
      issuedRefresh.push(ctx.body.refresh_token);
      const grantId = ctx.oidc?.entities?.Grant?.jti;
      if (typeof grantId === 'string') grantOfRefresh.set(ctx.body.refresh_token, grantId);
    }
    if (typeof ctx.body?.access_token === 'string') issuedAccess.push(ctx.body.access_token);
    const gt: string = ctx.oidc?.params?.grant_type ?? 'unknown';
    stats.grants[gt] = (stats.grants[gt] ?? 0) + 1;
    if (gt === 'refresh_token') stats.refreshes++;
  });
  provider.on('grant.error', (ctx: any, err: { error?: string; error_detail?: string; message?: string }) => {
    const detail = err.error_detail;
    // oidc-provider's details for a replay: "refresh token already used" (then the grant is
    // revoked), "device code already consumed", "authorization code already consumed".
    if (err.error === 'invalid_grant' && detail && /already (used|consumed)/.test(detail)) {
      stats.replays++;
      // The refresh token grant names the token's grant before it finds it used (actions/grants/refresh_token.js).
      const grantId = ctx.oidc?.entities?.RefreshToken?.grantId;
      const token = ctx.oidc?.params?.refresh_token;
      if (typeof grantId === 'string' && typeof token === 'string') replayed.set(grantId, [...(replayed.get(grantId) ?? []), token]);
    }
    if (ctx.oidc?.params?.grant_type === 'refresh_token') {
      stats.refreshErrors.push({ error: err.error ?? err.message ?? 'unknown', detail });
    }
  });

  let fault: TokenFault | null = null;
  let faultLeft = Infinity;
  const handle = provider.callback();
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'POST' || path !== '/token') return handle(req, res);
    if (req.headers['x-test-idp-internal'] === internalKey) {
      delete req.headers['x-test-idp-internal'];
      return handle(req, res);
    }
    stats.tokenRequests++;
    lastTokenRequestAt.push(Date.now());
    const arrived = performance.now();
    res.once('finish', () => tokenRequestMs.push(performance.now() - arrived));
    const f = fault;
    if (!f) return handle(req, res);
    if (--faultLeft <= 0) fault = null;
    stats.faulted++;
    if (f.kind === 'delay') {
      setTimeout(() => handle(req, res), f.ms);
      return;
    }
    if (f.kind === 'hold') {
      const answer = () => handle(req, res);
      f.until.then(answer, answer);
      return;
    }
    // Read and discard the body, then answer as the fault says.
    req.resume();
    req.on('end', () => answerFault(f, req, res));
  });

  const tokenUrl = `${issuer}/token`;

  async function clientPost(url: string, clientId: TestClientId, params: Record<string, string>, internal = false) {
    const c = CLIENTS[clientId];
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const body = new URLSearchParams(params);
    if (c.method === 'client_secret_basic') {
      // RFC 6749 §2.3.1: form-urlencode each part before base64.
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(c.secret!)}`).toString('base64')}`;
    } else {
      body.set('client_id', clientId);
      if (c.method === 'client_secret_post') body.set('client_secret', c.secret!);
    }
    if (internal) headers['x-test-idp-internal'] = internalKey;
    return fetch(url, { method: 'POST', headers, body });
  }

  async function findDeviceCode(userCode: string) {
    // The provider stores user codes normalized: upper-case, without the '-' (§8.2).
    const dc = await provider.DeviceCode.findByUserCode(userCode.toUpperCase().replace(/[^A-Z0-9]/g, ''));
    if (!dc) throw new Error(`test IdP: no pending device code for user code ${userCode}`);
    return dc;
  }

  async function approveDevice(userCode: string, o: { scope?: string; resource?: string | null } = {}) {
    const dc = await findDeviceCode(userCode);
    const scope = o.scope ?? dc.scope ?? DEFAULT_SCOPE;
    const resource = o.resource === undefined ? (scope.split(' ').includes('api') ? TEST_RESOURCE : null) : o.resource;
    const grant = new provider.Grant({ accountId: TEST_ACCOUNT, clientId: dc.clientId });
    grant.addOIDCScope(scope);
    if (resource) grant.addResourceScope(resource, 'api');
    // What the /device confirm step stores (device_user_flow_response.js / device.js).
    Object.assign(dc, {
      accountId: TEST_ACCOUNT,
      grantId: await grant.save(),
      scope,
      authTime: Math.floor(Date.now() / 1000),
      ...(resource ? { resource } : {}),
    });
    await dc.save();
  }

  async function denyDevice(userCode: string) {
    const dc = await findDeviceCode(userCode);
    Object.assign(dc, { error: 'access_denied', errorDescription: 'End-User aborted interaction' });
    await dc.save();
  }

  async function issueRefreshToken(clientId: TestClientId = 'conf', scope = DEFAULT_SCOPE, o: { resource?: string | null } = {}) {
    if (clientId === 'svc') throw new Error('test IdP: svc has only client_credentials, no refresh tokens');
    const res = await clientPost(`${issuer}/device/auth`, clientId, { scope }, true);
    const da = (await res.json()) as { device_code?: string; user_code?: string; error?: string; error_description?: string };
    if (!res.ok || !da.device_code || !da.user_code) {
      throw new Error(`test IdP: device authorization failed: ${res.status} ${da.error ?? ''} ${da.error_description ?? ''}`);
    }
    await approveDevice(da.user_code, { scope, resource: o.resource });
    const tr = await clientPost(tokenUrl, clientId, { grant_type: DEVICE_GRANT, device_code: da.device_code }, true);
    const tokens = (await tr.json()) as IssuedTokens & { error?: string; error_description?: string };
    if (!tr.ok || !tokens.refresh_token) {
      throw new Error(
        `test IdP: device code exchange gave no refresh token: ${tr.status} ${tokens.error ?? ''} ${tokens.error_description ?? ''}`,
      );
    }
    return tokens;
  }

  async function authorize(authorizationUrl: string | URL): Promise<URL> {
    const jar = new Map<string, string>();
    let url = new URL(authorizationUrl);
    for (let hop = 0; hop < 10; hop++) {
      if (url.origin !== issuer) return url; // left the IdP: this is the redirect to the client
      const res = await fetch(url, {
        redirect: 'manual',
        headers: jar.size ? { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } : {},
      });
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(';');
        const eq = pair.indexOf('=');
        jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
      }
      const location = res.headers.get('location');
      await res.body?.cancel();
      if (!location || res.status < 300 || res.status > 399) {
        throw new Error(`test IdP: authorization stopped at ${url.pathname} with ${res.status}`);
      }
      url = new URL(location, url);
    }
    throw new Error('test IdP: too many redirects during authorization');
  }

  async function introspect(token: string): Promise<Introspection> {
    const res = await clientPost(`${issuer}/token/introspection`, 'conf', { token });
    if (!res.ok) throw new Error(`test IdP: introspection answered ${res.status}`);
    return (await res.json()) as Introspection;
  }

  async function revokeAtIdp(token: string, clientId?: TestClientId) {
    // The provider only lets a client revoke its own tokens (§6.7), so act as the token's client.
    const owner = clientId ?? (await introspect(token)).client_id;
    const as: TestClientId = owner && owner in CLIENTS ? (owner as TestClientId) : 'conf';
    const res = await clientPost(`${issuer}/token/revocation`, as, { token });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`test IdP: revocation answered ${res.status}`);
  }

  return {
    issuer,
    port,
    provider,
    stats,
    lastTokenRequestAt,
    tokenRequestMs,
    resetStats() {
      Object.assign(stats, { tokenRequests: 0, faulted: 0, refreshes: 0, replays: 0, grants: {} });
      stats.refreshErrors.length = 0;
      replayed.clear();
      lastTokenRequestAt.length = 0;
      tokenRequestMs.length = 0;
    },
    issuedRefreshTokens: () => [...issuedRefresh],
    issuedAccessTokens: () => [...issuedAccess],
    grantOf: (refreshToken) => grantOfRefresh.get(refreshToken),
    replaysByGrant: () => new Map([...replayed].map(([g, tokens]) => [g, [...tokens]])),
    setFault(f) {
      fault = f;
      faultLeft = f?.times ?? Infinity;
    },
    setAccessTokenTtl(seconds) {
      accessTokenTtl = seconds;
    },
    issueRefreshToken,
    approveDevice,
    denyDevice,
    authorize,
    introspect,
    revokeAtIdp,
    close: listener.close,
  };
}

/**
 * Per-IdP in-memory storage with oidc-provider's adapter interface. The built-in one prints a
 * warning and is an LRU of ~1000 entries, which a long test could overflow (tokens would
 * vanish); this one keeps everything until a few minutes after it expires.
 */
function createMemoryAdapter() {
  const GRACE_MS = 5 * 60_000; // expired entries stay a while, so the provider says "expired", not "not found"
  const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);
  const store = new Map<string, { payload: Record<string, any>; expiresAt: number }>();
  const byUserCode = new Map<string, string>();
  const bySessionUid = new Map<string, string>();
  const byGrant = new Map<string, Set<string>>();
  const live = (key: string | undefined) => {
    if (!key) return undefined;
    const e = store.get(key);
    if (e && e.expiresAt + GRACE_MS < Date.now()) store.delete(key);
    return store.get(key)?.payload;
  };
  return class TestAdapter {
    constructor(readonly model: string) {}
    key(id: string) {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: Record<string, any>, expiresIn?: number) {
      const key = this.key(id);
      store.set(key, { payload, expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity });
      if (grantable.has(this.model) && payload.grantId) {
        if (!byGrant.has(payload.grantId)) byGrant.set(payload.grantId, new Set());
        byGrant.get(payload.grantId)!.add(key);
      }
      if (payload.userCode) byUserCode.set(payload.userCode, key);
      if (this.model === 'Session' && payload.uid) bySessionUid.set(payload.uid, key);
    }
    async find(id: string) {
      return live(this.key(id));
    }
    async findByUserCode(userCode: string) {
      return live(byUserCode.get(userCode));
    }
    async findByUid(uid: string) {
      return live(bySessionUid.get(uid));
    }
    async consume(id: string) {
      const payload = live(this.key(id));
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      store.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string) {
      for (const key of byGrant.get(grantId) ?? []) store.delete(key);
      byGrant.delete(grantId);
    }
  };
}

function answerFault(f: TokenFault, req: http.IncomingMessage, res: http.ServerResponse): void {
  switch (f.kind) {
    case '500':
      res.writeHead(500, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<html><body><h1>500 Internal Server Error</h1></body></html>');
      return;
    case '429':
      res.writeHead(429, {
        'content-type': 'application/json',
        ...(f.retryAfter !== undefined ? { 'retry-after': f.retryAfter } : {}),
      });
      res.end('{"error":"rate_limited"}');
      return;
    case 'hang':
      return; // never answer; close() destroys the socket
    case 'reset':
      req.socket.destroy();
      return;
    case 'garbage':
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end('{not json');
      return;
    case 'invalid_grant':
      res.writeHead(400, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end('{"error":"invalid_grant","error_description":"test says no"}');
      return;
    case 'delay':
    case 'hold':
      return; // handled before the body is read
  }
}
