import { ERROR_STATUS, type ErrorCode } from '../protocol/errors.js';

/** The daemon's one error class: a wire code from the closed set, a message safe to show. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly account?: string;
  /** Seconds after which trying again may succeed. */
  readonly retryAfter?: number;
  readonly login?: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, extra: { account?: string; retryAfter?: number; login?: Record<string, unknown> } = {}) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.account = extra.account;
    this.retryAfter = extra.retryAfter;
    this.login = extra.login;
  }
}

type Extra = ConstructorParameters<typeof ApiError>[2];
const factory =
  (code: ErrorCode) =>
  (message: string, extra?: Extra): ApiError =>
    new ApiError(code, message, extra);

/** Factories, one per wire code (in the style of oidc-provider's `E('slow_down', …)`). */
export const E = {
  invalidRequest: factory('invalid_request'),
  importRefused: factory('import_refused'),
  unauthorized: factory('unauthorized'),
  forbidden: factory('forbidden'),
  callerNotAllowed: factory('caller_not_allowed'),
  notFound: factory('not_found'),
  reauthRequired: factory('reauth_required'),
  loginPending: factory('login_pending'),
  conflict: factory('conflict'),
  payloadTooLarge: factory('payload_too_large'),
  rateLimited: factory('rate_limited'),
  upstreamUnavailable: factory('upstream_unavailable'),
  providerRejected: factory('provider_rejected'),
  upstreamFailed: factory('upstream_failed'),
  upstreamTimeout: factory('upstream_timeout'),
  internal: factory('internal'),
};

export function unknownAccount(name: string): ApiError {
  return E.notFound(`no account named "${name}" (see \`tokend list\`, or add it with \`tokend add ${name} …\`)`, {
    account: name,
  });
}
