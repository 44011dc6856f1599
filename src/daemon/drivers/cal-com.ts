/**
 * Cal.com Platform managed users (cal.com/docs, "Platform / Managed Users": "Refresh managed
 * user tokens", "Force refresh tokens"). The platform hands the user's tokens over (`tokend
 * import NAME --tokens-stdin`); the OAuth client's secret refreshes them, rotating the refresh
 * token, and force-refreshes them (new tokens without the old ones) when a refresh is refused:
 * the recover step. Access tokens live 60 minutes, refresh tokens a year; an API answers 498
 * for an expired access token.
 */
import { DriverError, type Driver, type DriverContext, type TokenSet } from './driver.js';
import {
  field,
  needsBaseUrl,
  positiveField,
  providerSteps,
  serviceRoot,
  stringField,
  type ProviderDriverOptions,
  type Refusal,
} from './provider-http.js';

/** The HTTP status Cal.com's API answers for an expired access token (platform-constants HTTP_CODE_TOKEN_EXPIRED). */
export const CAL_TOKEN_EXPIRED = 498;

interface PlatformClient {
  id: string;
  secret: string;
}

export function createCalComDriver(opts: ProviderDriverOptions = {}): Driver {
  const step = providerSteps(opts);

  /** A POST that answers `{"status":"success","data":{accessToken, accessTokenExpiresAt, refreshToken, refreshTokenExpiresAt}}`. */
  function keysStep(
    ctx: DriverContext,
    label: string,
    url: string,
    client: PlatformClient,
    body: Record<string, string> | undefined,
    sent: string[],
  ): Promise<TokenSet> {
    const headers: Record<string, string> = { ...clientHeaders(client), ...(body ? { 'content-type': 'application/json' } : {}) };
    return step(
      ctx,
      { label, url, secrets: [client.secret, ...sent], method: 'POST', headers, body: body ? JSON.stringify(body) : undefined },
      toTokenSet,
      (r) => calRefusal(r, ctx),
    );
  }

  return {
    name: 'cal-com',
    staleStatuses: [CAL_TOKEN_EXPIRED],
    // Force-refresh ends every token the platform itself holds for the user: never at `tokend add`.
    recoverOnAdd: false,

    validate(cfg) {
      if (!cfg.client_id) return "client_id: the cal-com driver needs the platform OAuth client's id (--client-id)";
      if (cfg.managed_user_id === undefined) return 'managed_user_id: the cal-com driver needs the managed user id (--managed-user-id N)';
      return needsBaseUrl(cfg, 'cal-com');
    },

    reauthHint: (account) => `\`tokend import ${account} --tokens-stdin\` with the managed user's tokens from the platform`,

    // There is no token yet; "Get a managed user" checks the client id, its secret and the
    // user id at once, and changes nothing (a refresh or force-refresh would).
    async check(ctx) {
      const client = platformClient(ctx);
      const url = `${serviceRoot(ctx)}/v2/oauth-clients/${encodeURIComponent(client.id)}/users/${userIdOf(ctx)}`;
      await step(
        ctx,
        { label: 'Cal.com managed users endpoint', url, secrets: [client.secret], method: 'GET', headers: clientHeaders(client) },
        (json) => (field(json, 'status') === 'success' ? true : undefined),
        (r) => calRefusal(r, ctx),
      );
      return [];
    },

    // "Refresh managed user tokens": rotates the refresh token; the old one is deleted.
    async refresh(ctx, refreshToken) {
      const client = platformClient(ctx);
      const url = `${serviceRoot(ctx)}/v2/oauth/${encodeURIComponent(client.id)}/refresh`;
      return keysStep(ctx, 'Cal.com refresh endpoint', url, client, { refreshToken }, [refreshToken]);
    },

    // An imported access token is proven with "Get my profile" (`GET /v2/me`), which must name
    // the account's managed user: the platform could hand over another user's tokens.
    async checkAccessToken(ctx, accessToken) {
      const url = `${serviceRoot(ctx)}/v2/me`;
      const id = await step(
        ctx,
        {
          label: 'Cal.com /v2/me endpoint',
          url,
          secrets: [accessToken],
          method: 'GET',
          headers: { authorization: `Bearer ${accessToken}` },
        },
        (json) => (field(json, 'status') === 'success' ? (field(field(json, 'data'), 'id') ?? null) : undefined),
        (r) =>
          r.status === 401 || r.status === 403 || r.status === CAL_TOKEN_EXPIRED
            ? new DriverError('invalid_grant', `the ${r.where} refused the access token: HTTP ${r.status}`, {
                status: r.status,
                oauthError: 'invalid_token',
              })
            : calRefusal(r, ctx),
      );
      if (id !== userIdOf(ctx)) {
        throw new DriverError(
          'invalid_grant',
          `the access token is managed user ${String(id)}'s, not ${userIdOf(ctx)}'s (--managed-user-id)`,
          { oauthError: 'invalid_token' },
        );
      }
    },

    canRecover(ctx) {
      return Boolean(ctx.config.client_id && ctx.clientSecret && ctx.config.managed_user_id !== undefined);
    },

    // "Force refresh tokens": for when the tokens are lost or refused; needs no old token.
    async recover(ctx) {
      const client = platformClient(ctx);
      const url = `${serviceRoot(ctx)}/v2/oauth-clients/${encodeURIComponent(client.id)}/users/${userIdOf(ctx)}/force-refresh`;
      return keysStep(ctx, 'Cal.com force-refresh endpoint', url, client, undefined, []);
    },
  };
}

