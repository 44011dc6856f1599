/**
 * The daemon's one HTTP entry: every request on the socket (and on the loopback listener,
 * behind its guard) comes in here, and this is the only place that decides who answers it.
 * Read top to bottom, in the order a request meets them:
 *
 * 1. A request pipelined behind a body the daemon is discarding is never served
 *    (keep-alive.ts: its client was told `Connection: close` and sends it again).
 * 2. `GET /v1/health`, what every autostart waits for (health-route.ts), `POST /v1/token`,
 *    the request every script and SDK makes: the token lane (token-route.ts), and
 *    `POST /v1/helpers/TOOL/ACTION`, what `tokend token NAME` and the credential helpers'
 *    native client send (helper-lane.ts): plain node:http handlers with no router and no web
 *    Request.
 * 3. `/v1/proxy/NAME/…`: the proxy lane (proxy-lane.ts), streaming both ways.
 * 4. `POST /v1/accounts/NAME/refresh`, the forced refresh: a lane of its own (refresh-route.ts),
 *    like the token's.
 * 5. Everything else: its body read first (raw-request.ts), then the Hono app (app.ts)
 *    with its route groups (helpers, for a target the lane does not read plainly; logins;
 *    key) and its one `onError`, loaded on the first such request (compose.ts).
 *
 * Every answer, from any of them, follows the keep-alive rule through the servers'
 * `ServerResponse` (keep-alive.ts); every error body is the protocol's `ErrorBody` (wire.ts).
 */
import http from 'node:http';
import { accessOf } from '../caller/access.js';
import { dpopProofsOf } from '../dpop/proofs.js';
import type { EntryDeps, Shared } from './compose.js';
import { healthLane } from './health-route.js';
import { helperLane } from './helper-lane.js';
import { mountHelpers } from './helpers-route.js';
import { arrivedAfterClose, ClosingResponse } from './keep-alive.js';
import { proxyLane } from './proxy-lane.js';
import { readBeforeRouting } from './raw-request.js';
import { createRefreshHandler, refreshLane } from './refresh-route.js';
import { createTokenHandler, tokenLane } from './token-route.js';
import { errorResponse, sendJson } from './wire.js';

export type { EntryDeps } from './compose.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Compose the lanes and the app into the one request handler. */
export function createEntry(given: EntryDeps): Handler {
  const deps = { ...given, access: accessOf(given) };
  // Made now, not with the app: the token lane resolves urls and hosts, the proxy signs proofs,
  // and the proofs follow the account events from the start.
  const shared: Shared = { helpers: mountHelpers(deps), dpop: dpopProofsOf(deps) };
  const health = healthLane(deps);
  const token = tokenLane(
    createTokenHandler({ broker: deps.broker, audit: deps.audit, access: deps.access, resolveTarget: shared.helpers.resolveTarget }),
    deps.log,
  );
  const helper = helperLane(shared.helpers.handle, deps.log);
  const proxy = proxyLane({ ...deps, dpop: shared.dpop });
  const refresh = refreshLane(createRefreshHandler(deps), deps.log);
  // The Hono app (compose.ts) is loaded by the first request that needs it, once.
  let app: Promise<Handler> | undefined;
  const loadApp = () => (app ??= import('./compose.js').then((m) => m.appListener(deps, shared) as Handler));

  return function entry(req, res) {
    if (arrivedAfterClose(req)) return; // 1
    if (health(req, res) || token(req, res) || helper(req, res) || proxy(req, res) || refresh(req, res)) return; // 2, 3, 4: each says whether the request was its own
    void readBeforeRouting(req)
      .then(loadApp)
      .then(
        (router) => {
          // 5
          if (!req.socket.destroyed) router(req, res);
        },
        (err) => {
          const r = errorResponse(err, deps.log, req.url ?? '');
          sendJson(res, r.status, r.body, r.headers);
        },
      );
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
