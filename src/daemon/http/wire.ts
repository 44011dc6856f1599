/**
 * What every route shares on the wire: a JSON body parsed with a protocol schema on the way
 * in, and the one error shape (`ErrorBody`, docs/api.md) on the way out. The raw lanes
 * (token, proxy, the loopback guard) and the Hono app's one `onError` all write through it.
 */
import type { ServerResponse } from 'node:http';
import { HTTPException } from 'hono/http-exception';
import type { ZodError } from 'zod';
import type { ErrorBody } from '../../protocol/api.js';
import { describeIssues } from '../../protocol/issues.js';
import { E, ApiError } from '../errors.js';
import type { Logger } from '../log.js';
import { isStoreUnavailable } from '../store/errors.js';

export interface WireError {
  status: number;
  body: ErrorBody;
  headers?: Record<string, string>;
}

/** What a 503 for a fleet database that cannot answer suggests waiting (its pools reconnect by themselves). */
const STORE_RETRY_AFTER_S = 5;

/** The wire body of one of our errors. */
export function errorBody(err: ApiError): ErrorBody {
  const body: ErrorBody['error'] = { code: err.code, message: err.message };
  if (err.account) body.account = err.account;
  if (err.login) body.login = err.login;
  if (err.retryAfter !== undefined) body.retry_after = err.retryAfter;
  return { error: body };
}

/**
 * The wire form of any error, in one place: our codes as they are, a fleet database that
 * cannot answer as a 503, anything else as a plain `internal` with no detail on the wire
 * (the log has it).
 */
export function errorResponse(err: unknown, log: Logger, route: string): WireError {
  // A fleet's database that cannot answer now is an outage, not a bug: 503, try again later.
  if (isStoreUnavailable(err))
    err = E.upstreamUnavailable(`${err.message}; try again in a few seconds`, { retryAfter: STORE_RETRY_AFTER_S });
  if (err instanceof ApiError) {
    const headers = err.retryAfter === undefined ? undefined : { 'retry-after': String(err.retryAfter) };
    return { status: err.status, body: errorBody(err), headers };
  }
  if (err instanceof HTTPException && err.status < 500) {
    return { status: err.status, body: { error: { code: 'invalid_request', message: err.message || 'bad request' } } };
  }
  log.error('internal error', { error: (err as Error)?.message ?? String(err), route });
  return { status: 500, body: { error: { code: 'internal', message: 'internal error (see the daemon log)' } } };
}

/** Write a JSON answer from a raw lane: content type and length first, then `headers` in their order. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string | number>): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** The same, for a body already serialised. */
export function sendJsonText(res: ServerResponse, status: number, json: string, headers?: Record<string, string | number>): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), ...headers });
  res.end(json);
}

/** Parse a JSON body with a protocol schema: 400 naming the field, never a raw ZodError. */
export function parseJsonBody<T>(
  body: Buffer,
  schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: ZodError } },
): T {
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

/**
 * Write an answer with the header lines the Hono app gives the same answer through
 * @hono/node-server: one header as it was named; more than one through a web `Headers`
 * (names lower-cased, sorted); then node-server's `Content-Length`. A lane that shares its
 * handler with an app route (helper-lane.ts) then answers byte for byte as the route does.
 */
export function sendAsApp(res: ServerResponse, status: number, headers: Record<string, string>, body: string | Buffer): void {
  const names = Object.keys(headers);
  const out: Record<string, string | number> = {};
  if (names.length === 1) out[names[0]] = headers[names[0]];
  else {
    const lower = new Map(names.map((n) => [n.toLowerCase(), headers[n]]));
    for (const n of [...lower.keys()].sort()) out[n] = lower.get(n) as string;
  }
  out['Content-Length'] = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  res.writeHead(status, out);
  res.end(body);
}
