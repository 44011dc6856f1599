import { z } from 'zod';

/** The closed set of error codes on the wire, with the HTTP status each goes out with (DESIGN.md, Socket API). */
export const ERROR_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  not_found: 404,
  reauth_required: 409,
  login_pending: 409,
  payload_too_large: 413,
  rate_limited: 429,
  provider_rejected: 502,
  upstream_unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;
export const ErrorCode = z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]);

/** `{"error": {"code", "message"}}`; `retry_after` (seconds) when the daemon knows when to try again. */
export const ErrorBody = z.object({
  error: z.object({
    code: ErrorCode,
    message: z.string(),
    account: z.string().optional(),
    retry_after: z.number().optional(),
    login: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/** CLI exit statuses (DESIGN.md, CLI). */
export const EXIT = { ok: 0, error: 1, usage: 2, reauth: 3 } as const;
