/**
 * Who may take an account's token (src/daemon/caller/access.ts, access-writes.ts): the pure
 * decision per rule, the per-connection cache that a reused pid never inherits, a unit rule
 * against a caller read from a cgroup fixture (systemd-run --user has no bus here), the
 * approval gate of `ask`, and who may write `access`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Access } from '../src/protocol/access.js';
import type { AccountConfig } from '../src/protocol/api.js';
import { AccessControl, decide, describeCaller, ruleFor } from '../src/daemon/caller/access.js';
import { accountsNeedingCallers, checkManage, ownerRule, resolveAccessWrite } from '../src/daemon/caller/access-writes.js';
import type { ApprovalGate, ApprovalRequest } from '../src/daemon/caller/approval-gate.js';
import { denyingGate } from '../src/daemon/caller/approval-gate.js';
import { CallerCache } from '../src/daemon/caller/identity-cache.js';
import { type CallerIdentity, identify, programKey } from '../src/daemon/caller/proc.js';
import type { Caller } from '../src/protocol/caller.js';
import { ApiError } from '../src/daemon/errors.js';

const GIT = '/usr/bin/git';
const NODE = '/usr/bin/node';

function who(caller: Partial<Caller>, extra: { tty?: boolean; start?: number } = {}): CallerIdentity {
  const c: Caller = { parents: [], ...caller };
  return { caller: c, start: extra.start ?? 100, tty: extra.tty ?? false, program: programKey(c) };
}
const access = (a: unknown): Access => Access.parse(a);

describe('decide', () => {
  it('allows everyone when the account is open or has no access', () => {
    expect(decide(undefined, who({ exe: '/usr/bin/curl' }))).toBe('allow');
    expect(decide(access({ mode: 'open' }), undefined)).toBe('allow');
  });

  it('allows a caller one rule matches, each rule by its own field', () => {
    const a = access({
      mode: 'callers',
      callers: [
        { exe: GIT },
        { script: '/opt/app/main.js', exe: NODE },
        { script: '/opt/tool.py' },
        { unit: 'backup.service' },
        { ancestor: GIT },
        { key: 'ci-runner' },
        { tty: true },
      ],
    });
    expect(decide(a, who({ exe: GIT, pid: 7 }))).toBe('allow');
    expect(decide(a, who({ exe: NODE, script: '/opt/app/main.js' }))).toBe('allow');
    expect(decide(a, who({ exe: '/usr/bin/python3.12', script: '/opt/tool.py' }))).toBe('allow');
    expect(decide(a, who({ exe: '/usr/bin/rsync', unit: 'backup.service' }))).toBe('allow');
    expect(decide(a, who({ exe: '/build/tokend-fast', parents: ['/usr/bin/dash', GIT] }))).toBe('allow');
    expect(decide(a, who({ key: 'ci-runner' }))).toBe('allow');
    expect(decide(a, who({ exe: '/usr/bin/curl' }, { tty: true }))).toBe('allow');
  });

  it('refuses under callers, and asks under ask, a caller no rule matches', () => {
    const rules = [{ script: '/opt/app/main.js', exe: NODE }, { key: 'ci-runner' }, { ancestor: GIT }];
    const callers = access({ mode: 'callers', callers: rules });
    const ask = access({ mode: 'ask', callers: rules });
    const others = [
      who({ exe: NODE }), // node -e: no script
      who({ exe: NODE, script: '/opt/app/other.js' }), // the same node, another script
      who({ exe: '/usr/local/bin/node', script: '/opt/app/main.js' }), // the script under another interpreter
      who({ exe: GIT }), // git itself is not its own ancestor
      who({ key: 'other-app' }),
      who({ exe: '/usr/bin/curl' }, { tty: true }), // a terminal, and no tty rule
    ];
    for (const o of others) {
      expect(decide(callers, o), JSON.stringify(o.caller)).toBe('deny');
      expect(decide(ask, o), JSON.stringify(o.caller)).toBe('ask');
    }
  });

  it('refuses a caller it could not verify, even under ask (there is nobody to ask about)', () => {
    expect(decide(access({ mode: 'callers', callers: [{ tty: true }] }), undefined)).toBe('deny');
    expect(decide(access({ mode: 'ask', callers: [] }), undefined)).toBe('deny');
  });

  it('never lets a listener app key pass a process rule (it has no process)', () => {
    const a = access({ mode: 'callers', callers: [{ tty: true }] });
    expect(decide(a, who({ key: 'x' }, { tty: true }))).toBe('deny');
  });
});

describe('the access schema', () => {
  const problem = (a: unknown) => {
    const r = Access.safeParse(a);
    return r.success ? undefined : r.error.issues.map((i) => i.message).join('; ');
  };
  it('refuses relative paths, rules under open, no rule under callers, and a timeout outside ask', () => {
    expect(problem({ mode: 'callers', callers: [{ exe: 'git' }] })).toMatch(/absolute path/);
    expect(problem({ mode: 'open', callers: [{ exe: GIT }] })).toMatch(/callers only with mode callers or ask/);
    expect(problem({ mode: 'callers', callers: [] })).toMatch(/at least one rule/);
    expect(problem({ mode: 'callers', callers: [{ exe: GIT }], ask_timeout_s: 5 })).toMatch(/for mode ask/);
    expect(problem({ mode: 'callers', callers: [{ tty: false }] })).toBeDefined();
    expect(problem({ mode: 'callers', callers: [{ exe: GIT, unit: 'x.service' }] })).toBeDefined();
    expect(problem({ mode: 'ask', callers: [], ask_timeout_s: 60 })).toBeUndefined();
  });
});

describe('the refusal names the caller and the command that allows it', () => {
  it('names exe, pid, script, unit and parents, and the rule for it', () => {
    const w = who({ pid: 42, exe: NODE, script: '/tmp/x.js', unit: 'session-3.scope', parents: ['/usr/bin/bash', '/usr/sbin/sshd'] });
    expect(describeCaller(w)).toBe(
      '/usr/bin/node (pid 42) running /tmp/x.js in unit session-3.scope, parents /usr/bin/bash ← /usr/sbin/sshd',
    );
    expect(ruleFor(w)).toEqual({ script: '/tmp/x.js', exe: NODE });
    expect(ruleFor(who({ exe: '/usr/bin/curl' }))).toEqual({ exe: '/usr/bin/curl' });
    expect(ruleFor(who({ key: 'app' }))).toEqual({ key: 'app' });
  });
});

interface Fake {
  accounts: Map<string, AccountConfig>;
  rows: Array<{ account: string; action: string; caller?: CallerIdentity }>;
  events: Array<{ type: string; account: string; fields: unknown }>;
}

function control(gate: ApprovalGate = denyingGate): { ac: AccessControl; fake: Fake } {
  const fake: Fake = { accounts: new Map(), rows: [], events: [] };
  const ac = new AccessControl({
    config: {
      getAccount: (n) => fake.accounts.get(n),
      putAccount: async (n, cfg) => {
        fake.accounts.set(n, cfg);
      },
    },
    audit: {
      record: ((account: string, _client: string, action: string, caller?: CallerIdentity) =>
        fake.rows.push({ account, action, caller })) as never,
    },
    events: { emit: ((type: string, account: string, fields: unknown) => fake.events.push({ type, account, fields })) as never },
    gate,
    verified: true,
  });
  return { ac, fake };
}
const account = (a?: unknown): AccountConfig => ({ driver: 'oauth2', scopes: [], hosts: [], ...(a ? { access: access(a) } : {}) });
const refusedWith = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err as ApiError;
  }
  throw new Error('not refused');
};

describe('AccessControl.check', () => {
  it('passes an open account without a promise, refuses with caller_not_allowed, audited once a row and evented', () => {
    const { ac, fake } = control();
    fake.accounts.set('open', account());
    fake.accounts.set('gh', account({ mode: 'callers', callers: [{ exe: GIT }] }));
    expect(ac.check('open', who({ exe: '/usr/bin/curl' }), 'curl/8')).toBeUndefined();
    expect(ac.check('gh', who({ exe: GIT }), 'git')).toBeUndefined();
    const err = refusedWith(() => ac.check('gh', who({ pid: 9, exe: '/usr/bin/curl' }), 'curl/8'));
    expect(err).toBeInstanceOf(ApiError);
    expect(err.code).toBe('caller_not_allowed');
    expect(err.status).toBe(403);
    expect(err.message).toContain('/usr/bin/curl (pid 9)');
    expect(err.message).toContain('tokend access gh callers --add --exe /usr/bin/curl');
    expect(fake.rows).toEqual([
      { account: 'gh', action: 'denied', caller: expect.objectContaining({ caller: expect.objectContaining({ exe: '/usr/bin/curl' }) }) },
    ]);
    expect(fake.events).toEqual([{ type: 'access.denied', account: 'gh', fields: expect.objectContaining({ mode: 'callers' }) }]);
    // A caller in a loop: a row a time (the audit log folds them a minute), one event a minute.
    refusedWith(() => ac.check('gh', who({ pid: 9, exe: '/usr/bin/curl' }), 'curl/8'));
    expect(fake.events).toHaveLength(1);
  });

  it('a reused pid never inherits a decision: a new connection is a new identity, decided again', () => {
    const { ac, fake } = control();
    fake.accounts.set('gh', account({ mode: 'callers', callers: [{ exe: GIT }] }));
    const first = who({ pid: 4242, exe: GIT }, { start: 1000 });
    expect(ac.check('gh', first, undefined)).toBeUndefined();
    expect(ac.check('gh', first, undefined)).toBeUndefined(); // cached for its connection
    // Same pid, a later start time: another process (its /proc read anew); it is not git.
    const reused = who({ pid: 4242, exe: '/usr/bin/curl' }, { start: 2000 });
    expect(refusedWith(() => ac.check('gh', reused, undefined)).code).toBe('caller_not_allowed');
  });

  it('decides again once the account access changes (a cached allow does not survive it)', async () => {
    const { ac, fake } = control();
    fake.accounts.set('gh', account({ mode: 'callers', callers: [{ exe: GIT }] }));
    const conn = who({ pid: 5, exe: GIT });
    expect(ac.check('gh', conn, undefined)).toBeUndefined();
    fake.accounts.set('gh', account({ mode: 'callers', callers: [{ exe: NODE }] }));
    expect(refusedWith(() => ac.check('gh', conn, undefined)).code).toBe('caller_not_allowed');
    await ac.addRule('gh', { exe: GIT });
    expect(ac.check('gh', conn, undefined)).toBeUndefined();
  });

  it('ask: a caller no rule allows goes to the gate, with the account, caller and timeout; its answer decides', async () => {
    const asked: ApprovalRequest[] = [];
    let answer: 'allow' | 'deny' = 'allow';
    const { ac, fake } = control({
      request: async (req) => {
        asked.push(req);
        return answer;
      },
    });
    fake.accounts.set('gh', account({ mode: 'ask', callers: [{ exe: GIT }], ask_timeout_s: 12 }));
    expect(ac.check('gh', who({ exe: GIT }), undefined)).toBeUndefined(); // a rule: no question
    const curl = who({ exe: '/usr/bin/curl' });
    await ac.check('gh', curl, undefined);
    expect(asked).toEqual([{ account: 'gh', caller: curl, timeoutMs: 12_000 }]);
    answer = 'deny';
    await expect(ac.check('gh', curl, undefined)).rejects.toMatchObject({ code: 'caller_not_allowed' });
    expect(asked).toHaveLength(2); // an answer is the gate's to remember, not the cache's
  });

  it('ask without approvals (the default gate) refuses at once, as callers does', async () => {
    const { ac, fake } = control();
    fake.accounts.set('gh', account({ mode: 'ask', callers: [] }));
    await expect(ac.check('gh', who({ exe: '/usr/bin/curl' }), undefined)).rejects.toMatchObject({ code: 'caller_not_allowed' });
  });

  it('addRule adds once, keeps an open account open, and refuses an unknown account', async () => {
    const { ac, fake } = control();
    fake.accounts.set('gh', account({ mode: 'ask', callers: [] }));
    fake.accounts.set('open', account());
    expect(await ac.addRule('gh', { exe: GIT })).toEqual({ mode: 'ask', callers: [{ exe: GIT }] });
    expect(await ac.addRule('gh', { exe: GIT })).toEqual({ mode: 'ask', callers: [{ exe: GIT }] });
    expect(fake.accounts.get('gh')?.access?.callers).toHaveLength(1);
    expect((await ac.addRule('open', { exe: GIT })).mode).toBe('open');
    expect(fake.accounts.get('open')?.access).toBeUndefined();
    await expect(ac.addRule('nope', { exe: GIT })).rejects.toMatchObject({ code: 'not_found' });
  });
});

describe('a unit rule against a caller read from a cgroup fixture', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** A /proc with one process (pid 300, parent 1) in `cgroup`. */
  function fakeProc(cgroup: string): string {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkn-proc-'));
    const stat = (pid: number, ppid: number, start: number) => `${pid} (x) S ${ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 ${start} 0 0`;
    for (const [pid, ppid, start, exe] of [
      [300, 1, 500, '/usr/bin/rsync'],
      [1, 0, 1, '/usr/lib/systemd/systemd'],
    ] as const) {
      const p = path.join(dir, String(pid));
      fs.mkdirSync(p);
      fs.writeFileSync(path.join(p, 'stat'), stat(pid, ppid, start));
      fs.symlinkSync(exe, path.join(p, 'exe'));
      fs.symlinkSync('/', path.join(p, 'cwd'));
      fs.writeFileSync(path.join(p, 'cmdline'), `${exe}\0`);
      fs.writeFileSync(path.join(p, 'cgroup'), pid === 300 ? cgroup : '0::/init.scope\n');
    }
    return dir;
  }

  it('allows the process of that unit and refuses one of another', () => {
    const a = access({ mode: 'callers', callers: [{ unit: 'backup.service' }] });
    const inUnit = identify(300, 1000, fakeProc('0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n'));
    expect(inUnit?.caller).toMatchObject({ exe: '/usr/bin/rsync', unit: 'backup.service', parents: ['/usr/lib/systemd/systemd'] });
    expect(decide(a, inUnit)).toBe('allow');
    fs.rmSync(dir!, { recursive: true, force: true });
    const elsewhere = identify(300, 1000, fakeProc('0::/user.slice/user-1000.slice/session-3.scope\n'));
    expect(elsewhere?.caller.unit).toBe('session-3.scope');
    expect(decide(a, elsewhere)).toBe('deny');
  });

  it('decides on the fresh caller when a kept process moves to another unit, execs, or its pid is reused', () => {
    const a = access({ mode: 'callers', callers: [{ unit: 'backup.service' }] });
    const proc = fakeProc('0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n');
    const cache = new CallerCache(proc);
    expect(decide(a, cache.identify(300, 1000))).toBe('allow');
    expect(decide(a, cache.identify(300, 1000))).toBe('allow');
    expect(cache.counts).toEqual({ hits: 1, reads: 1 });
    // Moved out of the unit (a write to another cgroup's cgroup.procs): the same pid and start time.
    fs.writeFileSync(path.join(proc, '300', 'cgroup'), '0::/user.slice/user-1000.slice/session-3.scope\n');
    expect(cache.identify(300, 1000)?.caller.unit).toBe('session-3.scope');
    expect(decide(a, cache.identify(300, 1000))).toBe('deny');
    // Back in the unit, then an exec of another program: still that unit, another executable.
    fs.writeFileSync(path.join(proc, '300', 'cgroup'), '0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n');
    fs.rmSync(path.join(proc, '300', 'exe'));
    fs.symlinkSync('/usr/bin/curl', path.join(proc, '300', 'exe'));
    expect(cache.identify(300, 1000)?.caller).toMatchObject({ exe: '/usr/bin/curl', unit: 'backup.service' });
    // The pid reused by a process that started at tick 900: refused for a connection of tick 800, read as new after.
    const stat = fs.readFileSync(path.join(proc, '300', 'stat'), 'latin1');
    fs.writeFileSync(path.join(proc, '300', 'stat'), stat.replace(' 500 0 0', ' 900 0 0'));
    expect(cache.identify(300, 800)).toBeUndefined();
    expect(cache.identify(300, 1000)?.start).toBe(900);
  });
});

