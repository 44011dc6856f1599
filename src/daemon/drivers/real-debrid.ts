/**
 * Real-Debrid's device logins (api.real-debrid.com, "Real-Debrid API Documentation", section
 * Authentication). The "Workflow for opensource apps": a device login with a client id and no
 * secret (the public open-source one, `new_credentials=yes`) mints a client id and secret
 * bound to the user; those, not the public id, obtain and refresh the tokens with
 * Real-Debrid's own grant type, the refresh token going in `code`. An app with its own
 * registered client id and secret (the account's client secret) uses the "Workflow for mobile
 * apps" instead: the device code without `new_credentials`, and the token endpoint polled with
 * its own client until the user approves. Errors are `{"error": "…", "error_code": N}`.
 *
 * Whichever client issued a grant is stored with it (`rd_client_id`, `rd_client_secret`):
 * a refresh token works only with that client, so `tokend import` takes it too.
 *
 * No recover step: a grant Real-Debrid refuses needs the device login again.
 */
import { DriverError, type DeviceAuthorization, type DevicePoll, type Driver, type DriverContext, type TokenSet } from './driver.js';
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

/** The grant type of both the device-code exchange and the refresh (the doc's steps 4 and "Refresh"). */
const DEVICE_GRANT = 'http://oauth.net/grant_type/device/1.0';

/** Names of the per-user credentials a login obtains; stored encrypted with the account (TokenSet.secrets). */
export const RD_SECRETS = { clientId: 'rd_client_id', clientSecret: 'rd_client_secret' } as const;

/** The error codes of the doc's list that tokend acts on. */
const CODE = {
  internal: -1,
  missingParameter: 1,
  unknownMethod: 3,
  methodNotAllowed: 4,
  slowDown: 5,
  serviceUnavailable: 25,
  tooManyRequests: 34,
} as const;

/** Codes that say tokend's request is malformed: asking again cannot help. */
const OUR_MISTAKE: ReadonlySet<number> = new Set([CODE.missingParameter, CODE.unknownMethod, CODE.methodNotAllowed]);
/** Codes about Real-Debrid's state: try again later. */
const TRY_LATER: ReadonlySet<number> = new Set([CODE.internal, CODE.slowDown, CODE.serviceUnavailable, CODE.tooManyRequests]);

/** How long the per-user credentials of an approved device code wait for their token exchange. */
const APPROVED_TTL_MS = 60 * 60_000;

interface UserClient {
  id: string;
  secret: string;
}

