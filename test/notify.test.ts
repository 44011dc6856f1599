/**
 * The desktop notification of a pending approval (src/daemon/caller/notify.ts) against a real
 * session bus (a private dbus-daemon) and a real notification server on it
 * (test/support/notification-server.py), through the real gdbus: Notify shows the caller, the
 * server's ActionInvoked decides, a decision elsewhere closes the notification. Without a bus
 * or a server nothing is shown and the request still waits.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../src/daemon/audit.js';
import { Approvals } from '../src/daemon/caller/approvals.js';
import { DesktopNotifier, gvariantString, notificationText } from '../src/daemon/caller/notify.js';
import { programKey, type CallerIdentity } from '../src/daemon/caller/proc.js';
import { EventBus } from '../src/daemon/events.js';
import { createLogger } from '../src/daemon/log.js';
import type { Caller } from '../src/protocol/caller.js';
import { canNotify, startNotificationServer } from './support/notification-server.js';
import { startSecretService, type SecretService } from './support/secret-service.js';

function identity(pid: number, over: Partial<Caller> = {}): CallerIdentity {
  const caller: Caller = { pid, exe: '/usr/bin/python3.11', script: '/tmp/a<b>.py', parents: ['/usr/bin/bash'], ...over };
  return { caller, start: 1, tty: false, program: programKey(caller) };
}

function gate(env: NodeJS.ProcessEnv, logLines: string[] = []) {
  const rows: AuditRecord[] = [];
  const log = createLogger('debug', (l) => logLines.push(l));
  const notifier = new DesktopNotifier({ log, env });
  const approvals = new Approvals({
    events: new EventBus(),
    audit: { record: (r) => rows.push(r) },
    log,
    notifier,
    addRule: async () => undefined,
  });
  return { approvals, notifier, rows };
}

describe('notification text', () => {
  it('quotes for gdbus and shows a path as text, never as markup', () => {
    expect(gvariantString("it's a \\ path\n")).toBe("'it\\'s a \\\\ path\\u000a'");
    const t = notificationText({ id: 'ab12', account: 'gh', caller: identity(9).caller, tty: false, expires_at: new Date().toISOString() });
    expect(t.summary).toBe('tokend: allow a<b>.py to use "gh"?');
    expect(t.body).toContain('/tmp/a&lt;b&gt;.py (pid 9)');
    expect(t.body).toContain('tokend approvals allow ab12');
  });
});

describe.skipIf(!canNotify)('desktop notifications on a real session bus', () => {
  let bus: SecretService;
  beforeAll(async () => {
    bus = await startSecretService({ keyring: false });
  }, 30_000);
  afterAll(async () => {
    await bus?.close();
  });

  it('shows a pending approval with Allow and Deny; Allow on the notification lets the request through', async () => {
    const server = startNotificationServer(bus.env);
    const { approvals, notifier, rows } = gate(bus.env);
    try {
      await server.next((l) => l.ready, 'ready line');
      const asked = approvals.request({ account: 'gh', caller: identity(31337), timeoutMs: 60_000 });
      const shown = await server.next((l) => l.notify !== undefined, 'Notify');
      expect(shown.app).toBe('tokend');
      expect(shown.actions).toEqual(['allow', 'Allow', 'deny', 'Deny']);
      expect(shown.summary).toContain('"gh"');
      expect(shown.body).toContain('pid 31337');
      server.invoke(shown.notify, 'allow');
      expect(await asked).toBe('allow');
      expect(rows[0]).toMatchObject({ action: 'approval_allowed', detail: expect.objectContaining({ via: 'notification' }) });
      // Decided: the notification is closed.
      await server.next((l) => l.closed === shown.notify, 'CloseNotification');
    } finally {
      approvals.close();
      notifier.close();
      server.child.kill();
    }
  }, 60_000);

  it('Deny on the notification refuses; a decision made elsewhere closes the notification', async () => {
    const server = startNotificationServer(bus.env);
    const { approvals, notifier } = gate(bus.env);
    try {
      await server.next((l) => l.ready, 'ready line');
      const denied = approvals.request({ account: 'gh', caller: identity(1001), timeoutMs: 60_000 });
      const first = await server.next((l) => l.notify !== undefined, 'Notify');
      server.invoke(first.notify, 'deny');
      expect(await denied).toBe('deny');

      const other = approvals.request({ account: 'gh', caller: identity(1002), timeoutMs: 60_000 });
      const second = await server.next((l) => l.notify !== undefined && l.notify !== first.notify, 'second Notify');
      await approvals.decide(approvals.list()[0]!.id, { decision: 'allow' }, {});
      expect(await other).toBe('allow');
      await server.next((l) => l.closed === second.notify, 'CloseNotification');
    } finally {
      approvals.close();
      notifier.close();
      server.child.kill();
    }
  }, 60_000);

  it('a bus without a notification server: nothing shown, one debug line, the request still waits for the CLI', async () => {
    const logLines: string[] = [];
    const { approvals, notifier } = gate(bus.env, logLines);
    try {
      const asked = approvals.request({ account: 'gh', caller: identity(2001), timeoutMs: 60_000 });
      const waitLog = async () => {
        for (let i = 0; i < 200 && !logLines.some((l) => l.includes('no desktop notification')); i++)
          await new Promise((r) => setTimeout(r, 50));
      };
      await waitLog();
      expect(logLines.filter((l) => l.includes('no desktop notification'))).toHaveLength(1);
      expect(approvals.list()).toHaveLength(1);
      await approvals.decide(approvals.list()[0]!.id, { decision: 'allow' }, {});
      expect(await asked).toBe('allow');
    } finally {
      approvals.close();
      notifier.close();
    }
  }, 60_000);
});

describe('without a session bus', () => {
  it('shows nothing and never fails the request', async () => {
    const logLines: string[] = [];
    const { approvals } = gate({ PATH: process.env.PATH }, logLines);
    const asked = approvals.request({ account: 'gh', caller: identity(3001), timeoutMs: 60_000 });
    expect(logLines.some((l) => l.includes('no session bus'))).toBe(true);
    await approvals.decide(approvals.list()[0]!.id, { decision: 'deny' }, {});
    expect(await asked).toBe('deny');
  });
});
