/**
 * The API proxy, `ANY /v1/proxy/:name/*` (docs/api.md, the API proxy): the request goes to the
 * account's `api_base` with the account's current token injected, so an app never holds a
 * token. Served by node:http in front of Hono, like the token route, so bodies stream both
 * ways with backpressure and nothing is buffered but a small request body kept for one
 * retry.
 *
 * - The caller's Authorization and Cookie, and hop-by-hop headers (RFC 9110 §7.6.1), never
 *   go upstream; the token goes only to `api_base` (proxy-path.ts keeps the path under it).
 * - 401 (or a status the driver names, Cal.com's 498) marks the token stale; when the
 *   request body was small enough to keep, one refresh (shared with every other caller)
 *   and one retry follow. Otherwise the 401 goes back and the next call gets a fresh
 *   token. A 403 (insufficient_scope, RFC 6750 §3.1) refreshes nothing.
 * - Redirects are not followed: a Location under `api_base` is rewritten to the proxy
 *   path; any other passes as it is, and the token never follows it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import type { Dispatcher } from 'undici';
import { isAccountName } from '../../protocol/names.js';
import { PROXY_ERROR_HEADER, PROXY_PREFIX, ROUTE_PATTERNS } from '../../protocol/routes.js';
import type { AuditLog } from '../audit.js';
import type { AccessControl } from '../caller/access.js';
import { callerOf } from '../caller/connection.js';
import type { Broker } from '../broker.js';
import type { ConfigStore } from '../config.js';
import type { Driver } from '../drivers/driver.js';
import { E, ApiError, unknownAccount } from '../errors.js';
import type { Logger } from '../log.js';
import { dispatcherFor } from '../outbound.js';
import type { DpopProofs } from '../dpop/proofs.js';
import { nonceChallenge, upstreamAuthorization } from '../dpop/proxy-proof.js';
import { ProxyPathError, resolveProxyTarget, rewriteLocation, splitProxyTarget, type ProxyTarget } from '../proxy-path.js';
import { Deadlines, type Wait } from './deadlines.js';
import { hasBody, readIncoming } from './raw-request.js';
import { errorResponse, sendJson } from './wire.js';

export interface ProxyDeps {
  config: Pick<ConfigStore, 'getAccount' | 'settings'>;
  broker: Pick<Broker, 'getToken' | 'cachedToken' | 'reject'>;
  getDriver: (name: string) => Driver | undefined;
  audit: Pick<AuditLog, 'record'>;
  access: Pick<AccessControl, 'check'>;
  log: Logger;
  /** DPoP accounts' proofs (RFC 9449 §7); without it every token goes as its token_type says. */
  dpop?: DpopProofs;
}

/** A request body up to this size is kept, so a request refused for a stale token can be sent again. */
export const RETRY_BODY_LIMIT = 1024 * 1024;

/** RFC 9110 §7.6.1 hop-by-hop fields, plus what we set ourselves or never forward. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
const NEVER_UPSTREAM = new Set(['authorization', 'cookie', 'host', 'expect', 'dpop']);

/** The proxy as a node:http handler; returns false for any request that is not for it. */
export function proxyLane(deps: ProxyDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const target = splitProxyTarget(req.url ?? '');
    if (!target) return false;
    proxy(deps, req, res, target).catch((err) => failRequest(deps.log, req, res, err));
    return true;
  };
}

type Body = { kept: Buffer | undefined; head: Buffer[]; streamRest: boolean };
/** A request without a body (shared: never changed). */
const NO_BODY: Body = Object.freeze({ kept: Buffer.alloc(0), head: [], streamRest: false });