export function createRealDebridDriver(opts: ProviderDriverOptions = {}): Driver {
  const step = providerSteps(opts);
  const now = opts.now ?? Date.now;
  /**
   * device code → the per-user credentials it was approved with, until the token exchange
   * succeeds: a transient failure of the exchange is retried on the next poll without asking
   * for the credentials again. Memory only (the device code is a secret).
   */
  const approved = new Map<string, { client: UserClient; until: number }>();

  const oauthUrl = (ctx: DriverContext, path: string) => `${serviceRoot(ctx)}/oauth/v2/${path}`;
  const restUrl = (ctx: DriverContext, path: string) => `${serviceRoot(ctx)}/rest/1.0/${path}`;

  /** Step 4 and "Refresh": POST /oauth/v2/token with the per-user credentials; `code` is the device code or the refresh token. */
  function tokenStep(ctx: DriverContext, client: UserClient, code: string, refusal = tokenRefusal): Promise<TokenSet> {
    const url = oauthUrl(ctx, 'token');
    const form = new URLSearchParams({ client_id: client.id, client_secret: client.secret, code, grant_type: DEVICE_GRANT });
    return step(
      ctx,
      {
        label: 'Real-Debrid token endpoint',
        url,
        secrets: [client.secret, client.id, code],
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      },
      toTokenSet,
      refusal,
    );
  }

  /** Step 3: GET /oauth/v2/device/credentials; the per-user credentials once the user approved the code. */
  function credentialsStep(ctx: DriverContext, deviceCode: string): Promise<UserClient> {
    const url = `${oauthUrl(ctx, 'device/credentials')}?${new URLSearchParams({ client_id: publicClientId(ctx), code: deviceCode })}`;
    return step(
      ctx,
      { label: 'Real-Debrid device credentials endpoint', url, secrets: [deviceCode], method: 'GET' },
      (json) => {
        const id = stringField(json, 'client_id');
        const secret = stringField(json, 'client_secret');
        return id && secret ? { id, secret } : undefined;
      },
      credentialsRefusal,
    );
  }

  /** The mobile apps' workflow, one poll: the token endpoint answers an error until the user approves. */
  async function pollWithOwnClient(ctx: DriverContext, client: UserClient, deviceCode: string): Promise<DevicePoll> {
    try {
      const tokens = await tokenStep(ctx, client, deviceCode, credentialsRefusal);
      return { status: 'tokens', tokens: { ...tokens, secrets: clientSecrets(client) } };
    } catch (err) {
      if (err instanceof DriverError && err.oauthError === 'authorization_pending') return { status: 'pending' };
      if (err instanceof DriverError && err.oauthError === 'slow_down') return { status: 'slow_down' };
      throw err;
    }
  }

  function prune(): void {
    const t = now();
    for (const [code, a] of approved) if (a.until <= t) approved.delete(code);
  }

  return {
    name: 'real-debrid',

    validate(cfg) {
      if (!cfg.client_id)
        return "client_id: the real-debrid driver needs a client id: the open-source one (--preset real-debrid sets it) or an app's own (--client-id, with its secret)";
      return needsBaseUrl(cfg, 'real-debrid');
    },

    // `GET /time` needs no token: it shows base_url reaches Real-Debrid's API without
    // creating anything (a device code made only to check would count against the limits).
    async check(ctx) {
      const url = restUrl(ctx, 'time');
      await step(ctx, { label: 'Real-Debrid API', url, secrets: [], method: 'GET' }, () => true, rdRefusal);
      return [];
    },

    // Step 1: a client id without a secret asks for per-user credentials (new_credentials=yes);
    // an app's own registered client needs none (the mobile apps' workflow).
    async startDeviceLogin(ctx) {
      const query: Record<string, string> = { client_id: publicClientId(ctx), ...(ownClient(ctx) ? {} : { new_credentials: 'yes' }) };
      const url = `${oauthUrl(ctx, 'device/code')}?${new URLSearchParams(query)}`;
      return step(ctx, { label: 'Real-Debrid device code endpoint', url, secrets: [], method: 'GET' }, toDeviceAuthorization, rdRefusal);
    },

    // Steps 3 and 4 in one poll: once the credentials come, the tokens are asked for at once.
    async pollDeviceLogin(ctx, deviceCode) {
      const own = ownClient(ctx);
      if (own) return pollWithOwnClient(ctx, own, deviceCode);
      prune();
      let client = approved.get(deviceCode)?.client;
      if (!client) {
        try {
          client = await credentialsStep(ctx, deviceCode);
        } catch (err) {
          if (err instanceof DriverError && err.oauthError === 'authorization_pending') return { status: 'pending' };
          if (err instanceof DriverError && err.oauthError === 'slow_down') return { status: 'slow_down' };
          throw err;
        }
        approved.set(deviceCode, { client, until: now() + APPROVED_TTL_MS });
      }
      try {
        const tokens = await tokenStep(ctx, client, deviceCode);
        approved.delete(deviceCode);
        return { status: 'tokens', tokens: { ...tokens, secrets: clientSecrets(client) } };
      } catch (err) {
        if (!(err instanceof DriverError && err.kind === 'transient')) approved.delete(deviceCode);
        throw err;
      }
    },

    importSecrets: (client) => clientSecrets({ id: client.client_id, secret: client.client_secret }),

    // An imported access token is proven with `GET /rest/1.0/user`, which changes nothing.
    async checkAccessToken(ctx, accessToken) {
      const url = restUrl(ctx, 'user');
      await step(
        ctx,
        { label: 'Real-Debrid API', url, secrets: [accessToken], method: 'GET', headers: { authorization: `Bearer ${accessToken}` } },
        () => true,
        (r) => {
          if (r.status === 401 || r.status === 403) {
            return new DriverError('invalid_grant', `the ${r.where} refused the access token: HTTP ${r.status}${detailOf(r)}`, {
              status: r.status,
              oauthError: 'invalid_token',
            });
          }
          return rdRefusal(r);
        },
      );
    },

    // "Refresh": the same grant, the refresh token in `code`. The doc does not say whether the
    // refresh token rotates; an answer without one keeps the old (the broker's rule 5).
    async refresh(ctx, refreshToken) {
      return tokenStep(ctx, userClient(ctx), refreshToken);
    },

    // `GET /rest/1.0/disable_access_token` disables the current access token (204). The
    // refresh token has no revocation: it lives until the user revokes the app's rights.
    async revoke(ctx, token, hint) {
      const access = hint === 'access_token' ? token : ctx.currentAccessToken;
      if (!access) return;
      const url = restUrl(ctx, 'disable_access_token');
      try {
        await step(
          ctx,
          { label: 'Real-Debrid API', url, secrets: [access], method: 'GET', headers: { authorization: `Bearer ${access}` } },
          () => true,
          rdRefusal,
        );
      } catch (err) {
        // 401: the token is already invalid, which is what revoking wants (as RFC 7009 §2.2 says of revocation).
        if (err instanceof DriverError && err.status === 401) return;
        throw err;
      }
    },
  };
}

