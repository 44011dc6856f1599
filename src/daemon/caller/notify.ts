/**
 * A desktop notification for each pending approval, where the user's session bus has a
 * notification server (Desktop Notifications Specification 1.2, org.freedesktop.Notifications):
 * `Notify` with the actions Allow and Deny, and the server's `ActionInvoked` signal decides.
 * Through `gdbus` (libglib2.0-bin, on every GNOME/KDE/XFCE desktop) rather than a D-Bus
 * library: a few process starts per approval, no dependency. No bus, no gdbus, no server:
 * nothing is shown (one debug line) and the request waits for `tokend approvals` as before;
 * nothing here ever blocks or fails a request.
 *
 * Anyone of the user on the session bus could own the notification name or click Allow:
 * the same same-user limit `ask` has everywhere (docs/security.md).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ApprovalView } from '../../protocol/api.js';
import type { Logger } from '../log.js';
import type { ApprovalNotifier } from './approvals.js';

const DEST = 'org.freedesktop.Notifications';
const OBJECT = '/org/freedesktop/Notifications';
/** How long a gdbus call may take before the notification is given up (a hung bus never holds anything). */
const CALL_TIMEOUT_S = 5;
/** How long the signal monitor may take to say it listens. */
const MONITOR_READY_MS = 3000;

/** A string in GVariant text form (GLib's GVariant Text Format): quoted, `\` and `'` escaped, control characters as \uXXXX. */
export function gvariantString(s: string): string {
  return `'${s.replace(/[\\']/g, (c) => `\\${c}`).replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}'`;
}

