/**
 * The daemon's one HTTP entry: every request on the socket (and on the loopback listener,
 * behind its guard) comes in here, and this is the only place that decides who answers it.
 * Read top to bottom, in the order a request meets them:
 *
 * 1. A request pipelined behind a body the daemon is discarding is never served
 *    (keep-alive.ts: its client was told `Connection: close` and sends it again).
 * 2. `POST /v1/token`, the request every script and helper makes: the token lane
 *    (token-route.ts), a plain node:http handler with no router and no web Request.
 * 3. `/v1/proxy/NAME/…`: the proxy lane (proxy-lane.ts), streaming both ways.
 * 4. `POST /v1/accounts/NAME/refresh`, the forced refresh: a lane of its own (refresh-route.ts),
 *    like the token's.
 * 5. Everything else: its body read first (raw-request.ts), then the Hono app (app.ts)
 *    with its route groups (helpers, logins, key) and its one `onError`.
 *
 * Every answer, from any of them, follows the keep-alive rule through the servers'
 * `ServerResponse` (keep-alive.ts); every error body is the protocol's `ErrorBody` (wire.ts).
 */
import http from 'node:http';
import { getRequestListener } from '@hono/node-server';
import type { Hono } from 'hono';
import type { TokendPaths } from '../../protocol/paths.js';
import type { KeyStore } from '../../protocol/api.js';
import type { Driver } from '../drivers/driver.js';
import type { MasterKey } from '../store/master-key.js';
import { accessOf, createApp, type AppDeps } from './app.js';
import type { Approvals } from '../caller/approvals.js';
import { mountApprovals } from './approvals-route.js';
import { mountAudit } from './audit-route.js';
import { mountDpop } from './dpop-route.js';
import { ProofPool } from '../dpop/proof-pool.js';
import { DpopProofs } from '../dpop/proofs.js';
import { mountHelpers } from './helpers-route.js';
import { arrivedAfterClose, ClosingResponse } from './keep-alive.js';
import { mountKey } from './key-route.js';
import { mountLogins } from './logins-route.js';
import { proxyLane } from './proxy-lane.js';
import { readBeforeRouting } from './raw-request.js';
import { createRefreshHandler, refreshLane } from './refresh-route.js';
import { createTokenHandler, tokenLane } from './token-route.js';
import type { LoginManager } from '../logins.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
type ResolveTarget = NonNullable<AppDeps['resolveTarget']>;

export interface EntryDeps extends Omit<AppDeps, 'resolveTarget' | 'extend'> {
  getDriver: (name: string) => Driver | undefined;
  logins: LoginManager;
  /** The master key this daemon holds; undefined for a fleet's (key-route.ts). */
  masterKey: MasterKey | undefined;
  paths: Pick<TokendPaths, 'dataDir' | 'keyFile'>;
  /** Record where the master key now lives (config.json). */
  saveKeyKind: (kind: KeyStore) => Promise<void>;
  /** After a key move: the disk watch follows the key. */
  keyMoved: () => void;
  /** The approvals of `ask` accounts (caller/approvals.ts); without them (tests) nothing waits. */
  approvals?: Approvals;
}

/** The Hono app with every route group the daemon serves; the tests list its routes from here too. */
export function composeApp(given: EntryDeps): { app: Hono; resolveTarget: ResolveTarget; dpop: DpopProofs } {
  const deps = { ...given, access: accessOf(given) };
  const helpers = mountHelpers(deps);
  const dpop = new DpopProofs({
    store: deps.store,
    config: deps.config,
    events: deps.events,
    grantBinding: (account) => deps.broker.grantBinding(account),
    pool: new ProofPool(),
  });
  const app = createApp({
    ...deps,
    resolveTarget: helpers.resolveTarget,
    extend: [
      helpers.extend,
      mountLogins({ logins: deps.logins }),
      mountKey({
        masterKey: deps.masterKey,
        paths: deps.paths,
        saveKind: deps.saveKeyKind,
        moved: deps.keyMoved,
        log: deps.log,
        audit: deps.audit,
      }),
      mountAudit({ audit: deps.audit, store: deps.store }),
      mountApprovals({ approvals: deps.approvals }),
      mountDpop({ broker: deps.broker, audit: deps.audit, dpop, config: deps.config, access: deps.access }),
    ],
  });
  return { app, resolveTarget: helpers.resolveTarget, dpop };
}

/** Compose the lanes and the app into the one request handler. */
export function createEntry(given: EntryDeps): Handler {
  const deps = { ...given, access: accessOf(given) };
  const { app, resolveTarget, dpop } = composeApp(deps);
  const router = getRequestListener(app.fetch);
  const token = tokenLane(createTokenHandler({ broker: deps.broker, audit: deps.audit, access: deps.access, resolveTarget }), deps.log);
  const proxy = proxyLane({ ...deps, dpop });
  const refresh = refreshLane(createRefreshHandler(deps), deps.log);

  return function entry(req, res) {
    if (arrivedAfterClose(req)) return; // 1
    if (token(req, res) || proxy(req, res) || refresh(req, res)) return; // 2, 3, 4: each says whether the request was its own
    void readBeforeRouting(req).then(() => {
      // 5
      if (!req.socket.destroyed) void router(req, res);
    });
  };
}

/**
 * A server for the entry, every answer under the keep-alive rule. With `guard` (the loopback
 * listener's, loopback-listener.ts), the guard answers first and refuses what it must.
 */
export function createHttpServer(entry: Handler, guard?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean): http.Server {
  const handler: Handler = guard
    ? function guarded(req, res) {
        if (!arrivedAfterClose(req) && !guard(req, res)) entry(req, res);
      }
    : entry;
  return http.createServer({ ServerResponse: ClosingResponse }, handler);
}
