/**
 * Approvals: the ApprovalGate of `ask` accounts (docs/security.md). A request no rule allows
 * waits while the user decides (`tokend approvals allow|deny ID`, a desktop notification,
 * an app's own UI through `approval.pending`); unanswered, it is denied when the account's
 * `ask_timeout_s` runs out.
 *
 * Keying: a pending approval and an `allow --for` belong to one process running one program,
 * named by its pid, its start time, its executable and script (caller/proc.ts). Concurrent requests of
 * that process for the same account share one pending approval; a later process that gets
 * the same pid has another start time, and a program it execs is another program, so neither
 * inherits a decision. `--for` is deliberately not widened to the
 * program: trusting a program is a rule (`--always`, shown by `tokend access`), not an
 * invisible timer.
 */
import { randomBytes } from 'node:crypto';
import type { ApprovalDecision, ApprovalView } from '../../protocol/api.js';
import type { AccessRule } from '../../protocol/access.js';
import type { Caller, RecordedCaller } from '../../protocol/caller.js';
import type { AuditSink } from '../audit.js';
import { E, type ApiError } from '../errors.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../log.js';
import { ruleFlags } from '../../protocol/access-rules.js';
import { ruleFor } from './access.js';
import type { ApprovalGate, ApprovalRequest } from './approval-gate.js';
import type { CallerIdentity } from './proc.js';

/** At most this many approvals wait at once; past it a request is denied at once (a flood of programs asking cannot grow memory). */
export const MAX_PENDING = 256;
/** At most this many `--for` decisions are held; the oldest goes first. */
const MAX_TRUSTED = 10_000;

/** A caller's connection: a wait on its behalf ends when it closes (net.Socket). */
export interface CallerConnection {
  readonly destroyed: boolean;
  once(event: 'close', fn: () => void): unknown;
  off(event: 'close', fn: () => void): unknown;
}

/** How a decision was made: by the user (the API or a notification), or by the clock, or because the caller went away. */
export type DecidedVia = 'api' | 'notification' | 'timeout' | 'disconnected';

export interface ApprovalsDeps {
  events: Pick<EventBus, 'emit'>;
  audit: AuditSink;
  log: Logger;
  /** `--always`: add `rule` to the account's access (AccessControl.addRule). */
  addRule: (account: string, rule: AccessRule) => Promise<unknown>;
  /** The connection a caller came on (caller/connection.ts), when the request does not say. */
  connectionOf?: (who: CallerIdentity) => CallerConnection | undefined;
  /** Told of each new pending approval and of its end (the desktop notification, notify.ts). */
  notifier?: ApprovalNotifier;
  now?: () => number;
}

/** Something that shows a pending approval to the user and may decide it (notify.ts). */
export interface ApprovalNotifier {
  shown(approval: ApprovalView, decide: (decision: 'allow' | 'deny') => void): void;
  ended(id: string): void;
}

interface Pending {
  view: ApprovalView;
  identity: CallerIdentity;
  waiters: Set<(decision: 'allow' | 'deny', timedOut: boolean) => void>;
  timer: NodeJS.Timeout;
}

/**
 * One process running one program: its pid, start time, executable and script (a listener app
 * key has no pid: its key names it). The executable and script too because a process can exec
 * another program (or script) under the same pid and start time: that one is asked, not
 * trusted. Its parents and unit are left out: a parent exiting does not make it another program.
 */
export function processKey(account: string, id: CallerIdentity): string {
  const c = id.caller;
  return `${account}\0${c.pid ?? ''}\0${id.start}\0${c.pid === undefined ? id.program : `${c.exe ?? ''}\0${c.script ?? ''}`}`;
}

/** The rule `--always` adds: the caller's script with its interpreter, its executable, its unit, or its listener key (access.ts). */
export function alwaysRule(who: CallerIdentity): AccessRule {
  const rule = ruleFor(who);
  if (!rule) throw E.invalidRequest('this caller has no executable the daemon could read: allow it once or for a while instead of always');
  return rule;
}

