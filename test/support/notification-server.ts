/**
 * The test notification server (notification-server.py) as a child process: its JSON lines
 * as they come, a wait for one, and a way to make it emit ActionInvoked (a click).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'notification-server.py');
/** The system's python3 (dbus-python and PyGObject are Debian packages; a pyenv python3 lacks them). */
const PYTHON = ['/usr/bin/python3', 'python3'].find(
  (p) => spawnSync(p, ['-c', 'import dbus, gi.repository.GLib'], { stdio: 'ignore' }).status === 0,
);
const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
/** Whether a real notification test can run here: python3 with dbus and gi, gdbus, dbus-daemon. */
export const canNotify = PYTHON !== undefined && has('gdbus') && has('dbus-daemon');

type Line = Record<string, any>;

export interface NotificationServer {
  child: ChildProcess;
  lines: Line[];
  next(pred: (l: Line) => boolean, what: string): Promise<Line>;
  /** Click: the server emits ActionInvoked(nid, action). */
  invoke(nid: number, action: string): void;
}

/** Start the server on the session bus of `env` (DBUS_SESSION_BUS_ADDRESS). */
export function startNotificationServer(env: NodeJS.ProcessEnv): NotificationServer {
  const child: ChildProcess = spawn(PYTHON!, [SERVER], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  let err = '';
  let buf = '';
  const waiters: Array<() => void> = [];
  child.stderr!.on('data', (c) => (err += c));
  child.stdout!.on('data', (c) => {
    buf += c;
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const p of parts) lines.push(JSON.parse(p));
    for (const w of waiters.splice(0)) w();
  });
  const next = async (pred: (l: Line) => boolean, what: string): Promise<Line> => {
    for (;;) {
      const found = lines.find(pred);
      if (found) return found;
      if (child.exitCode !== null) throw new Error(`the notification server exited: ${err}`);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ${what} from the notification server; stderr: ${err}`)), 20_000);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  };
  return { child, lines, next, invoke: (nid, action) => void child.stdin!.write(`${nid} ${action}\n`) };
}
