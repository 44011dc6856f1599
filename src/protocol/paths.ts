import os from 'node:os';
import path from 'node:path';

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
  /** The loopback listener's per-app keys (`tokend listen-key --app NAME`): `{"apps": {"NAME": "KEY"}}`. */
  listenAppKeysFile: string;
  /** Held by the running daemon (one per data folder). */
  lockFile: string;
  /** The lock holder's {@link DaemonOwner} record, for messages and `tokend doctor`. */
  pidFile: string;
  socket: string;
  /** The folder the socket lives in; made 0700 before the socket is bound. */
  socketDir: string;
  /** Where logs live: the platform's state folder (XDG_STATE_HOME, ~/Library/Logs). */
  stateDir: string;
  /** Where an autostarted daemon writes its stderr (size-capped by the daemon). */
  logFile: string;
}

/**
 * Resolve every path from the environment: `TOKEND_HOME` puts everything under one
 * folder; `TOKEND_CONFIG_DIR`, `TOKEND_DATA_DIR`, `TOKEND_KEY_FILE`, `TOKEND_SOCKET`
 * override one place each.
 */
export function resolvePaths(env: NodeJS.ProcessEnv = process.env, socketOverride?: string): TokendPaths {
  const home = env.TOKEND_HOME ? path.resolve(env.TOKEND_HOME) : undefined;
  const std = home ? undefined : platformDirs(env, process.platform);
  const configDir = path.resolve(env.TOKEND_CONFIG_DIR || (home ? path.join(home, 'config') : std!.config));
  const dataDir = path.resolve(env.TOKEND_DATA_DIR || (home ? path.join(home, 'data') : std!.data));
  const runtimeDefault = home
    ? path.join(home, 'run', 'tokend.sock')
    : env.XDG_RUNTIME_DIR
      ? path.join(env.XDG_RUNTIME_DIR, 'tokend', 'tokend.sock')
      : path.join(dataDir, 'run', 'tokend.sock');
  const socket = path.resolve(socketOverride || env.TOKEND_SOCKET || runtimeDefault);
  const stateDir = path.resolve(home ? path.join(home, 'state') : std!.state);
  return {
    configDir,
    configFile: path.join(configDir, 'config.json'),
    dataDir,
    dbFile: path.join(dataDir, 'tokend.db'),
    keyFile: path.resolve(env.TOKEND_KEY_FILE || path.join(configDir, 'key')),
    listenKeyFile: path.join(configDir, 'listen.key'),
    listenAppKeysFile: path.join(configDir, 'listen-apps.json'),
    lockFile: path.join(dataDir, 'daemon.lock'),
    pidFile: path.join(dataDir, 'daemon.pid'),
    socket,
    socketDir: path.dirname(socket),
    stateDir,
    logFile: path.join(stateDir, 'tokend.log'),
  };
}

/**
 * The platform's own places for an app's config and data (the XDG base directories on
 * Linux and the BSDs, ~/Library on macOS, %APPDATA% on Windows), as the env-paths package
 * computes them, written out here so that this module, which the thin client and the SDK
 * load, depends on nothing but node, and reads `env` rather than the process's.
 */
export function platformDirs(env: NodeJS.ProcessEnv, platform: string): { config: string; data: string; state: string } {
  const homedir = env.HOME || os.homedir();
  if (platform === 'darwin') {
    const library = path.join(homedir, 'Library');
    return {
      config: path.join(library, 'Preferences', 'tokend'),
      data: path.join(library, 'Application Support', 'tokend'),
      state: path.join(library, 'Logs', 'tokend'),
    };
  }
  if (platform === 'win32') {
    const appData = env.APPDATA || path.join(homedir, 'AppData', 'Roaming');
    const localAppData = env.LOCALAPPDATA || path.join(homedir, 'AppData', 'Local');
    return {
      config: path.join(appData, 'tokend', 'Config'),
      data: path.join(localAppData, 'tokend', 'Data'),
      state: path.join(localAppData, 'tokend', 'Log'),
    };
  }
  // XDG base directories: logs are state (XDG_STATE_HOME), not data.
  return {
    config: path.join(env.XDG_CONFIG_HOME || path.join(homedir, '.config'), 'tokend'),
    data: path.join(env.XDG_DATA_HOME || path.join(homedir, '.local', 'share'), 'tokend'),
    state: path.join(env.XDG_STATE_HOME || path.join(homedir, '.local', 'state'), 'tokend'),
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
    return {
      pid: o.pid,
      socket: typeof o.socket === 'string' ? o.socket : '',
      started_at: typeof o.started_at === 'string' ? o.started_at : '',
    };
  } catch {
    return undefined;
  }
}
