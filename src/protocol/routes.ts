/**
 * The API proxy's prefix: `/v1/proxy/NAME/PATH` goes to account NAME's `api_base` + PATH.
 * The daemon serves it before any router (it matches the raw request target).
 */
export const PROXY_PREFIX = '/v1/proxy/';

/**
 * Every path of the socket API, once. The daemon registers these patterns with its router
 * (`:name` matches one path segment); the client builds its URLs from the same entries
 * through {@link ROUTES}, so the two sides cannot name a route differently. A new route is
 * one line here.
 */
export const ROUTE_PATTERNS = {
  health: '/v1/health',
  accounts: '/v1/accounts',
  account: '/v1/accounts/:name',
  accountImport: '/v1/accounts/:name/import',
  accountRefresh: '/v1/accounts/:name/refresh',
  /** The driver's recover step on demand (Cal.com's force-refresh, AMP's obtain_token). */
  accountRecover: '/v1/accounts/:name/recover',
  accountLogout: '/v1/accounts/:name/logout',
  accountLogin: '/v1/accounts/:name/login',
  login: '/v1/logins/:id',
  loginCancel: '/v1/logins/:id/cancel',
  loginCallback: '/v1/logins/:id/callback',
  loginCallbackByState: '/v1/logins/callback',
  logins: '/v1/logins',
  /** The account's API through the daemon: the rest of the path (and query) goes below its `api_base`. */
  proxy: `${PROXY_PREFIX}:name/*`,
  openapi: '/v1/openapi.json',
  token: '/v1/token',
  /** A DPoP proof for one request of a DPoP account, with its token (RFC 9449). */
  dpopProof: '/v1/dpop/proof',
  credentialReject: '/v1/credential/reject',
  events: '/v1/events',
  helper: '/v1/helpers/:tool/:action',
  /** The master key's place (file or OS keyring): where it is, and moving it. */
  key: '/v1/key',
  keyMove: '/v1/key/move',
  /** Who did what to which account, newest first (the audit log). */
  audit: '/v1/audit',
  /** Requests of `ask` accounts waiting for the user, and the user's decision on one. */
  approvals: '/v1/approvals',
  approval: '/v1/approvals/:id',
} as const;

type Patterns = typeof ROUTE_PATTERNS;

/** The parameters of a pattern, in order: each `:name`, and `*` for a trailing wildcard. */
type Params<P extends string> = P extends `${infer Head}/*`
  ? [...Params<Head>, '*']
  : P extends `${string}:${infer Name}/${infer Rest}`
    ? [Name, ...Params<Rest>]
    : P extends `${string}:${infer Name}`
      ? [Name]
      : [];

/** One string per parameter (a generic alias, so the mapping keeps the tuple's shape). */
type Values<T extends string[]> = { [K in keyof T]: string };

/** A pattern without parameters is its own URL; one with parameters takes their values in order. */
type Builder<P extends string> = Params<P> extends [] ? P : (...values: Values<Params<P>>) => string;

const PARAM = /:[A-Za-z]+|\/\*$/g;

/**
 * The URL of `pattern` with `values` in its parameters' places: each `:name` gets one
 * value, encoded as one path segment; a trailing `*` gets the rest of a path (with any
 * query) as it is, without its leading slash.
 */
export function routePath(pattern: string, ...values: string[]): string {
  let i = 0;
  return pattern.replace(PARAM, (p) =>
    p === '/*' ? `/${(values[i++] ?? '').replace(/^\/+/, '')}` : encodeURIComponent(values[i++] ?? ''),
  );
}

function builder(pattern: string): string | ((...values: string[]) => string) {
  return pattern.includes(':') || pattern.endsWith('/*') ? (...values) => routePath(pattern, ...values) : pattern;
}

/** URLs of the socket API for the client: `ROUTES.health`, `ROUTES.account(name)`, `ROUTES.helper(tool, action)`. */
export const ROUTES = Object.fromEntries(Object.entries(ROUTE_PATTERNS).map(([k, p]) => [k, builder(p)])) as {
  readonly [K in keyof Patterns]: Builder<Patterns[K]>;
};

/**
 * Set by the daemon on an answer of `/v1/proxy/…` that it wrote itself (an error in the
 * wire shape: unknown account, no token, the upstream unreachable), with the error code as
 * its value; never passed through from an upstream, whose answers (any status) go to the
 * caller as they are. This is how a client tells "tokend could not" from "the API said".
 */
export const PROXY_ERROR_HEADER = 'x-tokend-error';

/** Largest request body the daemon reads. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Header a client uses to say who it is; recorded in the audit log. */
export const CLIENT_HEADER = 'user-agent';

/**
 * Query flags of `PUT`/`PATCH /v1/accounts/:name`:
 * - `replace_grant=true`: the change moves the account to another provider or client
 *   (its grant identity, see `GRANT_IDENTITY_FIELDS` in api.ts); revoke the old grant at its
 *   provider and drop it. Without it such a change is refused (409 `conflict`).
 * - `check=false`: do not contact the provider to check the account (offline setup).
 */
export const ACCOUNT_WRITE_FLAGS = { replaceGrant: 'replace_grant', check: 'check' } as const;
