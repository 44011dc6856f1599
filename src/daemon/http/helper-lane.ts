/**
 * `POST /v1/helpers/TOOL/ACTION`, what `tokend token NAME` (build/tokend) and every
 * credential helper's fast path send (native/tokend-fast.c): a plain node:http lane in front
 * of Hono, like the token's, sharing its handler with the Hono route (helpers-route.ts) and
 * answering byte for byte as that route does (test/helper-lane.test.ts). It reads only plain
 * targets: a tool and an action of lower-case letters and dashes, and at most
 * `?account=NAME` with a valid name (kubectl-credential's). Anything else (an escaped
 * segment, another query, a trailing slash) goes to the Hono route, which answers it as
 * before.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HELPER_ACCOUNT_QUERY, HELPER_ENV_HEADER, helperHttpResponse } from '../../protocol/helper-http.js';
import { isAccountName } from '../../protocol/names.js';
import { CLIENT_HEADER, ROUTE_PATTERNS } from '../../protocol/routes.js';
import { callerOf } from '../caller/connection.js';
import type { Logger } from '../log.js';
import type { HelperHandler } from './helpers-route.js';
import { readIncoming } from './raw-request.js';
import { errorResponse, sendAsApp } from './wire.js';

const PREFIX = ROUTE_PATTERNS.helper.slice(0, ROUTE_PATTERNS.helper.indexOf(':'));
const PLAIN = /^([a-z-]+)\/([a-z-]+)$/;
const ACCOUNT = `${HELPER_ACCOUNT_QUERY}=`;

/** The tool, action and `?account=` of a plain helper target; undefined for anything else. */
function plainTarget(url: string | undefined): { tool: string; action: string; account: string | undefined } | undefined {
  if (!url?.startsWith(PREFIX)) return undefined;
  const q = url.indexOf('?');
  const m = PLAIN.exec(q < 0 ? url.slice(PREFIX.length) : url.slice(PREFIX.length, q));
  if (!m) return undefined;
  if (q < 0) return { tool: m[1], action: m[2], account: undefined };
  const query = url.slice(q + 1);
  const account = query.slice(ACCOUNT.length);
  return query.startsWith(ACCOUNT) && isAccountName(account) ? { tool: m[1], action: m[2], account } : undefined;
}

const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/** The lane: true when the request was its own. */
export function helperLane(handle: HelperHandler, log: Logger): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const target = plainTarget(req.url);
    if (!target) return false;
    const client = one(req.headers[CLIENT_HEADER]);
    const envHeader = one(req.headers[HELPER_ENV_HEADER]);
    readIncoming(req)
      // The caller is read once per connection (caller/connection.ts), as the Hono route reads it.
      .then((stdin) => handle({ ...target, stdin, client, by: callerOf(req), envHeader }))
      .then(
        (result) => {
          const r = helperHttpResponse(result);
          sendAsApp(res, r.status, r.headers, r.body);
        },
        (err) => {
          const r = errorResponse(err, log, (req.url ?? '').split('?')[0]);
          sendAsApp(res, r.status, { 'Content-Type': 'application/json', ...r.headers }, JSON.stringify(r.body));
        },
      );
    return true;
  };
}
