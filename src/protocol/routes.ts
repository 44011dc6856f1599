/** Paths of the socket API (DESIGN.md, Socket API). One place, so daemon and client cannot drift. */
export const ROUTES = {
  health: '/v1/health',
  accounts: '/v1/accounts',
  account: (name: string) => `/v1/accounts/${encodeURIComponent(name)}`,
  accountImport: (name: string) => `/v1/accounts/${encodeURIComponent(name)}/import`,
  accountRefresh: (name: string) => `/v1/accounts/${encodeURIComponent(name)}/refresh`,
  accountLogout: (name: string) => `/v1/accounts/${encodeURIComponent(name)}/logout`,
  accountLogin: (name: string) => `/v1/accounts/${encodeURIComponent(name)}/login`,
  login: (id: string) => `/v1/logins/${encodeURIComponent(id)}`,
  loginCancel: (id: string) => `/v1/logins/${encodeURIComponent(id)}/cancel`,
  loginCallback: (id: string) => `/v1/logins/${encodeURIComponent(id)}/callback`,
  logins: '/v1/logins',
  /** The account's API through the daemon: `rest` is the path under its `api_base` (with any query). */
  proxy: (name: string, rest: string) => `/v1/proxy/${encodeURIComponent(name)}/${rest.replace(/^\//, '')}`,
  openapi: '/v1/openapi.json',
  token: '/v1/token',
  credentialReject: '/v1/credential/reject',
  events: '/v1/events',
  helper: (tool: string, action: string) => `/v1/helpers/${tool}/${action}`,
} as const;

/**
 * Query flags of `PUT`/`PATCH /v1/accounts/:name`:
 * - `replace_grant=true`: the change moves the account to another provider or client
 *   (its grant identity, see `GRANT_IDENTITY_FIELDS` in api.ts); revoke the old grant at its
 *   provider and drop it. Without it such a change is refused (409 `conflict`).
 * - `check=false`: do not contact the provider to check the account (offline setup).
 */
export const ACCOUNT_WRITE_FLAGS = { replaceGrant: 'replace_grant', check: 'check' } as const;

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