describe('who may write access', () => {
  const base = {
    name: 'gh',
    before: undefined,
    access: undefined,
    owner: undefined,
    who: who({ exe: NODE, script: '/opt/app.js' }),
    verified: true,
  };
  it('owner self is the writer: its script with its interpreter, its service, or its app key', () => {
    expect(resolveAccessWrite({ ...base, owner: 'self' })).toEqual({ mode: 'callers', callers: [{ script: '/opt/app.js', exe: NODE }] });
    expect(ownerRule(who({ exe: '/usr/bin/x', unit: 'app.service' }))).toEqual({ unit: 'app.service' });
    expect(ownerRule(who({ exe: '/usr/bin/x', unit: 'session-2.scope' }))).toEqual({ exe: '/usr/bin/x' });
    expect(ownerRule(who({ exe: '/usr/bin/x', unit: 'user@1000.service' }))).toEqual({ exe: '/usr/bin/x' });
    expect(ownerRule(who({ key: 'ci' }))).toEqual({ key: 'ci' });
    expect(() => ownerRule(undefined)).toThrow(/caller the daemon can verify/);
  });
  it('owner self over an account owned by another program is refused; by its owner, kept', () => {
    const before = account({ mode: 'callers', callers: [{ script: '/opt/app.js', exe: NODE }] });
    expect(resolveAccessWrite({ ...base, owner: 'self', before })).toBeUndefined();
    expect(() => resolveAccessWrite({ ...base, owner: 'self', before, who: who({ exe: '/usr/bin/curl' }) })).toThrow(/cannot claim it/);
  });
  it('an app key writes no access and manages only its own accounts', () => {
    const key = who({ key: 'ci' });
    expect(() => resolveAccessWrite({ ...base, who: key, access: access({ mode: 'open' }) })).toThrow(/cannot change an account's access/);
    expect(() => checkManage('gh', account(), key)).toThrow(/only the accounts it owns/);
    expect(() => checkManage('gh', account({ mode: 'callers', callers: [{ key: 'ci' }] }), key)).not.toThrow();
    expect(() => checkManage('gh', account(), who({ exe: '/usr/bin/curl' }))).not.toThrow(); // the user's own programs
  });
  it('without the caller addon, rules are refused and open is written as no access', () => {
    const off = { ...base, verified: false };
    expect(() => resolveAccessWrite({ ...off, access: access({ mode: 'callers', callers: [{ exe: GIT }] }) })).toThrow(
      /without its caller addon/,
    );
    expect(() => resolveAccessWrite({ ...off, owner: 'self' })).toThrow(/without its caller addon/);
    expect(resolveAccessWrite({ ...off, access: access({ mode: 'open' }) })).toBeNull();
    expect(
      accountsNeedingCallers([
        ['a', account()],
        ['b', account({ mode: 'ask', callers: [] })],
      ]),
    ).toEqual(['b']);
  });
});
