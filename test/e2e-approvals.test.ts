/**
 * `ask` with real processes (docs/security.md): a python3 program asks a real daemon for an
 * `ask` account's token over the real socket and waits; a second process, the real CLI, lists
 * it (`tokend approvals --json`) and allows or denies it; unanswered it is refused once the
 * account's ask_timeout_s runs out; `--always` lets the same program through next time
 * without asking; a program that hangs up while it waits takes its approval with it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addConfAccount, importConfGrant, ROOT, startTestDaemon } from './support/daemon.js';
import { tapEvents, waitFor } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import { canNotify, startNotificationServer } from './support/notification-server.js';
import { startSecretService } from './support/secret-service.js';

const addonBuilt = fs.existsSync(path.join(ROOT, 'build', 'tokend-peer.node'));

/**
 * A python3 program that asks for account `work`'s token and prints `STATUS BODY` once
 * answered; with a third argument it then waits for a line on stdin and asks again on a new
 * connection (the same process), printing that answer too.
 */
const ASKER = `import socket, sys
def ask():
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    b = b'{"account":"work"}'
    s.sendall(b'POST /v1/token HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(b) + b)
    out = b''
    while True:
        c = s.recv(65536)
        if not c:
            break
        out += c
    head, _, body = out.partition(b'\\r\\n\\r\\n')
    print(head.split(b' ')[1].decode(), body.decode(), flush=True)
ask()
if len(sys.argv) > 2:
    sys.stdin.readline()
    ask()
`;

interface Asker {
  child: ChildProcess;
  done: Promise<{ status: number; body: any }>;
}

function ask(script: string, socket: string, env: NodeJS.ProcessEnv): Asker {
  const child = spawn('python3', [script, socket], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (err += c));
  const done = new Promise<{ status: number; body: any }>((resolve, reject) =>
    child.once('close', () => {
      const m = /^(\d{3}) (.*)$/s.exec(out.trim());
      if (!m) reject(new Error(`the asker printed ${JSON.stringify(out)}; stderr ${err}`));
      else resolve({ status: Number(m[1]), body: JSON.parse(m[2]!) });
    }),
  );
  return { child, done };
}

