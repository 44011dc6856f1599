import path from 'node:path';
import envPaths from 'env-paths';

/** Where tokend keeps things (DESIGN.md, Files and places). Shared by daemon and client. */
export interface TokendPaths {
  configDir: string;
  configFile: string;
  dataDir: string;
  dbFile: string;
  keyFile: string;
  /** The loopback listener's daemon key (`tokend listen-key`). */
  listenKeyFile: string;
  lockTarget: string;
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
    lockTarget: dataDir,
    socket,
    socketDir: path.dirname(socket),
    logFile: path.join(dataDir, 'tokend.log'),
  };
}
