/**
 * Who may take an account's token (issue 23 part 3, docs/security.md): the account's `access`.
 * `open` (the default, no field written): any process of the user. `callers`: only a caller
 * one of the rules allows. `ask`: a caller no rule allows waits while the user decides
 * (`ask_timeout_s`), else it is refused as under `callers`.
 */
import { z } from 'zod';
import { ACCOUNT_NAME_RE, ACCOUNT_NAME_RULE } from './names.js';
import { ACCESS_MODES, ACCESS_RULES_MAX, ASK_TIMEOUT_MAX_S } from './access-rules.js';

export { ACCESS_MODES, ASK_TIMEOUT_DEFAULT_S, type AccessMode } from './access-rules.js';

const absolutePath = (what: string) =>
  z
    .string()
    .min(2)
    .max(4096)
    .refine((p) => p.startsWith('/'), { message: `${what} must be an absolute path (e.g. /usr/bin/git)` });

/**
 * One rule; the caller it allows:
 * - `{exe}`: that executable (its real path, as /proc/PID/exe names it);
 * - `{script, exe?}`: an interpreter (node, python3, sh…) running that script file, and when `exe` is given only that interpreter;
 * - `{unit}`: a process in that systemd unit (its cgroup);
 * - `{ancestor}`: that executable anywhere up the caller's parent chain (`/usr/bin/git` for the git helper);
 * - `{key}`: the loopback listener's app key of that name (`tokend listen-key --app NAME`);
 * - `{tty: true}`: a process with a controlling terminal (the CLI run by hand).
 */
export const AccessRule = z.union([
  z.object({ script: absolutePath('script'), exe: absolutePath('exe').optional() }).strict(),
  z.object({ exe: absolutePath('exe') }).strict(),
  z
    .object({
      unit: z
        .string()
        .min(1)
        .max(256)
        .regex(/^[^/\s]+$/, 'a unit is a name like app.service, without / or spaces'),
    })
    .strict(),
  z.object({ ancestor: absolutePath('ancestor') }).strict(),
  z.object({ key: z.string().regex(ACCOUNT_NAME_RE, { message: `a key is an app name: ${ACCOUNT_NAME_RULE}` }) }).strict(),
  z.object({ tty: z.literal(true) }).strict(),
]);
export type AccessRule = z.infer<typeof AccessRule>;

export const Access = z
  .object({
    mode: z.enum(ACCESS_MODES),
    callers: z.array(AccessRule).max(ACCESS_RULES_MAX).default([]),
    ask_timeout_s: z.number().int().min(1).max(ASK_TIMEOUT_MAX_S).optional(),
  })
  .strict()
  .superRefine((a, ctx) => {
    if (a.mode === 'open' && a.callers.length > 0)
      ctx.addIssue({ code: 'custom', message: 'mode open allows every caller: give callers only with mode callers or ask' });
    if (a.mode === 'callers' && a.callers.length === 0)
      ctx.addIssue({ code: 'custom', message: 'mode callers needs at least one rule in callers (or it would refuse every caller)' });
    if (a.ask_timeout_s !== undefined && a.mode !== 'ask') ctx.addIssue({ code: 'custom', message: 'ask_timeout_s is for mode ask' });
  });
export type Access = z.infer<typeof Access>;

/** `owner` on account creation: `self` makes the account `callers` with the creating caller as its one rule. */
export const AccountOwner = z.enum(['self']);
export type AccountOwner = z.infer<typeof AccountOwner>;

export { ruleFlags } from './access-rules.js';
