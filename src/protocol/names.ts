/**
 * An account name: it becomes part of URLs (`/v1/accounts/:name`) and log lines,
 * so it is a plain identifier: no slashes, no dot first, at most 64 characters.
 * Kept free of zod so the thin client can check names without loading it.
 */
export const ACCOUNT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const ACCOUNT_NAME_RULE = 'account names are 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit';

/** True when `name` is a valid account name; cheap enough for the hot path. */
export function isAccountName(name: string): boolean {
  return ACCOUNT_NAME_RE.test(name);
}