async function proxy(
  deps: ProxyDeps,
  req: IncomingMessage,
  res: ServerResponse,
  target: { name: string; rest: string; query: string },
): Promise<void> {
  const { name } = target;
  if (!isAccountName(name)) throw E.invalidRequest(`the proxy path must start with an account name: ${PROXY_PREFIX}NAME/PATH`);
  const cfg = deps.config.getAccount(name);
  if (!cfg) throw unknownAccount(name);
  const allowed = deps.access.check(name, callerOf(req), req.headers['user-agent']);
  if (allowed) await allowed;
  if (!cfg.api_base) {
    throw E.invalidRequest(`account "${name}" has no api_base to proxy to; set it with \`tokend set ${name} --api-base URL\``, {
      account: name,
    });
  }
  let resolved: ProxyTarget;
  try {
    resolved = resolveProxyTarget(cfg.api_base, target.rest, target.query);
  } catch (err) {
    if (err instanceof ProxyPathError) throw E.invalidRequest(`refused: ${err.message}`, { account: name });
    throw err;
  }
  const { url, protocol } = resolved;
  if (protocol === 'http:' && !resolved.loopback) {
    throw E.invalidRequest(`account "${name}": plain http is allowed only to loopback hosts; the api_base must be https`, {
      account: name,
    });
  }
  if (protocol !== 'http:' && protocol !== 'https:') throw E.invalidRequest(`account "${name}": the api_base must be an http(s) URL`);

  // A GET with no body and a hot token awaits nothing: it goes upstream in the turn it came.
  const body = hasBody(req) ? await readBody(req) : NO_BODY;
  const staleStatuses = deps.getDriver(cfg.driver)?.staleStatuses;
  deps.audit.record(name, req.headers['user-agent'], 'proxy', callerOf(req));

  let token = deps.broker.cachedToken({ account: name }) ?? (await deps.broker.getToken({ account: name }));
  const dispatcher = dispatcherFor(cfg);
  const route: Route = { ...resolved, apiBase: cfg.api_base, account: name };
  // Two reasons to send a kept body again, once each: an API that asks for a DPoP nonce
  // (RFC 9449 §9: the same token, a proof with the nonce), and a status that says the token
  // is stale (whoever asks next gets a fresh one, rule 6, like git's erase; this caller's
  // answer is the retry's).
  let nonceSent = false;
  let refreshed = false;
  for (;;) {
    const tok = token;
    let why: 'nonce' | 'stale' | undefined;
    const retryOn = (status: number, raw: Buffer[]) => {
      if (!nonceSent && nonceChallenge(deps.dpop, name, url, status, raw)) {
        why = 'nonce';
        return body.kept !== undefined;
      }
      if (status !== 401 && !staleStatuses?.includes(status)) return false;
      deps.broker.reject(name, tok.access_token);
      why = 'stale';
      return body.kept !== undefined && !refreshed;
    };
    const auth = upstreamAuthorization(deps.dpop, name, req.method ?? 'GET', url, tok);
    const pairs = Array.isArray(auth) ? auth : await auth;
    // The refused answer is discarded (its connection kept) on 'retry'.
    if ((await forward(deps, dispatcher, req, res, route, pairs, body, retryOn)) !== 'retry') return;
    if (why === 'nonce') nonceSent = true;
    else {
      // One refresh, shared with every other caller, and one retry.
      refreshed = true;
      token = await deps.broker.getToken({ account: name });
    }
  }
}

/**
 * Read the body up to RETRY_BODY_LIMIT: a body that ends within it is kept (a retry can
 * send it again); a longer one is streamed to the first upstream request only.
 */
