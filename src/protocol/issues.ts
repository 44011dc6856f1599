import type { z } from 'zod';

/**
 * zod issues as one line per field, e.g. `accounts.work.client_id: Invalid input`: what a
 * 400 answer and a config error say, never a raw ZodError.
 */
export function describeIssues(err: z.ZodError, prefix = ''): string {
  return err.issues
    .map((i) => {
      const where = [prefix, ...i.path.map(String)].filter(Boolean).join('.');
      return `${where || '(top level)'}: ${i.message}`;
    })
    .join('; ');
}
