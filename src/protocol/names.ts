import { z } from 'zod';

/**
 * An account name: it becomes part of URLs (`/v1/accounts/:name`) and log lines,
 * so it is a plain identifier: no slashes, no dots at the start, at most 64 chars.
 */
export const AccountName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
    message: 'account names are 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit',
  });
export type AccountName = z.infer<typeof AccountName>;

/** True when `name` is a valid account name; cheap enough for the hot path. */
export function isAccountName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name);
}
