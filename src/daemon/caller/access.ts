/**
 * Who may take an account's token (issue 23 part 3; docs/security.md): the one check every
 * path that serves a token calls (`POST /v1/token`, the helper routes, the proxy lane).
 *
 * `decide` is pure: the account's `access` and the verified caller in, `allow`, `deny` or
 * `ask` out. `AccessControl.check` adds what a request needs around it: the decision cached
 * for the connection's caller (a keep-alive client pays for the rules once per account, not
 * per request), the approval gate for `ask`, and the audit row and event of a refusal.
 */
import { ASK_TIMEOUT_DEFAULT_S, type Access, type AccessRule, ruleFlags } from '../../protocol/access.js';
import type { AccountConfig } from '../../protocol/api.js';
import { recordedCaller } from '../../protocol/caller.js';
import type { AuditLog } from '../audit.js';
import type { ConfigStore } from '../config.js';
import { E, unknownAccount } from '../errors.js';
import type { EventBus } from '../events.js';
import { type ApprovalGate, denyingGate } from './approval-gate.js';
import type { CallerIdentity } from './proc.js';

export type Decision = 'allow' | 'deny' | 'ask';

/** Does `rule` allow this caller? A listener app key matches only `{key}`: it has no process to match the others. */
export function ruleMatches(rule: AccessRule, who: CallerIdentity): boolean {
  const c = who.caller;
  if ('script' in rule) return c.script === rule.script && (rule.exe === undefined || c.exe === rule.exe);
  if ('exe' in rule) return c.key === undefined && c.exe === rule.exe;
  if ('unit' in rule) return c.unit === rule.unit;
  if ('ancestor' in rule) return c.parents.includes(rule.ancestor);
  if ('key' in rule) return c.key === rule.key;
  return rule.tty === true && who.tty && c.key === undefined;
}

/**
 * The decision for one caller: `open` (or no access at all) allows everyone; otherwise a
 * matching rule allows, and no match is `deny` under `callers` and `ask` under `ask`. A
 * caller the daemon could not verify (gone, its pid reused, or no addon) matches nothing.
 */
export function decide(access: Access | undefined, who: CallerIdentity | undefined): Decision {
  if (!access || access.mode === 'open') return 'allow';
  if (who) for (const rule of access.callers) if (ruleMatches(rule, who)) return 'allow';
  return access.mode === 'ask' && who ? 'ask' : 'deny';
}

/** The rule that would allow this caller and no other program: its script (with its interpreter), else its executable, else its key. */
export function ruleFor(who: CallerIdentity): AccessRule | undefined {
  const c = who.caller;
  if (c.key !== undefined) return { key: c.key };
  if (c.script !== undefined) return c.exe?.startsWith('/') ? { script: c.script, exe: c.exe } : { script: c.script };
  if (c.exe?.startsWith('/')) return { exe: c.exe };
  if (c.unit !== undefined) return { unit: c.unit };
  return undefined;
}

/** The caller as a refusal names it: `/usr/bin/curl (pid 42) ← /usr/bin/bash ← /usr/lib/systemd/systemd`, script and unit beside. */
export function describeCaller(who: CallerIdentity | undefined): string {
  if (!who)
    return "a caller the daemon could not verify (it is gone, it showed the loopback listener's daemon key, which names no app, or the daemon runs without its caller addon)";
  const c = who.caller;
  if (c.key !== undefined) return `the loopback listener's app key "${c.key}"`;
  const parts = [`${c.exe ?? '?'}${c.pid ? ` (pid ${c.pid})` : ''}`];
  if (c.script !== undefined) parts.push(`running ${c.script}`);
  if (c.unit !== undefined) parts.push(`in unit ${c.unit}`);
  if (who.tty) parts.push('on a terminal');
  const chain = c.parents.length ? `, parents ${c.parents.join(' ← ')}` : '';
  return parts.join(' ') + chain;
}

/** The refusal: who asked, and the exact command that would allow it. */
function refusal(account: string, access: Access, who: CallerIdentity | undefined) {
  const rule = who && ruleFor(who);
  const fix = rule
    ? `; to allow it: tokend access ${account} ${access.mode} --add ${ruleFlags(rule)}`
    : `; see \`tokend access ${account}\``;
  return E.callerNotAllowed(`account "${account}" (access ${access.mode}) does not allow ${describeCaller(who)}${fix}`, { account });
}