function publicClientId(ctx: DriverContext): string {
  if (!ctx.config.client_id)
    throw new DriverError('config', `account "${ctx.name}" has no client id (--preset real-debrid sets the open-source one)`);
  return ctx.config.client_id;
}

/** An app's own registered client (the account's client id and its secret), if it has one. */
function ownClient(ctx: DriverContext): UserClient | undefined {
  return ctx.clientSecret ? { id: publicClientId(ctx), secret: ctx.clientSecret } : undefined;
}

/** How the client that issued a grant is stored with it. */
function clientSecrets(client: UserClient): Record<string, string> {
  return { [RD_SECRETS.clientId]: client.id, [RD_SECRETS.clientSecret]: client.secret };
}

/**
 * The client the grant was issued to (stored with it), else the app's own; without either no
 * refresh can work: a login mints one, or an import brings the one the refresh token belongs to.
 */
function userClient(ctx: DriverContext): UserClient {
  const id = ctx.secret(RD_SECRETS.clientId);
  const secret = ctx.secret(RD_SECRETS.clientSecret);
  if (id && secret) return { id, secret };
  const own = ownClient(ctx);
  if (own) return own;
  throw new DriverError(
    'invalid_grant',
    `account "${ctx.name}" has no Real-Debrid client to refresh with: a refresh token works only with the client it was issued to. ` +
      `Import it with that client (\`tokend import ${ctx.name} --tokens-stdin\` with {"client_id", "client_secret", "refresh_token"}), or run \`tokend login ${ctx.name}\``,
  );
}

/** Step 1's answer (the doc names the URL `verification_url`; RFC 8628 calls it `verification_uri`). */
function toDeviceAuthorization(json: unknown): DeviceAuthorization | undefined {
  const device_code = stringField(json, 'device_code');
  const user_code = stringField(json, 'user_code');
  const verification_uri = stringField(json, 'verification_url');
  const expires_in = positiveField(json, 'expires_in');
  if (!device_code || !user_code || !verification_uri || !expires_in || !isWebUrl(verification_uri)) return undefined;
  // Not in the doc, but sent by the service (third-party clients use it): the URL with the code in it, for the QR code.
  const direct = stringField(json, 'direct_verification_url');
  const interval = positiveField(json, 'interval');
  return {
    device_code,
    user_code,
    verification_uri,
    ...(direct && isWebUrl(direct) ? { verification_uri_complete: direct } : {}),
    expires_in,
    ...(interval !== undefined ? { interval } : {}),
  };
}

function isWebUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/** Step 4's and the refresh's answer: `{access_token, expires_in, token_type, refresh_token}`. */
function toTokenSet(json: unknown): TokenSet | undefined {
  const access_token = stringField(json, 'access_token');
  if (!access_token) return undefined;
  const type = stringField(json, 'token_type') ?? 'Bearer';
  const expires_in = positiveField(json, 'expires_in');
  const refresh_token = stringField(json, 'refresh_token');
  return {
    access_token,
    // The REST API takes `Authorization: Bearer`; keep RFC 6750's spelling.
    token_type: type.toLowerCase() === 'bearer' ? 'Bearer' : type,
    ...(expires_in !== undefined ? { expires_in } : {}),
    ...(refresh_token ? { refresh_token } : {}),
  };
}

/** The documented error body, when the answer has one. */
function rdError(json: unknown): { error?: string; code?: number } | undefined {
  const error = stringField(json, 'error');
  const code = field(json, 'error_code');
  if (error === undefined && typeof code !== 'number') return undefined;
  return { error, ...(typeof code === 'number' ? { code } : {}) };
}

function detailOf(r: Refusal, e = rdError(r.json)): string {
  if (!e) return '';
  const parts = [e.error ? r.clean(e.error).slice(0, 64) : undefined, e.code !== undefined ? `error_code ${e.code}` : undefined].filter(
    Boolean,
  );
  return ` (${parts.join(', ')})`;
}

/**
 * What any Real-Debrid answer means whatever the endpoint: too many requests (34, and 429)
 * and the service's own trouble are transient, with `Retry-After`; a malformed request (1,
 * 3, 4) or a missing endpoint (404, 405) is a configuration error.
 */
function rdRefusal(r: Refusal): DriverError | undefined {
  const e = rdError(r.json);
  const detail = detailOf(r, e);
  if (e?.code !== undefined && TRY_LATER.has(e.code)) {
    return new DriverError('transient', `the ${r.where} answered HTTP ${r.status}${detail}`, {
      status: r.status,
      retryAfterMs: r.retryAfterMs,
      oauthError: e.error,
    });
  }
  if ((e?.code !== undefined && OUR_MISTAKE.has(e.code)) || r.status === 404 || r.status === 405) {
    return new DriverError('config', `the ${r.where} refused tokend's request: HTTP ${r.status}${detail}`, { status: r.status });
  }
  return undefined;
}

/**
 * The token endpoint's refusals: beyond `rdRefusal`, any 400, 401 or 403 means the grant or
 * the per-user credentials are refused (a bad or revoked refresh token, the app's rights
 * revoked by the user): only a new device login helps.
 */
function tokenRefusal(r: Refusal): DriverError | undefined {
  const common = rdRefusal(r);
  if (common) return common;
  if (r.status === 400 || r.status === 401 || r.status === 403) {
    return new DriverError('invalid_grant', `the ${r.where} refused the grant: HTTP ${r.status}${detailOf(r)}`, {
      status: r.status,
      oauthError: 'invalid_grant',
    });
  }
  return undefined;
}

/**
 * Polling for the credentials. The doc says only that the endpoint answers "an error" until
 * the user approves, not which. 403 is what the service is seen to answer (third-party
 * clients that treated it as fatal failed every login), so 403, whatever its body, and any
 * other 4xx in the documented error shape, mean "not yet"; `slow_down` (5) slows the polling;
 * too many requests (34, 429) and the service's trouble back off. A 4xx that is not the
 * documented shape, or a malformed request, ends the login.
 */
function credentialsRefusal(r: Refusal): DriverError | undefined {
  const e = rdError(r.json);
  if (e?.code === CODE.slowDown || e?.error === 'slow_down') {
    return new DriverError('transient', `the ${r.where} asked to slow down`, { status: r.status, oauthError: 'slow_down' });
  }
  const common = rdRefusal(r);
  if (common) return common;
  if (r.status === 403 || (e && r.status >= 400 && r.status < 500)) {
    return new DriverError('transient', `the ${r.where}: not approved yet`, { status: r.status, oauthError: 'authorization_pending' });
  }
  return undefined;
}
