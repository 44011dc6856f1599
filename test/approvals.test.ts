/**
 * The approval gate of `ask` accounts (src/daemon/caller/approvals.ts) on its own: who shares
 * a pending approval, what a decision covers, and what is left when nobody answers or the
 * caller goes away. The real-process tests are test/e2e-approvals.test.ts.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../src/daemon/audit.js';
import { Approvals, alwaysRule, MAX_PENDING, processKey } from '../src/daemon/caller/approvals.js';
import type { AccessRule } from '../src/protocol/access.js';
import { programKey, type CallerIdentity } from '../src/daemon/caller/proc.js';
import { EventBus } from '../src/daemon/events.js';
import { createLogger } from '../src/daemon/log.js';
import type { DaemonEvent } from '../src/protocol/events.js';
import type { Caller } from '../src/protocol/caller.js';

function identity(pid: number, start: number, over: Partial<Caller> = {}): CallerIdentity {
  const caller: Caller = { pid, exe: '/usr/bin/python3.11', parents: ['/usr/bin/bash'], ...over };
  return { caller, start, tty: false, program: programKey(caller) };
}

function setup(opts: { now?: () => number } = {}) {
  const events = new EventBus();
  const seen: DaemonEvent[] = [];
  events.subscribe((e) => seen.push(e));
  const rows: AuditRecord[] = [];
  const rules: Array<{ account: string; rule: AccessRule }> = [];
  const approvals = new Approvals({
    events,
    audit: { record: (r) => rows.push(r) },
    log: createLogger('error', () => undefined),
    addRule: async (account, rule) => {
      rules.push({ account, rule });
    },
    now: opts.now,
  });
  return { approvals, seen, rows, rules };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('approvals', () => {
  it('one process asking twice for one account shares one pending approval; allow answers both', async () => {
    const { approvals, seen, rows } = setup();
    const me = identity(4242, 100);
    const a = approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000 });
    const b = approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000 });
    // Another account, or another process, is another approval.
    void approvals.request({ account: 'other', caller: me, timeoutMs: 30_000 }).catch(() => undefined);
    void approvals.request({ account: 'gh', caller: identity(4243, 100), timeoutMs: 30_000 }).catch(() => undefined);
    expect(approvals.list()).toHaveLength(3);
    const mine = approvals.list().find((p) => p.account === 'gh' && p.caller.pid === 4242)!;
    expect(seen.filter((e) => e.type === 'approval.pending')).toHaveLength(3);
    await approvals.decide(mine.id, { decision: 'allow' }, { caller: 'tokend-cli/approvals', by: { pid: 7, parents: [] } });
    expect(await a).toBe('allow');
    expect(await b).toBe('allow');
    expect(approvals.list()).toHaveLength(2);
    const decided = seen.find((e) => e.type === 'approval.decided');
    expect(decided).toMatchObject({
      account: 'gh',
      decision: 'allow',
      via: 'api',
      decided_by: { pid: 7, user_agent: 'tokend-cli/approvals' },
    });
    expect(rows).toEqual([
      expect.objectContaining({
        account: 'gh',
        action: 'approval_allowed',
        by: me.caller,
        outcome: 'ok',
        detail: expect.objectContaining({
          approval_id: mine.id,
          via: 'api',
          decided_by: expect.objectContaining({ pid: 7, user_agent: 'tokend-cli/approvals' }),
        }),
      }),
    ]);
    approvals.close();
  });

  it('allow once: the next request of the same process asks again', async () => {
    const { approvals } = setup();
    const me = identity(10, 5);
    const first = approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000 });
    await approvals.decide(approvals.list()[0]!.id, { decision: 'allow' }, {});
    expect(await first).toBe('allow');
    void approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000 }).catch(() => undefined);
    expect(approvals.list()).toHaveLength(1);
    approvals.close();
  });

  it('deny refuses every request waiting on it', async () => {
    const { approvals, rows } = setup();
    const p = approvals.request({ account: 'gh', caller: identity(10, 5), timeoutMs: 30_000 });
    await approvals.decide(approvals.list()[0]!.id, { decision: 'deny' }, {});
    expect(await p).toBe('deny');
    expect(rows[0]).toMatchObject({ action: 'approval_denied', outcome: 'refused' });
  });

  it('unanswered: caller_not_allowed, saying it timed out waiting for approval; the row says timeout', async () => {
    const { approvals, rows, seen } = setup();
    const p = approvals.request({ account: 'gh', caller: identity(10, 5, { script: '/home/u/steal.py' }), timeoutMs: 20 });
    await expect(p).rejects.toMatchObject({
      code: 'caller_not_allowed',
      status: 403,
      message: expect.stringMatching(/steal\.py.*timed out waiting for approval/),
    });
    expect(approvals.list()).toEqual([]);
    expect(rows[0]).toMatchObject({ action: 'approval_denied', code: 'timeout', detail: expect.objectContaining({ via: 'timeout' }) });
    expect(seen.find((e) => e.type === 'approval.decided')).toMatchObject({ decision: 'deny', via: 'timeout' });
  });

  it('a caller that goes away takes its pending approval with it, once every request of it has gone', async () => {
    const { approvals, rows } = setup();
    const me = identity(10, 5);
    // Two keep-alive connections of one process (a pool), each a socket that closes.
    const one = Object.assign(new EventEmitter(), { destroyed: false });
    const two = Object.assign(new EventEmitter(), { destroyed: false });
    void approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000, connection: one });
    void approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000, connection: two });
    one.emit('close');
    expect(approvals.list()).toHaveLength(1); // the other request still waits
    two.emit('close');
    expect(one.listenerCount('close') + two.listenerCount('close')).toBe(0);
    expect(approvals.list()).toEqual([]);
    expect(rows[0]).toMatchObject({ action: 'approval_denied', code: 'disconnected' });
    await expect(approvals.decide('anything', { decision: 'allow' }, {})).rejects.toMatchObject({ code: 'not_found' });
  });

  it('allow --for trusts that process (pid and start time) running that program until then; a reused pid, an exec, or after the time, asks again', async () => {
    let now = 1_000_000;
    const { approvals } = setup({ now: () => now });
    const me = identity(777, 1234);
    const first = approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000 });
    await approvals.decide(approvals.list()[0]!.id, { decision: 'allow', for_s: 3600 }, {});
    expect(await first).toBe('allow');
    // The same process again: no approval, at once.
    expect(await approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000 })).toBe('allow');
    expect(approvals.list()).toEqual([]);
    // The same pid, another process (it started later), the same program: asked again.
    const reused = identity(777, 9999);
    expect(processKey('gh', reused)).not.toBe(processKey('gh', me));
    void approvals.request({ account: 'gh', caller: reused, timeoutMs: 30_000 }).catch(() => undefined);
    expect(approvals.list()).toHaveLength(1);
    // Another account of the same process: asked.
    void approvals.request({ account: 'other', caller: me, timeoutMs: 30_000 }).catch(() => undefined);
    expect(approvals.list()).toHaveLength(2);
    // The same process after an exec of another program (same pid and start time): asked.
    const execd = identity(777, 1234, { exe: '/usr/bin/curl' });
    void approvals.request({ account: 'gh', caller: execd, timeoutMs: 30_000 }).catch(() => undefined);
    expect(approvals.list()).toHaveLength(3);
    // An hour later the trust has run out.
    now += 3600_000 + 1;
    void approvals.request({ account: 'gh', caller: me, timeoutMs: 30_000 }).catch(() => undefined);
    expect(approvals.list()).toHaveLength(4);
    approvals.close();
  });

  it('allow --always adds a rule for the program: its script with its interpreter, its executable, or its app key', async () => {
    const { approvals, rules } = setup();
    const p = approvals.request({ account: 'gh', caller: identity(5, 1, { script: '/opt/app/sync.py' }), timeoutMs: 30_000 });
    await approvals.decide(approvals.list()[0]!.id, { decision: 'allow', always: true }, {});
    expect(await p).toBe('allow');
    expect(rules).toEqual([{ account: 'gh', rule: { script: '/opt/app/sync.py', exe: '/usr/bin/python3.11' } }]);
    expect(alwaysRule(identity(1, 1, { exe: '/usr/bin/curl' }))).toEqual({ exe: '/usr/bin/curl' });
    expect(alwaysRule(identity(1, 1, { pid: undefined, exe: undefined, key: 'ide' }))).toEqual({ key: 'ide' });
    expect(() => alwaysRule(identity(1, 1, { exe: '[kworker]' }))).toThrow(/no executable/);
  });

  it('a rule that cannot be added leaves the request waiting', async () => {
    const events = new EventBus();
    const approvals = new Approvals({
      events,
      audit: { record: () => undefined },
      log: createLogger('error', () => undefined),
      addRule: async () => {
        throw new Error('config.json is read-only');
      },
    });
    void approvals.request({ account: 'gh', caller: identity(5, 1), timeoutMs: 30_000 }).catch(() => undefined);
    const id = approvals.list()[0]!.id;
    await expect(approvals.decide(id, { decision: 'allow', always: true }, {})).rejects.toThrow(/read-only/);
    expect(approvals.list().map((a) => a.id)).toEqual([id]);
    approvals.close();
  });

  it(`past ${MAX_PENDING} waiting approvals a new one is refused at once`, async () => {
    const { approvals } = setup();
    for (let i = 0; i < MAX_PENDING; i++)
      void approvals.request({ account: 'gh', caller: identity(1000 + i, 1), timeoutMs: 30_000 }).catch(() => undefined);
    await expect(approvals.request({ account: 'gh', caller: identity(99, 1), timeoutMs: 30_000 })).rejects.toMatchObject({
      code: 'caller_not_allowed',
      message: expect.stringMatching(/already waiting/),
    });
    approvals.close();
    await tick();
    expect(approvals.list()).toEqual([]);
  });
});
