/**
 * The one question an `ask` account puts to the user (issue 23 part 3): a caller no rule of
 * the account allows waits here until the user allows or denies it, or `timeoutMs` passes
 * (then `deny`). The access check (access.ts) calls `request` and nothing else; the daemon's
 * deps carry the gate (main.ts), so the approvals (pending requests, `tokend approvals`, the
 * notification and event) plug in their own.
 */
import type { CallerIdentity } from './proc.js';

export interface ApprovalRequest {
  account: string;
  caller: CallerIdentity;
  timeoutMs: number;
}

export interface ApprovalGate {
  request(req: ApprovalRequest): Promise<'allow' | 'deny'>;
}

/** Without approvals, `ask` refuses at once, as `callers` does (never a silent allow). */
export const denyingGate: ApprovalGate = {
  request: async () => 'deny',
};
