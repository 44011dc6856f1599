import type { IncomingMessage, ServerResponse } from 'node:http';
import { HTTPException } from 'hono/http-exception';
import { TokenRequest, type TokenResponse } from '../../protocol/api.js';
import { describeIssues } from '../../protocol/issues.js';
import { ROUTES } from '../../protocol/routes.js';
import type { AuditLog } from '../audit.js';
import type { Broker, CachedToken } from '../broker.js';
import { E, TokendError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TargetRequest } from '../match.js';
import { isStoreUnavailable } from '../store/errors.js';
import { readIncoming } from './raw-request.js';

export interface WireResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** What a 503 for a fleet database that cannot answer suggests waiting (its pools reconnect by themselves). */
const STORE_RETRY_AFTER_S = 5;

/**
 * The wire form of any error, in one place: our codes as they are, a fleet database that
 * cannot answer as a 503, anything else as a plain `internal` with no detail on the wire
 * (the log has it).
 */
export function errorResponse(err: unknown, log: Logger, route: string): WireResponse {
  // A fleet's database that cannot answer now is an outage, not a bug: 503, try again later.
  if (isStoreUnavailable(err)) err = E.upstreamUnavailable(`${err.message}; try again in a few seconds`, { retryAfter: STORE_RETRY_AFTER_S });
  if (err instanceof TokendError) {
    const body: Record<string, unknown> = { code: err.code, message: err.message };
    if (err.account) body.account = err.account;
    if (err.login) body.login = err.login;
    let headers: Record<string, string> | undefined;
    if (err.retryAfter !== undefined) {
      body.retry_after = err.retryAfter;
      headers = { 'retry-after': String(err.retryAfter) };
    }
    return { status: err.status, body: { error: body }, headers };
  }
  if (err instanceof HTTPException && err.status < 500) {
    return { status: err.status, body: { error: { code: 'invalid_request', message: err.message || 'bad request' } } };
  }
  log.error('internal error', { error: (err as Error)?.message ?? String(err), route });
  return { status: 500, body: { error: { code: 'internal', message: 'internal error (see the daemon log)' } } };
}

/** Parse a JSON body with a protocol schema: 400 naming the field, never a raw ZodError. */
export function parseJsonBody<T>(body: Buffer, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: import('zod').ZodError } }): T {
  let raw: unknown;
  try {
    raw = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
  } catch {
    throw E.invalidRequest('the request body is not valid JSON');
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw E.invalidRequest(describeIssues(parsed.error));
  return parsed.data;
}

export function tokenBody(tok: CachedToken, now: number): TokenResponse {
  return {
    account: tok.account,
    access_token: tok.access_token,
    token_type: tok.token_type,
    expires_at: tok.expires_at === null ? null : new Date(tok.expires_at).toISOString(),
    expires_in: tok.expires_at === null ? null : Math.max(0, Math.floor((tok.expires_at - now) / 1000)),
    scope: tok.scope,
  };
}

export type TokenHandler = (body: Buffer, client: string | undefined) => Promise<TokenResponse>;

/** What the token route needs; app.ts's AppDeps has it (declared here so the two modules do not import each other). */
export interface TokenRouteDeps {
  broker: Broker;
  audit: AuditLog;
  /** Resolve a url/host to an account name; undefined when none matches. */
  resolveTarget?: (req: TargetRequest) => string | undefined;
}

/** `POST /v1/token` (rules 1–2, docs/architecture.md): parse, look up memory, answer. No network, no log line, and no disk once the token is in memory. */
export function createTokenHandler(deps: TokenRouteDeps): TokenHandler {
  return async (body, client) => {
    const req = parseJsonBody(body, TokenRequest);
    let account = req.account;
    if (!account) {
      account = deps.resolveTarget?.({ url: req.url, host: req.host, username: req.username });
      if (!account) throw E.notFound(`no account serves ${req.url ?? req.host}`);
    }
    const tok = await deps.broker.getToken({ account, min_ttl: req.min_ttl, scope: req.scope, audience: req.audience });
    deps.audit.record(account, client, 'token');
    return tokenBody(tok, Date.now());
  };
}

/**
 * The token route as a plain node:http handler, in front of Hono: the request scripts and
 * helpers make most goes through no router and no web Request (the hot-token bench). Returns
 * false for any other request.
 */
export function tokenLane(handler: TokenHandler, log: Logger): (req: IncomingMessage, res: ServerResponse) => boolean {
  const send = (res: ServerResponse, r: WireResponse) => {
    const json = JSON.stringify(r.body);
    res.writeHead(r.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), ...r.headers });
    res.end(json);
  };
  return (req, res) => {
    if (req.method !== 'POST' || req.url !== ROUTES.token) return false;
    const ua = req.headers['user-agent'];
    readIncoming(req)
      .then((body) => handler(body, ua))
      .then(
        (body) => send(res, { status: 200, body }),
        (err) => send(res, errorResponse(err, log, ROUTES.token)),
      );
    return true;
  };
}
