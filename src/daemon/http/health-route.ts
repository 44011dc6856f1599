/**
 * `GET /v1/health`: what every client's autostart waits for before its first request, so it is
 * a plain node:http lane like the token's and answers before the Hono app is even loaded
 * (entry.ts loads that on the first request that needs it). The Hono app serves the same body
 * (app.ts) for `app.request()` and for any request this lane leaves to it (a HEAD, a body).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Health } from '../../protocol/api.js';
import { ROUTE_PATTERNS } from '../../protocol/routes.js';
import type { ConfigStore } from '../config.js';
import { hasBody } from './raw-request.js';

export interface HealthDeps {
  config: Pick<ConfigStore, 'accountCount'>;
  version: string;
  startedAt: number;
  warnings?: () => string[];
}

/** The body of `GET /v1/health`. */
export function healthBody(deps: HealthDeps): Health {
  return {
    status: 'ok',
    version: deps.version,
    pid: process.pid,
    uptime_s: Math.round((Date.now() - deps.startedAt) / 1000),
    accounts: deps.config.accountCount(),
    ...(deps.warnings ? { warnings: deps.warnings() } : {}),
  };
}

const PATH = ROUTE_PATTERNS.health;

/** The lane: true when the request was its own (a GET of the path, any query, no body). */
export function healthLane(deps: HealthDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url ?? '';
    if (req.method !== 'GET' || !url.startsWith(PATH) || (url.length > PATH.length && url[PATH.length] !== '?') || hasBody(req))
      return false;
    const json = JSON.stringify(healthBody(deps));
    // As Hono's c.json wrote it through @hono/node-server, header names included.
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) });
    res.end(json);
    return true;
  };
}
