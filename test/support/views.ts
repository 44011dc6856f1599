/**
 * An account's view (`GET /v1/accounts/:name`) as it stands when nothing happens to the
 * account: without `expires_in`, the seconds left, which count down between two reads.
 * For tests that check an account was left exactly as it was.
 */
export function atRest<T extends { expires_in?: unknown }>(view: T): Omit<T, 'expires_in'> {
  const { expires_in: _ticking, ...rest } = view;
  return rest;
}