/** The spec's body may be markup (`body-markup`): a program's path is shown as text, never as markup. */
function markupSafe(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** What the notification says: which program asks for which account, and its parents. */
export function notificationText(a: ApprovalView): { summary: string; body: string } {
  const c = a.caller;
  const self = c.key !== undefined ? `app key ${c.key}` : (c.script ?? c.exe ?? 'a program');
  const chain = [self, ...c.parents].map((p) => path.basename(p)).join(' ← ');
  const lines = [
    `${self}${c.pid === undefined ? '' : ` (pid ${c.pid})`}`,
    ...(c.script !== undefined && c.exe !== undefined ? [`run by ${c.exe}`] : []),
    `chain: ${chain}`,
    ...(c.unit !== undefined ? [`unit: ${c.unit}`] : []),
    `tokend approvals allow ${a.id}`,
  ];
  return { summary: `tokend: allow ${path.basename(self)} to use "${a.account}"?`, body: markupSafe(lines.join('\n')) };
}

/** Is there a session bus to talk to: its address in the environment, or the systemd user bus socket? */
function sessionBus(env: NodeJS.ProcessEnv): boolean {
  if (env.DBUS_SESSION_BUS_ADDRESS) return true;
  return env.XDG_RUNTIME_DIR !== undefined && fs.existsSync(path.join(env.XDG_RUNTIME_DIR, 'bus'));
}

export interface DesktopNotifierOptions {
  log: Logger;
  env?: NodeJS.ProcessEnv;
  /** The gdbus executable (a test may name another). */
  gdbus?: string;
}

export class DesktopNotifier implements ApprovalNotifier {
  private monitor?: { child: ChildProcess; ready: Promise<boolean> };
  /** Shown notifications: the server's id → the approval's decision; and the approval → the server's id. */
  private readonly byNotification = new Map<number, (decision: 'allow' | 'deny') => void>();
  private readonly byApproval = new Map<string, number>();
  /** Actions on notifications whose Notify call had not returned yet (the signal can overtake gdbus's answer). */
  private readonly early = new Map<number, 'allow' | 'deny'>();
  /** Approvals whose Notify call is under way; those that ended meanwhile are closed once it returns. */
  private readonly showing = new Set<string>();
  private readonly endedEarly = new Set<string>();
  /** One debug line for a missing bus or server, until a notification is shown again. */
  private quiet = false;
  private readonly env: NodeJS.ProcessEnv;
  private readonly gdbus: string;

  constructor(private readonly opts: DesktopNotifierOptions) {
    this.env = opts.env ?? process.env;
    this.gdbus = opts.gdbus ?? 'gdbus';
  }

  shown(a: ApprovalView, decide: (decision: 'allow' | 'deny') => void): void {
    if (!sessionBus(this.env)) {
      this.skip('no session bus (DBUS_SESSION_BUS_ADDRESS)');
      return;
    }
    this.showing.add(a.id);
    void this.show(a, decide)
      .catch((err) => this.skip((err as Error).message))
      .finally(() => {
        this.showing.delete(a.id);
        this.endedEarly.delete(a.id);
      });
  }

  ended(id: string): void {
    const nid = this.byApproval.get(id);
    if (nid === undefined) {
      if (this.showing.has(id)) this.endedEarly.add(id);
      return;
    }
    this.byApproval.delete(id);
    this.byNotification.delete(nid);
    void this.call('CloseNotification', [`uint32 ${nid}`]).catch(() => undefined);
  }

  close(): void {
    this.monitor?.child.kill();
    this.monitor = undefined;
  }

  private async show(a: ApprovalView, decide: (decision: 'allow' | 'deny') => void): Promise<void> {
    if (!(await this.listening())) return this.skip('gdbus monitor did not start');
    const { summary, body } = notificationText(a);
    const ms = Math.max(1000, Date.parse(a.expires_at) - Date.now());
    const out = await this.call('Notify', [
      gvariantString('tokend'),
      'uint32 0',
      gvariantString('dialog-password'),
      gvariantString(summary),
      gvariantString(body),
      "['allow', 'Allow', 'deny', 'Deny']",
      '{}',
      `int32 ${ms}`,
    ]);
    const nid = Number(/\(uint32 (\d+),\)/.exec(out)?.[1]);
    if (!Number.isSafeInteger(nid)) return this.skip(`unexpected answer to Notify: ${out.slice(0, 80)}`);
    this.quiet = false;
    if (this.endedEarly.has(a.id)) {
      void this.call('CloseNotification', [`uint32 ${nid}`]).catch(() => undefined);
      return;
    }
    this.byApproval.set(a.id, nid);
    this.byNotification.set(nid, decide);
    const action = this.early.get(nid);
    this.early.delete(nid);
    if (action) decide(action);
  }

  private skip(why: string): void {
    if (this.quiet) return;
    this.quiet = true;
    this.opts.log.debug('no desktop notification for approvals', { reason: why });
  }

  private call(method: string, args: string[]): Promise<string> {
    const argv = [
      'call',
      '--session',
      '--dest',
      DEST,
      '--object-path',
      OBJECT,
      '--timeout',
      String(CALL_TIMEOUT_S),
      '--method',
      `${DEST}.${method}`,
      ...args,
    ];
    return new Promise((resolve, reject) => {
      execFile(this.gdbus, argv, { env: this.env, timeout: (CALL_TIMEOUT_S + 2) * 1000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`gdbus ${method}: ${(stderr || err.message).trim().slice(0, 200)}`));
        else resolve(stdout);
      });
    });
  }

  /** The ActionInvoked monitor, started once (again after it dies); true once it listens. */
  private listening(): Promise<boolean> {
    if (this.monitor) return this.monitor.ready;
    const child = spawn(this.gdbus, ['monitor', '--session', '--dest', DEST, '--object-path', OBJECT], {
      env: this.env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    child.unref();
    const ready = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), MONITOR_READY_MS);
      let buffered = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        // Its first line ("Monitoring signals…", or "… does not have an owner"): it is subscribed.
        clearTimeout(timer);
        resolve(true);
        buffered += chunk.toString('utf8');
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) this.signal(line);
      });
      child.once('error', () => resolve(false));
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
        if (this.monitor?.child === child) this.monitor = undefined;
      });
    });
    this.monitor = { child, ready };
    return ready;
  }

  /** One line of `gdbus monitor`: `/org/freedesktop/Notifications: org.freedesktop.Notifications.ActionInvoked (uint32 7, 'allow')`. */
  private signal(line: string): void {
    const m = /\.ActionInvoked \(uint32 (\d+), '(allow|deny)'\)/.exec(line);
    if (!m) return;
    const nid = Number(m[1]);
    const decide = this.byNotification.get(nid);
    if (decide) decide(m[2] as 'allow' | 'deny');
    else if (this.early.size < 100) this.early.set(nid, m[2] as 'allow' | 'deny');
  }
}
