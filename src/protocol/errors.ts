/**
 * The closed set of error codes on the wire, with the HTTP status each goes out with
 * (docs/api.md). No zod here: the client
 * imports this on its fast path.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  import_refused: 400,
  unauthorized: 401,
  forbidden: 403,
  caller_not_allowed: 403,
  not_found: 404,
  login_not_found: 404,
  reauth_required: 409,
  login_pending: 409,
  conflict: 409,
  payload_too_large: 413,
  rate_limited: 429,
  provider_rejected: 502,
  upstream_failed: 502,
  upstream_timeout: 504,
  upstream_unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** CLI exit statuses (README, CLI reference). */
export const EXIT = { ok: 0, error: 1, usage: 2, reauth: 3 } as const;
