/**
 * Who called the daemon, as the daemon verified it (not as the caller declared itself: that
 * is the User-Agent, beside it as `user_agent`). On the Unix socket the kernel names the
 * peer process (SO_PEERCRED); the daemon reads the rest from /proc, checked against the
 * process's start time so a reused pid is never taken for the caller. On the loopback
 * listener there is no process to read: the caller is the app key it showed (`key`).
 */
import { z } from 'zod';

/** Longest path or name kept for one field (an audit row's detail is bounded). */
export const CALLER_TEXT_MAX = 240;
/** How many parents up the chain the daemon reads. */
export const CALLER_PARENTS_MAX = 4;

export const Caller = z.object({
  pid: z.number().int().positive().optional().describe('the calling process (absent for a listener app key)'),
  exe: z.string().optional().describe('its executable (/proc/PID/exe)'),
  script: z.string().optional().describe('for an interpreter (node, python3, sh, perl, ruby): the script it runs'),
  unit: z.string().optional().describe('the systemd unit it runs in'),
  parents: z.array(z.string()).describe(`the executables of its parents, nearest first, at most ${CALLER_PARENTS_MAX}`),
  key: z.string().optional().describe('on the loopback listener: the app key it showed'),
});
export type Caller = z.infer<typeof Caller>;

/** A caller as a record shows it: what the daemon verified, and the User-Agent it declared. Empty when the daemon acted by itself. */
export const RecordedCaller = Caller.partial().extend({
  user_agent: z.string().optional().describe('the User-Agent it declared (not verified)'),
});
export type RecordedCaller = z.infer<typeof RecordedCaller>;

/** The `caller` of a record or event: undefined when nothing is known (the daemon acted by itself). */
export function recordedCaller(userAgent: string | undefined, by: Caller | undefined): { caller?: RecordedCaller } {
  if (userAgent === undefined && by === undefined) return {};
  return { caller: { ...by, ...(userAgent === undefined ? {} : { user_agent: userAgent }) } };
}
