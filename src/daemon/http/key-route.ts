import type { Hono } from 'hono';
import { KeyMoveRequest, type KeyStore, type KeyView } from '../../protocol/api.js';
import type { TokendPaths } from '../../protocol/paths.js';
import { ROUTE_PATTERNS } from '../../protocol/routes.js';
import { audited, type AuditSink } from '../audit.js';
import { E } from '../errors.js';
import type { Logger } from '../log.js';
import { KeyringError } from '../store/keyring.js';
import { KeyMoveConflict, moveMasterKey, type MasterKey } from '../store/master-key.js';
import { readJson } from './app.js';
import { who } from './raw-request.js';

/**
 * Where the master key lives, and moving it (`tokend key move`). The daemon does the move:
 * it holds the key, and it is config.json's only writer. A fleet's key is a shared file
 * and stays one.
 */
export function mountKey(deps: {
  masterKey: MasterKey | undefined;
  paths: Pick<TokendPaths, 'dataDir' | 'keyFile'>;
  saveKind: (kind: KeyStore) => Promise<void>;
  /** After a move: the disk watch stops (or starts) watching the key file. */
  moved: () => void;
  log: Logger;
  audit: AuditSink;
}): (app: Hono) => void {
  const fleetKey = () =>
    E.conflict(
      "this daemon shares a fleet database: its key is the fleet's key file, which every daemon of the fleet reads, and stays one",
    );
  return function keyRoutes(app) {
    app.get(ROUTE_PATTERNS.key, (c) => {
      // A fleet daemon's key is the fleet's key file (TOKEND_KEY_FILE), which it read at start.
      const view: KeyView = deps.masterKey
        ? { key_store: deps.masterKey.kind, where: deps.masterKey.where }
        : { key_store: 'file', where: deps.paths.keyFile };
      return c.json(view);
    });
    app.post(ROUTE_PATTERNS.keyMove, async (c) => {
      const { to } = await readJson(c, KeyMoveRequest);
      const { caller, by } = who(c);
      // Done or refused, a key move is audited: the daemon's own row, no account.
      const view = await audited(deps.audit, { account: '', action: 'key_move', caller, by, detail: { to } }, async () => {
        if (!deps.masterKey) throw fleetKey();
        const from = deps.masterKey.where;
        try {
          const moved = await moveMasterKey(deps.masterKey, to, deps.paths, deps.saveKind);
          if (moved.moved) {
            deps.moved();
            deps.log.info('master key moved', { from, to: moved.where, client: caller });
          }
          return moved;
        } catch (err) {
          if (err instanceof KeyMoveConflict) throw E.conflict(err.message);
          if (err instanceof KeyringError) throw E.upstreamUnavailable(err.message);
          throw err;
        }
      });
      return c.json(view);
    });
  };
}