describe.skipIf(!addonBuilt)('ask: approvals with real processes', () => {
  const idp = useIdp();
  const { d, t } = useDaemon({ account: { idp, grant: true } });

  const setAccess = async (access: Record<string, unknown>) => {
    const r = await d.request('PATCH', '/v1/accounts/work', { access });
    expect(r.status, r.text).toBe(200);
  };
  /** The pending approvals as `tokend approvals --json` (a second process) lists them. */
  const listed = async () => {
    const r = await d.cli(['approvals', '--json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout).approvals as any[];
  };
  const waitListed = (pid: number) => waitFor(async () => (await listed()).find((a) => a.caller.pid === pid), `approval of pid ${pid}`);
  const script = (name: string) => {
    const file = path.join(t.home, `${name}.py`);
    fs.writeFileSync(file, ASKER);
    return file;
  };

  it('a waiting program is listed by a second CLI and gets its token once allowed; the decision is audited and sent as events', async () => {
    await setAccess({ mode: 'ask', callers: [], ask_timeout_s: 120 });
    const tap = await tapEvents(d.socket);
    try {
      const file = script('sync');
      const a = ask(file, d.socket, t.env);
      const pending = await waitListed(a.child.pid!);
      expect(pending).toMatchObject({ account: 'work', caller: { pid: a.child.pid, script: file }, expires_at: expect.any(String) });
      // The table names the program and its chain.
      const table = await d.cli(['approvals']);
      expect(table.stdout).toMatch(/^ID +ACCOUNT +PROGRAM +PATH +UNIT +TTY +DENIED$/m);
      expect(table.stdout).toContain(`sync.py ← `);
      const allowed = await d.cli(['approvals', 'allow', pending.id]);
      expect(allowed.code, allowed.stderr).toBe(0);
      expect(allowed.stderr).toMatch(/allowed sync\.py/);
      const got = await a.done;
      expect(got.status).toBe(200);
      expect(got.body.access_token).toBeTruthy();
      expect(await listed()).toEqual([]);

      const pend = await waitFor(() => tap.events.find((e) => e.type === 'approval.pending'), 'approval.pending');
      expect(pend).toMatchObject({ account: 'work', approval_id: pending.id, caller: { pid: a.child.pid, script: file } });
      const decided = await waitFor(() => tap.events.find((e) => e.type === 'approval.decided'), 'approval.decided');
      expect(decided).toMatchObject({
        approval_id: pending.id,
        decision: 'allow',
        via: 'api',
        decided_by: { user_agent: 'tokend-cli/approvals' },
      });
      const { json } = await d.request('GET', '/v1/audit?account=work&action=approval_allowed');
      expect(json.entries[0]).toMatchObject({
        action: 'approval_allowed',
        outcome: 'ok',
        caller: { pid: a.child.pid, script: file },
        approval_id: pending.id,
        via: 'api',
        decided_by: { user_agent: 'tokend-cli/approvals', exe: process.execPath },
      });
    } finally {
      tap.close();
    }
  });

  it('denied: 403 caller_not_allowed', async () => {
    await setAccess({ mode: 'ask', callers: [], ask_timeout_s: 120 });
    const a = ask(script('denied'), d.socket, t.env);
    const pending = await waitListed(a.child.pid!);
    const r = await d.cli(['approvals', 'deny', pending.id, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: pending.id, decision: 'deny' });
    const got = await a.done;
    expect(got.status).toBe(403);
    expect(got.body.error.code).toBe('caller_not_allowed');
    // Decided: a second decision finds nothing.
    const again = await d.cli(['approvals', 'allow', pending.id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no approval .* is waiting/);
  });

  it('unanswered: 403 caller_not_allowed once ask_timeout_s runs out, saying it timed out waiting for approval', async () => {
    await setAccess({ mode: 'ask', callers: [], ask_timeout_s: 1 });
    const got = await ask(script('ignored'), d.socket, t.env).done;
    expect(got.status).toBe(403);
    expect(got.body.error.code).toBe('caller_not_allowed');
    expect(got.body.error.message).toMatch(/ignored\.py .*timed out waiting for approval/);
    const { json } = await d.request('GET', '/v1/audit?account=work&action=approval_denied');
    expect(json.entries[0]).toMatchObject({ code: 'timeout', via: 'timeout' });
  });

  it('allow --always adds a rule: the same program next time passes without asking; another program is still asked', async () => {
    await setAccess({ mode: 'ask', callers: [], ask_timeout_s: 120 });
    const file = script('always');
    const first = ask(file, d.socket, t.env);
    const pending = await waitListed(first.child.pid!);
    const r = await d.cli(['approvals', 'allow', pending.id, '--always']);
    expect(r.code, r.stderr).toBe(0);
    expect((await first.done).status).toBe(200);
    // The rule is in the account's access, in config.json.
    const config = JSON.parse(fs.readFileSync(path.join(t.home, 'config', 'config.json'), 'utf8'));
    expect(config.accounts.work.access.callers).toContainEqual(expect.objectContaining({ script: file }));
    // A new process of the same program: no approval, its token at once.
    const second = await ask(file, d.socket, t.env).done;
    expect(second.status).toBe(200);
    expect(await listed()).toEqual([]);
    // Another script is another program: asked.
    const other = ask(script('other'), d.socket, t.env);
    const otherPending = await waitListed(other.child.pid!);
    await d.cli(['approvals', 'deny', otherPending.id]);
    expect((await other.done).status).toBe(403);
  });

  it('allow --for: the same process asks again on a new connection and is let through without an approval', async () => {
    await setAccess({ mode: 'ask', callers: [], ask_timeout_s: 120 });
    const child = spawn('python3', [script('twice'), d.socket, 'again'], { env: t.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (c) => (out += c));
    const closed = new Promise((r) => child.once('close', r));
    try {
      const pending = await waitListed(child.pid!);
      const r = await d.cli(['approvals', 'allow', pending.id, '--for', '1h']);
      expect(r.code, r.stderr).toBe(0);
      await waitFor(() => out.split('\n').length > 1, 'the first answer');
      child.stdin!.write('\n');
      await closed;
      expect(
        out
          .trim()
          .split('\n')
          .map((l) => l.slice(0, 3)),
      ).toEqual(['200', '200']);
      // No second approval was opened: the audit has one decision for this process.
      const { json } = await d.request('GET', '/v1/audit?account=work&action=approval_allowed');
      expect(json.entries.filter((e: any) => e.caller.pid === child.pid)).toHaveLength(1);
      expect(json.entries[0]).toMatchObject({ for_s: 3600 });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a program that hangs up while it waits takes its approval with it', async () => {
    await setAccess({ mode: 'ask', callers: [], ask_timeout_s: 120 });
    const a = ask(script('quitter'), d.socket, t.env);
    const pending = await waitListed(a.child.pid!);
    a.child.kill('SIGKILL');
    await a.done.catch(() => undefined);
    await waitFor(async () => (await listed()).length === 0, 'the approval to go');
    const { json } = await d.request('GET', '/v1/audit?account=work&action=approval_denied');
    expect(json.entries[0]).toMatchObject({ approval_id: pending.id, code: 'disconnected' });
  });

  it('bad decisions are refused with a clear message', async () => {
    const both = await d.cli(['approvals', 'allow', 'abc', '--for', '8h', '--always']);
    expect(both.code).toBe(2);
    const r = await d.request('POST', '/v1/approvals/abc', { decision: 'deny', always: true });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toMatch(/go with decision "allow" only/);
  });
});

describe.skipIf(!addonBuilt || !canNotify)('ask: the desktop notification of a real daemon', () => {
  const idp = useIdp();

  it('the daemon shows the waiting program on the session bus; Allow on the notification lets it through', async () => {
    const bus = await startSecretService({ keyring: false });
    const server = startNotificationServer(bus.env);
    const own = await startTestDaemon(undefined, bus.env);
    try {
      await addConfAccount(own.d, idp.issuer, 'work');
      await importConfGrant(own.d, idp, 'work');
      const r = await own.d.request('PATCH', '/v1/accounts/work', { access: { mode: 'ask', callers: [], ask_timeout_s: 120 } });
      expect(r.status, r.text).toBe(200);
      await server.next((l) => l.ready, 'ready line');
      const file = path.join(own.home, 'notified.py');
      fs.writeFileSync(file, ASKER);
      const a = ask(file, own.d.socket, own.env);
      const shown = await server.next((l) => l.notify !== undefined, 'Notify');
      expect(shown.summary).toBe('tokend: allow notified.py to use "work"?');
      expect(shown.body).toContain(`${file} (pid ${a.child.pid})`);
      expect(shown.actions).toEqual(['allow', 'Allow', 'deny', 'Deny']);
      server.invoke(shown.notify, 'allow');
      const got = await a.done;
      expect(got.status).toBe(200);
      expect(got.body.access_token).toBeTruthy();
      const { json } = await own.d.request('GET', '/v1/audit?account=work&action=approval_allowed');
      expect(json.entries[0]).toMatchObject({ via: 'notification', caller: { pid: a.child.pid } });
    } finally {
      server.child.kill();
      await own.cleanup();
      await bus.close();
    }
  });
});
