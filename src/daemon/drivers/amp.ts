/**
 * Blockstream AMP (docs.liquid.net "AMP API", the AMP API Specification): a username and
 * password obtain a token (`POST {base}/user/obtain_token` → `{"token"}`), sent as
 * `Authorization: token <token>`: the scheme is the word `token`, not Bearer. There is no
 * refresh token, so every new token is the recover step: obtain again with the stored
 * password. The token's lifetime is documented nowhere; when it is a JWT, its own `exp` says.
 *
 * `refresh_with_token` first tries `POST {base}/user/refresh_token` with the current token
 * (seen only in the third-party amp-rust client, not in Blockstream's documentation),
 * falling back to obtain_token on any failure.
 */
import { DriverError, type Driver, type DriverContext, type TokenSet } from './driver.js';
import { jwtLifetime } from './jwt-lifetime.js';
import { field, needsBaseUrl, providerSteps, serviceRoot, stringField, type ProviderDriverOptions, type Refusal } from './provider-http.js';

/** The Authorization scheme AMP wants, carried as the token type (the proxy and `tokend token --json` use it). */
export const AMP_TOKEN_TYPE = 'token';

export function createAmpDriver(opts: ProviderDriverOptions = {}): Driver {
  const step = providerSteps(opts);

  /** POST /user/obtain_token with the username and the stored password. */
  function obtain(ctx: DriverContext): Promise<TokenSet> {
    const { username, password } = credentials(ctx);
    const url = `${serviceRoot(ctx)}/user/obtain_token`;
    return step(
      ctx,
      {
        label: 'AMP obtain_token endpoint',
        url,
        secrets: [password],
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password }),
      },
      toTokenSet,
      (r) => credentialsRefusal(r, ctx, username),
    );
  }

  /** POST /user/refresh_token presenting the current token (unconfirmed endpoint). */
  function refreshWithToken(ctx: DriverContext, current: string): Promise<TokenSet> {
    const url = `${serviceRoot(ctx)}/user/refresh_token`;
    return step(
      ctx,
      {
        label: 'AMP refresh_token endpoint',
        url,
        secrets: [current],
        method: 'POST',
        headers: { authorization: `${AMP_TOKEN_TYPE} ${current}` },
      },
      toTokenSet,
      () => undefined,
    );
  }

  return {
    name: 'amp',

    validate(cfg) {
      if (!cfg.username)
        return 'username: the amp driver obtains its token with a username and password (--username U, and the password with --password-stdin)';
      if (cfg.client_id) return 'client_id: AMP has no OAuth client; leave --client-id out';
      // The password flow makes the username part of the grant's identity: a token obtained
      // for one user never serves the account after it names another.
      if (cfg.flow !== 'password')
        return 'flow: the amp driver obtains its token with the password: --flow password (the amp preset sets it)';
      return needsBaseUrl(cfg, 'amp');
    },

    reauthHint: (account) => `\`printf %s "$PASSWORD" | tokend set ${account} --password-stdin\` to give the right password`,

    // `tokend add` then obtains the first token with `recover`, which proves the password.
    async check(ctx) {
      credentials(ctx);
      return [];
    },

    // AMP issues no refresh tokens: one imported by mistake is refused, and the broker
    // obtains a token with the password instead.
    async refresh(ctx) {
      throw new DriverError(
        'invalid_grant',
        `AMP issues no refresh tokens; account "${ctx.name}" obtains its token with the stored password`,
      );
    },

    canRecover(ctx) {
      return Boolean(ctx.config.username && ctx.secret('password'));
    },

    async recover(ctx) {
      const current = ctx.currentAccessToken;
      if (ctx.config.refresh_with_token && current) {
        try {
          return await refreshWithToken(ctx, current);
        } catch {
          // Unconfirmed endpoint, or a token too old for it: the password always works.
        }
      }
      return obtain(ctx);
    },
  };
}

function credentials(ctx: DriverContext): { username: string; password: string } {
  const username = ctx.config.username;
  const password = ctx.secret('password');
  if (!username) throw new DriverError('config', `account "${ctx.name}" has no username (set it with --username)`);
  if (!password) {
    throw new DriverError('config', `account "${ctx.name}" has no password (give it on stdin with --password-stdin)`);
  }
  return { username, password };
}

function toTokenSet(json: unknown): TokenSet | undefined {
  const token = stringField(json, 'token');
  return token ? { access_token: token, token_type: AMP_TOKEN_TYPE, ...jwtLifetime(token) } : undefined;
}

/** What AMP said, when its body says something: a message, `detail`, or field errors. */
function detailOf(r: Refusal): string {
  const parts: string[] = [];
  const collect = (v: unknown) => {
    if (typeof v === 'string') parts.push(v);
    else if (Array.isArray(v)) v.forEach(collect);
    else if (v && typeof v === 'object') Object.values(v).forEach(collect);
  };
  collect(field(r.json, 'detail') ?? field(r.json, 'message') ?? field(r.json, 'error') ?? r.json);
  const text = r.clean(parts.join('; ')).slice(0, 200);
  return text ? ` (${text})` : '';
}

/**
 * 400, 401 or 403 from obtain_token: the username or password is wrong. Only the user can fix
 * that, so it is a configuration error (backed off, never retried in a loop against the
 * account, which repeated wrong passwords might lock), labelled `invalid_grant` as RFC 6749
 * §5.2 labels refused resource-owner credentials.
 */
function credentialsRefusal(r: Refusal, ctx: DriverContext, username: string): DriverError | undefined {
  if (r.status !== 400 && r.status !== 401 && r.status !== 403) return undefined;
  return new DriverError(
    'config',
    `the ${r.where} refused the username "${username}" or its password: HTTP ${r.status}${detailOf(r)}; give the right password with \`printf %s "$PASSWORD" | tokend set ${ctx.name} --password-stdin\``,
    { status: r.status, oauthError: 'invalid_grant' },
  );
}
