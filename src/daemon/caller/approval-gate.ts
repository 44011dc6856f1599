import type { CallerIdentity } from './proc.js';

/** Decides a request of an `ask` account that no rule allows: the user allows or denies it. */
export interface ApprovalGate {
  request(req: { account: string; caller: CallerIdentity; timeoutMs: number }): Promise<'allow' | 'deny'>;
}
