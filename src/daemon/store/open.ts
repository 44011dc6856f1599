import { createHash } from 'node:crypto';
import os from 'node:os';
import type { Settings } from '../../protocol/config-file.js';
import { fleetDatabaseUrl } from '../../protocol/fleet.js';
import type { TokendPaths } from '../../protocol/paths.js';
import type { Logger } from '../log.js';
import { loadMasterKey, type MasterKey } from './master-key.js';
import { openStore } from './sqlite-store.js';
import type { Store } from './types.js';

/** Extra time a lock waiter allows beyond one holder's provider call, and a holder's slack for its database writes (ms). */
const LOCK_WAIT_SLACK_MS = 10_000;
const LOCK_HOLD_SLACK_MS = 30_000;

/**
 * The store the environment and config.json ask for: a fleet's PostgreSQL when
 * `TOKEND_DATABASE_URL` (or `settings.database_url`) is set, else the embedded SQLite file.
 */
export async function openConfiguredStore(opts: {
  paths: TokendPaths;
  env: NodeJS.ProcessEnv;
  /** Read at each use: a SIGHUP may change the timeouts. */
  config: { readonly settings: Pick<Settings, 'http_timeout_ms' | 'database_url' | 'key_store'> };
  log: Logger;
}): Promise<{ store: Store; masterKey?: MasterKey }> {
  const url = fleetDatabaseUrl(opts.env, opts.config.settings);
  if (!url) {
    const masterKey = await loadMasterKey(opts.config.settings.key_store, opts.paths);
    return { store: openStore({ file: opts.paths.dbFile, key: masterKey.bytes }), masterKey };
  }
  if (opts.config.settings.key_store === 'keyring') {
    // Every daemon of a fleet needs the same key: a file copied to each host (docs/fleet.md).
    throw new Error(
      'settings.key_store "keyring" is for a daemon of its own: the daemons of a fleet share one key file (TOKEND_KEY_FILE can name it); set key_store to "file"',
    );
  }
  // Loaded only for a fleet: a daemon of its own never loads pg.
  const { openPostgresStore } = await import('./postgres-store.js');
  const store = await openPostgresStore({
    url,
    keyFile: opts.paths.keyFile,
    node: fleetNode(opts.paths),
    log: opts.log,
    // A waiter gives the holder one provider call and its writes; the server ends a holder
    // silent for longer than that, so a hung daemon cannot keep a grant locked.
    lockTimeouts: () => ({
      waitMs: opts.config.settings.http_timeout_ms + LOCK_WAIT_SLACK_MS,
      holdMs: opts.config.settings.http_timeout_ms + LOCK_HOLD_SLACK_MS,
    }),
  });
  opts.log.info('sharing grants with a fleet', { database: store.fleet!.where, instance: store.fleet!.instance });
  return { store };
}

/**
 * This daemon's lasting name in a fleet: the host, and which data folder (one host may run
 * daemons for several users or homes). Its logins and audit rows are filed under it.
 */
export function fleetNode(paths: TokendPaths): string {
  const folder = createHash('sha256').update(paths.dataDir).digest('hex').slice(0, 6);
  return `${os.hostname().slice(0, 32)}#${folder}`;
}
