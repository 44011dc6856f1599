/**
 * How every client reaches a daemon that is not running yet (the CLI and the SDK alike):
 * when nothing listens on the socket, spawn `tokend daemon` detached, its stderr appended
 * to the log file, and wait for it. Which `tokend`: `TOKEND_BIN` when set, else the tokend
 * package's own bin/tokend (the CLI, `tokend/client`), else `tokend` on PATH (the
 * `@tokend/client` package, which holds no daemon). Zod-free and node built-ins only, like
 * the rest of what clients import from here.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { unsafeFolderOnTheWay } from './local-trust.js';
import { ROUTES } from './routes.js';

/** How long a client waits for an autostarted daemon to answer. */
export const AUTOSTART_WAIT_MS = 5000;

// dist/protocol/autostart.js → the package root, where the tokend package keeps bin/tokend
// (@tokend/client has none).
const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Why a client cannot talk to the daemon: none answers (`daemon_unreachable`), or none can be started, for want of its command (`daemon_not_found`). */
export type UnreachableCode = 'daemon_unreachable' | 'daemon_not_found';

export interface AutostartOptions {
  /** The socket, the data dir (made if missing) and the log file the daemon's stderr goes to. */
  paths: { socket: string; dataDir: string; logFile: string };
  env: Readonly<Record<string, string | undefined>>;
  /** False: never start the daemon, say how to. */
  autostart: boolean;
  /** The caller's error for "the daemon cannot be reached" (or started). */
  unreachable: (message: string, code: UnreachableCode) => Error;
}

/**
 * Run `attempt` (which connects to the socket); when it fails because nothing listens,
 * start the daemon (if allowed) and run it once more. Any other failure to connect is
 * reported through `unreachable`. `attempt` must not have sent anything when it fails
 * that way, so running it again is safe.
 */
export async function withAutostart<T>(attempt: () => Promise<T>, o: AutostartOptions): Promise<T> {
  try {
    return await attempt();
  } catch (err) {
    if (!isNotListening(err))
      throw o.unreachable(`cannot talk to tokend at ${o.paths.socket}: ${(err as Error).message}`, 'daemon_unreachable');
    if (!o.autostart) {
      throw o.unreachable(
        `tokend is not running (nothing listens on ${o.paths.socket}); start it with \`tokend daemon\` or unset TOKEND_NO_AUTOSTART`,
        'daemon_unreachable',
      );
    }
  }
  await startDaemon(o);
  try {
    return await attempt();
  } catch (err) {
    throw o.unreachable(`cannot talk to tokend at ${o.paths.socket}: ${(err as Error).message}`, 'daemon_unreachable');
  }
}

/** True for the errors that mean "no daemon here" (as opposed to one that misbehaves). */
export function isNotListening(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTDIR';
}

/**
 * The command that starts the daemon, as argv (`daemon` to be added): `TOKEND_BIN`; else
 * this package's own bin/tokend, run by this node; else the first executable `tokend` on
 * `PATH` (only its absolute folders: an empty or relative entry would mean whatever folder
 * the app runs in). A string: why there is none.
 */
export function daemonCommand(env: Readonly<Record<string, string | undefined>>): string[] | string {
  const chosen = env.TOKEND_BIN;
  if (chosen) {
    return isExecutableFile(chosen)
      ? [path.resolve(chosen)]
      : `TOKEND_BIN is ${chosen}, which is not an executable file; set it to the tokend command (\`command -v tokend\` where tokend is installed)`;
  }
  const own = path.join(PACKAGE_ROOT, 'bin', 'tokend');
  if (fs.existsSync(own)) return [process.execPath, own];
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (path.isAbsolute(dir) && isExecutableFile(path.join(dir, 'tokend'))) return [path.join(dir, 'tokend')];
  }
  return 'TOKEND_BIN is not set and no `tokend` is on PATH. Install tokend (`npm install -g tokend`; see its README) or set TOKEND_BIN to its command';
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Start `tokend daemon` detached, its stderr appended to the log file, and wait until it answers. */
async function startDaemon(o: AutostartOptions): Promise<void> {
  const { paths } = o;
  const command = daemonCommand(o.env);
  if (typeof command === 'string') {
    throw o.unreachable(`tokend is not running (nothing listens on ${paths.socket}) and cannot be started: ${command}`, 'daemon_not_found');
  }
  // The daemon would refuse these places (StrictModes): say why now, and make nothing there.
  for (const dir of [paths.dataDir, path.dirname(paths.logFile), path.dirname(paths.socket)]) {
    const unsafe = unsafeFolderOnTheWay(dir);
    if (unsafe) throw o.unreachable(`tokend cannot start: ${unsafe.message}. Fix: ${unsafe.fix}`, 'daemon_unreachable');
  }
  fs.mkdirSync(paths.dataDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.dirname(paths.logFile), { recursive: true, mode: 0o700 });
  const logFd = fs.openSync(paths.logFile, 'a', 0o600);
  // Under a core size limit of 0: a core file of the daemon would hold every token and the
  // master key, and node cannot lower its own limit (no setrlimit). exec keeps the pid.
  const argv = [...command, 'daemon'];
  const [cmd, ...args] = process.platform === 'win32' ? argv : ['/bin/sh', '-c', 'ulimit -c 0; exec "$@"', 'sh', ...argv];
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ['ignore', 'ignore', logFd],
    env: { ...o.env, TOKEND_SOCKET: paths.socket },
  });
  fs.closeSync(logFd);
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? 1));
  child.unref();
  const deadline = Date.now() + AUTOSTART_WAIT_MS;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const status = await healthStatus(paths.socket);
      if (status === 200) return;
      lastError = new Error(`${ROUTES.health} answered ${status}`);
    } catch (err) {
      // Anything while it comes up (refused, reset mid-start) is "not yet".
      lastError = err;
    }
    // A second daemon racing us exits 1 while the first comes up: keep waiting for the socket.
    if (exited !== null && exited !== 1) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const why = lastError instanceof Error ? ` (last: ${(lastError as NodeJS.ErrnoException).code ?? lastError.message})` : '';
  throw o.unreachable(
    `tokend did not start within ${AUTOSTART_WAIT_MS / 1000} s${why}; see ${paths.logFile}, or run \`tokend daemon\` to see why`,
    'daemon_unreachable',
  );
}

function healthStatus(socket: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, method: 'GET', path: ROUTES.health, headers: { host: 'tokend' }, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}