export interface AccessDeps {
  config: Pick<ConfigStore, 'getAccount' | 'putAccount'>;
  audit: Pick<AuditLog, 'record'>;
  events: Pick<EventBus, 'emit'>;
  gate: ApprovalGate;
  /** The caller addon is loaded: the daemon can tell who calls (without it only `open` is allowed, rule 7 of issue 23). */
  verified: boolean;
}

/** A refusal's event is sent at most this often per account and program (a caller in a loop is one event a minute). */
const EVENT_EVERY_MS = 60_000;

/**
 * The access check of the token paths. Decisions are cached on the caller's identity, which
 * is one per connection (caller/connection.ts, read and checked against the pid's start time
 * when the connection came): a new connection, even from a reused pid, is a new identity and
 * decides again; a config change (a new `access` object) decides again too.
 */
export class AccessControl {
  private readonly decided = new WeakMap<CallerIdentity, Map<string, { access: Access; decision: Decision }>>();
  private readonly evented = new Map<string, number>();
  constructor(private readonly deps: AccessDeps) {}

  /** The caller addon is loaded (access-writes.ts refuses rules without it). */
  get verified(): boolean {
    return this.deps.verified;
  }

  /**
   * Resolve when `who` may take `account`'s token, else throw `caller_not_allowed` (403), audited
   * (`denied`) and sent as an `access.denied` event. Returns undefined (no promise to await)
   * when the answer is known at once, the keep-alive path.
   */
  check(account: string, who: CallerIdentity | undefined, client: string | undefined): Promise<void> | undefined {
    const access = this.deps.config.getAccount(account)?.access;
    if (!access || access.mode === 'open') return undefined;
    const decision = this.decision(account, access, who);
    if (decision === 'allow') return undefined;
    if (decision === 'deny') throw this.refuse(account, access, who, client);
    const timeoutMs = (access.ask_timeout_s ?? ASK_TIMEOUT_DEFAULT_S) * 1000;
    return this.deps.gate.request({ account, caller: who!, timeoutMs }).then((answer) => {
      if (answer !== 'allow') throw this.refuse(account, access, who, client);
    });
  }

  private decision(account: string, access: Access, who: CallerIdentity | undefined): Decision {
    if (!who) return decide(access, who);
    let mine = this.decided.get(who);
    const hit = mine?.get(account);
    if (hit && hit.access === access) return hit.decision;
    const decision = decide(access, who);
    if (!mine) this.decided.set(who, (mine = new Map()));
    mine.set(account, { access, decision });
    return decision;
  }

  private refuse(account: string, access: Access, who: CallerIdentity | undefined, client: string | undefined) {
    this.deps.audit.record(account, client, 'denied', who);
    const key = `${account}\0${who?.program ?? ''}`;
    const now = Date.now();
    const last = this.evented.get(key);
    if (last === undefined || now - last >= EVENT_EVERY_MS) {
      if (this.evented.size >= 10_000) this.evented.clear();
      this.evented.set(key, now);
      this.deps.events.emit('access.denied', account, { mode: access.mode, ...recordedCaller(client, who?.caller) });
    }
    return refusal(account, access, who);
  }

  /**
   * Add `rule` to `account`'s access (`tokend access NAME … --add`, an approval's `--always`):
   * an `open` account stays open (every caller is allowed already); a rule it has is not added twice.
   */
  async addRule(account: string, rule: AccessRule): Promise<Access> {
    const cfg = this.deps.config.getAccount(account);
    if (!cfg) throw unknownAccount(account);
    const access = cfg.access;
    if (!access || access.mode === 'open') return access ?? { mode: 'open', callers: [] };
    const same = JSON.stringify(rule);
    if (access.callers.some((r) => JSON.stringify(r) === same)) return access;
    const next: Access = { ...access, callers: [...access.callers, rule] };
    await this.deps.config.putAccount(account, { ...cfg, access: next } satisfies AccountConfig);
    return next;
  }
}

/** The deps' access check, or one that checks the same rules with no approvals and no verified callers (tests). */
export function accessOf(deps: { access?: AccessControl } & Pick<AccessDeps, 'config' | 'audit' | 'events'>): AccessControl {
  return (
    deps.access ?? new AccessControl({ config: deps.config, audit: deps.audit, events: deps.events, gate: denyingGate, verified: false })
  );
}
