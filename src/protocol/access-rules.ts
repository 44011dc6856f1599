/**
 * The parts of an account's access (access.ts) the thin client needs, without zod: the
 * modes, the bounds, and a rule as the CLI's flags say it.
 */

/** A rule's shape (access.ts's `AccessRule` schema checks it on the wire). */
type RuleShape =
  | { script: string; exe?: string }
  | { exe: string }
  | { unit: string }
  | { ancestor: string }
  | { key: string }
  | { tty: true };

export const ACCESS_MODES = ['open', 'callers', 'ask'] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];

/** How long an `ask` waits for the user by default, and at most. */
export const ASK_TIMEOUT_DEFAULT_S = 30;
export const ASK_TIMEOUT_MAX_S = 3600;
/** Rules one account may carry. */
export const ACCESS_RULES_MAX = 64;

/** One rule as the CLI's flags say it (`--exe /usr/bin/git`, `--script /x.js --exe /usr/bin/node`). */
export function ruleFlags(rule: RuleShape): string {
  if ('script' in rule) return `--script ${rule.script}${rule.exe ? ` --exe ${rule.exe}` : ''}`;
  if ('exe' in rule) return `--exe ${rule.exe}`;
  if ('unit' in rule) return `--unit ${rule.unit}`;
  if ('ancestor' in rule) return `--ancestor ${rule.ancestor}`;
  if ('key' in rule) return `--key ${rule.key}`;
  return '--tty';
}