/** The OAuth client headers: the secret (required by both token endpoints) and the id (the platform's auth guard reads it). */
function clientHeaders(client: PlatformClient): Record<string, string> {
  return { 'x-cal-secret-key': client.secret, 'x-cal-client-id': client.id };
}

function platformClient(ctx: DriverContext): PlatformClient {
  if (!ctx.config.client_id)
    throw new DriverError('config', `account "${ctx.name}" has no platform OAuth client id (set it with --client-id)`);
  if (!ctx.clientSecret) {
    throw new DriverError(
      'config',
      `account "${ctx.name}" has no platform OAuth client secret (give it on stdin with --client-secret-stdin)`,
    );
  }
  return { id: ctx.config.client_id, secret: ctx.clientSecret };
}

function userIdOf(ctx: DriverContext): number {
  const id = ctx.config.managed_user_id;
  if (id === undefined) throw new DriverError('config', `account "${ctx.name}" has no managed user id (set it with --managed-user-id N)`);
  return id;
}

/** Epoch ms as the docs give them; a value that can only be seconds (before 1973 as ms) is taken as seconds. */
function epochMs(v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  return v < 1e11 ? v * 1000 : v;
}

function toTokenSet(json: unknown): TokenSet | undefined {
  if (field(json, 'status') !== 'success') return undefined;
  const data = field(json, 'data');
  const access_token = stringField(data, 'accessToken');
  if (!access_token) return undefined;
  const refresh_token = stringField(data, 'refreshToken');
  const expires_at = epochMs(positiveField(data, 'accessTokenExpiresAt'));
  const refresh_expires_at = epochMs(positiveField(data, 'refreshTokenExpiresAt'));
  return {
    access_token,
    token_type: 'Bearer',
    ...(expires_at !== undefined ? { expires_at } : {}),
    ...(refresh_token ? { refresh_token } : {}),
    ...(refresh_expires_at !== undefined ? { refresh_expires_at } : {}),
  };
}

/** Cal.com's error body: `{"status":"error","error":{"code":"BadRequestException","message":"…"}}`. */
function messageOf(json: unknown): string {
  const m = field(field(json, 'error'), 'message') ?? field(json, 'message');
  return Array.isArray(m) ? m.filter((x) => typeof x === 'string').join('; ') : typeof m === 'string' ? m : '';
}

/**
 * - 400 "Invalid refresh token": the refresh token is unknown (spent by a rotation, or revoked
 *   by a force-refresh): invalid_grant, so the broker force-refreshes;
 * - 400 "Invalid OAuthClient credentials.", 401, 403: the client id or secret is wrong;
 * - 404: the managed user is not the client's (or an endpoint moved).
 */
function calRefusal(r: Refusal, ctx: DriverContext): DriverError | undefined {
  const message = r.clean(messageOf(r.json)).slice(0, 200);
  const detail = message ? ` (${message})` : '';
  if (r.status === 400 && /refresh token/i.test(message)) {
    return new DriverError('invalid_grant', `the ${r.where} refused the refresh token: HTTP 400${detail}`, {
      status: 400,
      oauthError: 'invalid_grant',
    });
  }
  if ((r.status === 400 && /oauth ?client/i.test(message)) || r.status === 401 || r.status === 403) {
    return new DriverError(
      'config',
      `the ${r.where} refused the OAuth client: HTTP ${r.status}${detail}; check --client-id and the secret (\`tokend set ${ctx.name} --client-secret-stdin\`)`,
      { status: r.status, oauthError: 'invalid_client' },
    );
  }
  if (r.status === 404) {
    return new DriverError('config', `the ${r.where} answered HTTP 404${detail}; check --managed-user-id and --base-url`, { status: 404 });
  }
  return new DriverError('config', `the ${r.where} answered HTTP ${r.status}${detail}`, { status: r.status });
}