function readBody(req: IncomingMessage): Promise<Body> {
  if (Number(req.headers['content-length']) > RETRY_BODY_LIMIT) return Promise.resolve({ kept: undefined, head: [], streamRest: true });
  return new Promise((resolve, reject) => {
    const head: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      head.push(chunk);
      size += chunk.length;
      if (size > RETRY_BODY_LIMIT) {
        cleanup();
        req.pause();
        resolve({ kept: undefined, head, streamRest: true });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve({ kept: Buffer.concat(head), head: [], streamRest: false });
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/** Where one proxied request goes, and what a Location under it becomes. */
interface Route extends ProxyTarget {
  apiBase: string;
  account: string;
}

/**
 * What goes upstream: the caller's end-to-end headers in their order and case, without its
 * Authorization and Cookie, then the account's token. Built for every request sent (a
 * retry's too).
 */
function upstreamHeaders(req: IncomingMessage, auth: string[], body: Body): string[] {
  const raw = req.rawHeaders;
  const named = req.headers.connection === undefined ? undefined : connectionNames(req.headers.connection);
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase();
    if (HOP_BY_HOP.has(lower) || NEVER_UPSTREAM.has(lower) || named?.includes(lower) || lower.startsWith('x-tokend-')) continue;
    if (lower === 'content-length' && body.kept !== undefined) continue; // set below, exactly
    headers.push(raw[i], raw[i + 1]);
  }
  headers.push(...auth); // the token (and a DPoP account's proof): upstreamAuthorization
  if (body.kept !== undefined && body.kept.length > 0) headers.push('Content-Length', String(body.kept.length));
  return headers;
}

const PLAIN_CONNECTION = /^\s*(keep-alive|close)\s*$/i;

/** The fields a Connection header names (RFC 9110 §7.6.1): hop-by-hop too. */
function connectionNames(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

/**
 * The upstream answer's end-to-end headers, for the caller, in their order and case; a
 * Location under `api_base` rewritten to the proxy path.
 */
function answerHeaders(raw: Buffer[], route: Route): string[] {
  const headers: string[] = [];
  let named: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toString('latin1');
    const lower = k.toLowerCase();
    // Values as undici's own parser reads them.
    const v = raw[i + 1].toString('utf8');
    // `Connection: keep-alive` (nearly every answer) names no field of its own.
    if (lower === 'connection' && !PLAIN_CONNECTION.test(v)) named = [...(named ?? []), ...connectionNames(v)];
    // x-tokend-* belong to the daemon: an upstream must not be able to fake a daemon error.
    if (HOP_BY_HOP.has(lower) || lower.startsWith('x-tokend-')) continue;
    headers.push(k, lower === 'location' ? rewriteLocation(v, route.url, route.apiBase, route.account) : v);
  }
  if (!named) return headers;
  const kept: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (!named.includes(headers[i].toLowerCase())) kept.push(headers[i], headers[i + 1]);
  return kept;
}

/**
 * One upstream request, through the account's dispatcher (outbound.ts: the environment's
 * proxy, the account's CA). Resolves 'retry' when `retryOn` said the status calls for a
 * retry (its answer is discarded), else 'answered' once the answer has started to go to the
 * caller; rejects, as a wire error, when no answer came.
 */
function forward(
  deps: ProxyDeps,
  dispatcher: Dispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  route: Route,
  auth: string[],
  body: Body,
  retryOn: (status: number, rawHeaders: Buffer[]) => boolean,
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const exchange = new Exchange(res, route, retryOn, deps.config.settings.http_timeout_ms, resolve, reject);
    let upload: Buffer | PassThrough | undefined;
    if (body.kept !== undefined) {
      upload = body.kept.length > 0 ? body.kept : undefined;
      exchange.startClock(); // the request is as good as sent: the upstream has http_timeout_ms from now
    } else {
      upload = streamedUpload(req, res, body.head);
    }
    dispatcher.dispatch(
      {
        origin: route.origin,
        path: route.path,
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: upstreamHeaders(req, auth, body),
        body: upload,
        headersTimeout: 0, // ours (Exchange), from the end of the upload
        bodyTimeout: 0, // a stream may be quiet for a long time
      },
      exchange,
    );
  });
}

/** The caller's body past what was read ahead, streamed to the upstream with backpressure. */
function streamedUpload(req: IncomingMessage, res: ServerResponse, head: Buffer[]): PassThrough {
  // Node's default high-water mark (16 KiB) is a quarter of one socket read: the caller's
  // socket would stop and start for every chunk.
  const pass = new PassThrough({ highWaterMark: UPLOAD_BUFFER });
  for (const chunk of head) pass.write(chunk);
  req.pipe(pass);
  req.resume();
  // The caller's answer is over (the API answered before reading it all): stop the upload.
  res.once('close', () => {
    if (!pass.readableEnded) pass.destroy();
  });
  return pass;
}

const UPLOAD_BUFFER = 256 * 1024;

type Outcome = 'answered' | 'retry';

/**
 * undici's handler for one upstream request, writing the answer straight into the caller's
 * response: no Readable per body, no AbortController, no header object. undici's legacy
 * handler methods are the ones it calls itself (a handler of the newer shape is wrapped per
 * request, and its headers parsed into an object).
 *
 * The timeout: once the request is sent the upstream has http_timeout_ms to start
 * answering; an upload takes as long as it takes before that, and so does the answer's
 * body after it (a download, a stream of server-sent events).
 *
 * Exported for test/proxy-streams.test.ts, which drives it over a real socket.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  private state: 'waiting' | 'forwarding' | 'discarding' | 'done' = 'waiting';
  private abortUpstream: ((err?: Error) => void) | undefined;
  /** Why the exchange was stopped (the timeout, the caller gone), kept until undici lets us abort. */
  private reason: Error | undefined;
  /** The wait for the answer to start, once the clock has started. */
  private wait: Wait | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly route: Route,
    private readonly retryOn: (status: number, rawHeaders: Buffer[]) => boolean,
    private readonly timeoutMs: number,
    private readonly resolve: (outcome: Outcome) => void,
    private readonly reject: (err: Error) => void,
  ) {
    // The caller went away: stop the upstream request too (before or during the answer).
    // (Every answer closes its response: the error is made only when it is still needed.)
    res.on('close', this.callerGone);
  }

  private readonly callerGone = () => {
    if (this.state !== 'done') this.stop(new Error('the caller went away'));
  };
  private readonly timedOut = () => this.stop(new UpstreamTimeout());

  startClock(): void {
    if (this.state !== 'waiting' || this.wait) return;
    this.wait = upstreamWaits.add(this.timeoutMs, this.timedOut);
  }

  private stop(reason: Error): void {
    if (this.state === 'done') return;
    this.reason ??= reason;
    this.abortUpstream?.(reason);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.reason) abort(this.reason);
  }

  /** The upload is all sent (undici calls it; not in its types): the clock starts for a streamed one. */
  onRequestSent(): void {
    this.startClock();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.wait) upstreamWaits.cancel(this.wait);
    if (this.retryOn(statusCode, rawHeaders)) {
      this.state = 'discarding'; // this answer is not the caller's; read to its end, the connection is kept
      return true;
    }
    const res = this.res;
    res.writeHead(statusCode, answerHeaders(rawHeaders, this.route));
    this.state = 'forwarding';
    // The head, and the body when it came in the same read (a small JSON answer), leave in
    // one write; server-sent events and other streams go out as they arrive all the same.
    res.cork();
    res.flushHeaders();
    process.nextTick(uncork, res);
    res.on('drain', resume);
    this.resolve('answered');
    return true;
  }

  /**
   * false pauses undici's parser (and so the upstream socket) until the caller has taken
   * what is written ('drain'). Not at the socket's 16 KiB mark, which every 64 KiB read
   * passes: the upstream would stop and start for every chunk, each time waiting for the
   * caller's process to be scheduled; up to STREAM_BUFFER waits for the caller per stream.
   */
  onData(chunk: Buffer): boolean {
    if (this.state !== 'forwarding') return true;
    this.res.write(chunk);
    return this.res.writableLength < STREAM_BUFFER;
  }

  onComplete(): void {
    const was = this.state;
    this.state = 'done';
    if (was === 'discarding') this.resolve('retry');
    else this.res.end();
  }

  onError(err: Error): void {
    if (this.wait) upstreamWaits.cancel(this.wait);
    const was = this.state;
    this.state = 'done';
    // The answer had started: cut it, as the upstream's own failure would.
    if (was === 'forwarding') return void this.res.destroy();
    const { account, origin } = this.route;
    this.reject(
      this.reason instanceof UpstreamTimeout
        ? E.upstreamTimeout(`the API of "${account}" at ${origin} did not answer within ${this.timeoutMs} ms`)
        : E.upstreamFailed(`could not reach the API of "${account}" at ${origin}: ${networkCodeOf(err) ?? 'connection failed'}`),
    );
  }
}

