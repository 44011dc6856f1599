import path from 'node:path';
import envPaths from 'env-paths';

/** The master key (`keyFile`) is this many random bytes: an AES-256 key. */
export const MASTER_KEY_BYTES = 32;

/** Where tokend keeps things (README, Files and places). Shared by daemon and client. */
export interface TokendPaths {
  configDir: string;
  configFile: string;
  dataDir: string;
  dbFile: string;
  keyFile: string;
  /** The loopback listener's daemon key (`tokend listen-key`). */
  listenKeyFile: string;
  /** Held by the running daemon (one per data folder). */
  lockFile: string;
  /** The lock holder's {@link DaemonOwner} record, for messages and `tokend doctor`. */
  pidFile: string;
  socket: string;
  /** The folder the socket lives in; made 0700 before the socket is bound. */
  socketDir: string;
  /** Where an autostarted daemon writes its stderr. */
  logFile: string;
}

/**
 * Resolve every path from the environment: `TOKEND_HOME` puts everything under one
 * folder; `TOKEND_CONFIG_DIR`, `TOKEND_DATA_DIR`, `TOKEND_KEY_FILE`, `TOKEND_SOCKET`
 * override one place each.
 */
export function resolvePaths(env: NodeJS.ProcessEnv = process.env, socketOverride?: string): TokendPaths {
  const home = env.TOKEND_HOME ? path.resolve(env.TOKEND_HOME) : undefined;
  const std = home ? undefined : envPaths('tokend', { suffix: '' });
  const configDir = path.resolve(env.TOKEND_CONFIG_DIR || (home ? path.join(home, 'config') : std!.config));
  const dataDir = path.resolve(env.TOKEND_DATA_DIR || (home ? path.join(home, 'data') : std!.data));
  const runtimeDefault = home
    ? path.join(home, 'run', 'tokend.sock')
    : env.XDG_RUNTIME_DIR
      ? path.join(env.XDG_RUNTIME_DIR, 'tokend', 'tokend.sock')
      : path.join(dataDir, 'run', 'tokend.sock');
  const socket = path.resolve(socketOverride || env.TOKEND_SOCKET || runtimeDefault);
  return {
    configDir,
    configFile: path.join(configDir, 'config.json'),
    dataDir,
    dbFile: path.join(dataDir, 'tokend.db'),
    keyFile: path.resolve(env.TOKEND_KEY_FILE || path.join(configDir, 'key')),
    listenKeyFile: path.join(configDir, 'listen.key'),
    lockFile: path.join(dataDir, 'daemon.lock'),
    pidFile: path.join(dataDir, 'daemon.pid'),
    socket,
    socketDir: path.dirname(socket),
    logFile: path.join(dataDir, 'tokend.log'),
  };
}

/** What the running daemon writes to `pidFile`: who holds the lock, and where it listens. */
export interface DaemonOwner {
  pid: number;
  socket: string;
  started_at: string;
}

/** A `pidFile`'s text as a DaemonOwner; undefined when it is torn or not one. */
export function parseDaemonOwner(text: string): DaemonOwner | undefined {
  try {
    const o = JSON.parse(text) as Partial<DaemonOwner>;
    if (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0) return undefined;
    return { pid: o.pid, socket: typeof o.socket === 'string' ? o.socket : '', started_at: typeof o.started_at === 'string' ? o.started_at : '' };
  } catch {
    return undefined;
  }
}
