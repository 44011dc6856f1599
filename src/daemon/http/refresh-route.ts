/**
 * `POST /v1/accounts/NAME/refresh`, the forced refresh (rules 3 and 5, docs/architecture.md).
 * Served like the token route: a plain node:http lane in front of Hono (no router, no web
 * Request) that shares its handler with the Hono route (`app.request()` tests). What it
 * needs before the refresh leaves is checked first, the caller's identity included: it is
 * read from /proc before the provider call, so a caller that exits while the provider answers
 * is still named in the audit row (test/e2e-refresh-lane.test.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RefreshRequest, type RefreshResponse } from '../../protocol/api.js';
import { isAccountName } from '../../protocol/names.js';
import { CLIENT_HEADER, ROUTE_PATTERNS } from '../../protocol/routes.js';
import { audited, type AuditLog } from '../audit.js';
import type { AccessControl } from '../caller/access.js';
import { checkManage } from '../caller/access-writes.js';
import { callerOf, keyCallerOf } from '../caller/connection.js';
import type { CallerIdentity } from '../caller/proc.js';
import type { Broker } from '../broker.js';
import type { ConfigStore } from '../config.js';
import type { Logger } from '../log.js';
import { readIncoming } from './raw-request.js';
import { tokenBody } from './token-route.js';
import { errorResponse, parseJsonBody, sendJson } from './wire.js';

/** What the route needs; app.ts's AppDeps has it (declared here so the two modules do not import each other). */
export interface RefreshRouteDeps {
  broker: Broker;
  audit: AuditLog;
  config: Pick<ConfigStore, 'getAccount'>;
  /** Who may take the account's token: a coalesced refresh (`if_token`) answers with it. */
  access: Pick<AccessControl, 'check'>;
}

/** One forced refresh, as the route receives it. */
export interface RefreshCall {
  /** A valid account name (the caller of the handler checked it). */
  name: string;
  /** The request body (already being read). */
  body: () => Promise<Buffer>;
  /** The User-Agent the caller declared. */
  client: string | undefined;
  /** A listener app key's identity, known without reading /proc: the only callers `checkManage` refuses. */
  keyed: CallerIdentity | undefined;
  /** The verified caller (a /proc read on a connection's first use, caller/connection.ts). */
  caller: () => CallerIdentity | undefined;
}

export type RefreshHandler = (call: RefreshCall) => Promise<RefreshResponse>;

export function createRefreshHandler(deps: RefreshRouteDeps): RefreshHandler {
  return async ({ name, body, client, keyed, caller }) => {
    checkManage(name, deps.config.getAccount(name), keyed);
    // `if_token` comes in the body, never the URL: it is a token (logs and proxies keep URLs).
    const { if_token: ifToken } = parseJsonBody(await body(), RefreshRequest);
    // A coalesced refresh answers with the token: the account's access decides, as for POST /v1/token.
    if (ifToken !== undefined) {
      const allowed = deps.access.check(name, caller(), client);
      if (allowed) await allowed;
    }
    // Who asked is read before the provider is called, not after: a caller gone by then (its
    // process exited) would leave a forced refresh with nobody named in the audit. The read is
    // once per connection (caller/connection.ts).
    const by = caller()?.caller;
    // An action, not a read: one row per request, with how it ended.
    const r = await audited(deps.audit, { account: name, action: 'refresh', caller: client, by }, () =>
      deps.broker.forceRefresh(name, { ifToken }),
    );
    const answer: RefreshResponse = { account: name, expires_at: isoOrNull(r.grant.expires_at), generation: r.grant.generation };
    // The token goes back only to a caller that showed one of the account's (a coalesced refresh).
    if (ifToken !== undefined && r.token) Object.assign(answer, tokenBody(r.token, Date.now()), { refreshed: r.refreshed });
    return answer;
  };
}

export const isoOrNull = (ms: number | null) => (ms ? new Date(ms).toISOString() : null);

const [PREFIX, SUFFIX] = ROUTE_PATTERNS.accountRefresh.split(':name');

/** The account a plain `/v1/accounts/NAME/refresh` names; undefined for anything else (Hono serves it, or says why not). */
function accountOfTarget(url: string | undefined): string | undefined {
  if (!url?.startsWith(PREFIX) || !url.endsWith(SUFFIX)) return undefined;
  const name = url.slice(PREFIX.length, url.length - SUFFIX.length);
  return isAccountName(name) ? name : undefined;
}

/**
 * The route as a plain node:http handler, in front of Hono; false for any other request. A
 * target it does not read plainly (a query, an escaped or invalid name) goes to the Hono
 * route, which answers it as before.
 */
export function refreshLane(handler: RefreshHandler, log: Logger): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const name = accountOfTarget(req.url);
    if (name === undefined) return false;
    const ua = req.headers[CLIENT_HEADER];
    // Read to the end before anything is answered, as for the routes behind Hono (raw-request.ts).
    const body = readIncoming(req);
    const settled = () => body;
    body
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() =>
        handler({ name, body: settled, client: Array.isArray(ua) ? ua[0] : ua, keyed: keyCallerOf(req), caller: () => callerOf(req) }),
      )
      .then(
        (answer) => sendJson(res, 200, answer),
        (err) => {
          const r = errorResponse(err, log, ROUTE_PATTERNS.accountRefresh);
          sendJson(res, r.status, r.body, r.headers);
        },
      );
    return true;
  };
}