/** Every exchange's wait for its answer to start, on one timer. */
const upstreamWaits = new Deadlines();

/** What an answer may hold for a slow caller before the upstream is paused: the bound on a stream's memory. */
export const STREAM_BUFFER = 1024 * 1024;

function uncork(res: ServerResponse): void {
  res.uncork();
}

/** The system's name for a network failure (ECONNREFUSED, a TLS code, undici's own), never its text. */
function networkCodeOf(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (typeof e.code === 'string') return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

class UpstreamTimeout extends Error {}

/**
 * Any failure before the answer started: the wire error shape. A body not read yet is read
 * and discarded first (as far as 16 MiB), so the connection stays usable; a longer one, or
 * one already streaming upstream, is discarded after the answer while the connection closes
 * (keep-alive.ts), so a client still sending reads the answer instead of EPIPE.
 */
function failRequest(log: Logger, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  if (req.complete || req.readableFlowing) {
    answerFailure(log, req, res, err);
    return;
  }
  readIncoming(req).then(
    () => answerFailure(log, req, res, err),
    () => answerFailure(log, req, res, err),
  );
}

function answerFailure(log: Logger, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  const r = errorResponse(err, log, ROUTE_PATTERNS.proxy);
  if (!(err instanceof ApiError)) log.error('proxy failed', { error: (err as Error)?.message });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // PROXY_ERROR_HEADER tells the daemon's own refusals from whatever the upstream answers.
  const headers: Record<string, string | number> = { [PROXY_ERROR_HEADER]: r.body.error.code, ...r.headers };
  // A request body left unread would be parsed as the next request on a keep-alive
  // connection: close it after this answer, and let node discard the rest.
  if (!req.complete) {
    headers.connection = 'close';
    req.resume();
  }
  sendJson(res, r.status, r.body, headers);
}