export class Approvals implements ApprovalGate {
  private readonly pending = new Map<string, Pending>();
  /** Pending approvals by process key, for joining. */
  private readonly byProcess = new Map<string, string>();
  /** `allow --for`: process key → until (epoch ms). */
  private readonly trusted = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly deps: ApprovalsDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * Wait for the user's decision on `caller` taking `account`'s token: 'allow' or 'deny';
   * rejects with 403 `caller_not_allowed` when nobody answered in time. Once the connection
   * of every request waiting on an approval has closed, the approval goes too.
   */
  request(req: ApprovalRequest & { connection?: CallerConnection }): Promise<'allow' | 'deny'> {
    const key = processKey(req.account, req.caller);
    const until = this.trusted.get(key);
    if (until !== undefined) {
      if (until > this.now()) return Promise.resolve('allow');
      this.trusted.delete(key);
    }
    const conn = req.connection ?? this.deps.connectionOf?.(req.caller);
    if (conn?.destroyed) return Promise.resolve('deny');
    const id = this.byProcess.get(key);
    let p: Pending;
    try {
      p = id === undefined ? this.open(key, req) : this.pending.get(id)!;
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const waiter = (decision: 'allow' | 'deny', timedOut: boolean) => {
        conn?.off('close', gone);
        if (timedOut) reject(timedOutError(p.view, p.identity, req.timeoutMs));
        else resolve(decision);
      };
      const gone = () => {
        p.waiters.delete(waiter);
        resolve('deny');
        if (p.waiters.size === 0) this.end(p, 'deny', 'disconnected');
      };
      p.waiters.add(waiter);
      conn?.once('close', gone);
    });
  }

  private open(key: string, req: ApprovalRequest): Pending {
    if (this.pending.size >= MAX_PENDING) {
      throw E.callerNotAllowed(`${MAX_PENDING} approvals are already waiting; decide them (tokend approvals) and try again`, {
        account: req.account,
      });
    }
    const id = randomBytes(5).toString('hex');
    const view: ApprovalView = {
      id,
      account: req.account,
      caller: req.caller.caller,
      tty: req.caller.tty,
      expires_at: new Date(this.now() + req.timeoutMs).toISOString(),
    };
    const p: Pending = {
      view,
      identity: req.caller,
      waiters: new Set(),
      timer: setTimeout(() => this.end(p, 'deny', 'timeout'), req.timeoutMs),
    };
    p.timer.unref();
    this.pending.set(id, p);
    this.byProcess.set(key, id);
    this.deps.events.emit('approval.pending', req.account, {
      approval_id: id,
      caller: req.caller.caller,
      expires_at: view.expires_at,
    });
    this.deps.log.info('a caller waits for approval', {
      account: req.account,
      approval: id,
      exe: req.caller.caller.exe,
      pid: req.caller.caller.pid,
    });
    this.deps.notifier?.shown(view, (decision) => void this.decide(id, { decision }, {}, 'notification').catch(() => undefined));
    return p;
  }

  /** The approvals waiting now, oldest first. */
  list(): ApprovalView[] {
    return [...this.pending.values()].map((p) => p.view);
  }

  /**
   * The user's decision on approval `id` (404 when none waits: decided, timed out, or its
   * caller went away). `by` is who decided, as the route verified it.
   */
  async decide(id: string, d: ApprovalDecision, by: { caller?: string; by?: Caller }, via: DecidedVia = 'api'): Promise<ApprovalView> {
    const p = this.pending.get(id);
    if (!p) throw E.notFound(`no approval ${id} is waiting (it was decided, it timed out, or its caller went away; see tokend approvals)`);
    if (d.decision === 'allow' && d.always) {
      const rule = alwaysRule(p.identity);
      // The rule first: when it cannot be added, the request still waits and the user may decide otherwise.
      await this.deps.addRule(p.view.account, rule);
      if (!this.pending.has(id)) return p.view; // decided meanwhile
    }
    if (d.decision === 'allow' && d.for_s !== undefined) {
      if (this.trusted.size >= MAX_TRUSTED) this.trusted.delete(this.trusted.keys().next().value!);
      this.trusted.set(processKey(p.view.account, p.identity), this.now() + d.for_s * 1000);
    }
    this.end(p, d.decision, via, by, d);
    return p.view;
  }

  /** Decide `p` for every request waiting on it, and say so: an event, an audit row, the notification closed. */
  private end(
    p: Pending,
    decision: 'allow' | 'deny',
    via: DecidedVia,
    by: { caller?: string; by?: Caller } = {},
    d?: ApprovalDecision,
  ): void {
    const { id, account, caller } = p.view;
    if (this.pending.get(id) !== p) return;
    this.pending.delete(id);
    for (const [k, v] of this.byProcess) if (v === id) this.byProcess.delete(k);
    clearTimeout(p.timer);
    const decidedBy: RecordedCaller | undefined =
      by.caller === undefined && by.by === undefined
        ? undefined
        : { ...by.by, ...(by.caller === undefined ? {} : { user_agent: by.caller }) };
    const extra = { ...(d?.for_s !== undefined ? { for_s: d.for_s } : {}), ...(d?.always ? { always: true } : {}) };
    this.deps.events.emit('approval.decided', account, {
      approval_id: id,
      caller,
      decision,
      via,
      ...extra,
      ...(decidedBy ? { decided_by: decidedBy } : {}),
    });
    this.deps.audit.record({
      account,
      action: decision === 'allow' ? 'approval_allowed' : 'approval_denied',
      by: caller,
      outcome: decision === 'allow' ? 'ok' : 'refused',
      code: via === 'timeout' || via === 'disconnected' ? via : null,
      detail: { approval_id: id, via, ...extra, ...(decidedBy ? { decided_by: decidedBy } : {}) },
    });
    this.deps.notifier?.ended(id);
    for (const w of p.waiters) w(decision, via === 'timeout');
  }

  /** Shutdown: every waiting request is denied. */
  close(): void {
    for (const p of [...this.pending.values()]) this.end(p, 'deny', 'disconnected');
  }
}

function timedOutError(view: ApprovalView, identity: CallerIdentity, timeoutMs: number): ApiError {
  const who = view.caller.script ?? view.caller.exe ?? (view.caller.key === undefined ? 'the caller' : `app key ${view.caller.key}`);
  // The way to stop being asked, as the refusal of a `callers` account names it (access.ts).
  const rule = ruleFor(identity);
  const always = rule ? `, or for good: tokend access ${view.account} ask --add ${ruleFlags(rule)}` : '';
  return E.callerNotAllowed(
    `${who} (pid ${view.caller.pid ?? '-'}) timed out waiting for approval to use account "${view.account}" ` +
      `(${Math.round(timeoutMs / 1000)} s; approve it while it waits: tokend approvals allow ${view.id}${always})`,
    { account: view.account },
  );
}
