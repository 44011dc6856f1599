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
import { PassThrough, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { isAccountName } from '../../protocol/names.js';
import { PROXY_ERROR_HEADER, PROXY_PREFIX, ROUTE_PATTERNS } from '../../protocol/routes.js';
import { isLoopbackHost } from '../../protocol/rules.js';
import type { AuditLog } from '../audit.js';
import { callerOf } from '../caller/connection.js';
import type { Broker, CachedToken } from '../broker.js';
import type { ConfigStore } from '../config.js';
import type { Driver } from '../drivers/driver.js';
import { E, TokendError, unknownAccount } from '../errors.js';
import type { Logger } from '../log.js';
import { dispatcherFor } from '../outbound.js';
import type { DpopProofs } from '../dpop/proofs.js';
import { nonceChallenge, upstreamAuthorization } from '../dpop/proxy-proof.js';
import { ProxyPathError, resolveProxyUrl, rewriteLocation, splitProxyTarget } from '../proxy-path.js';
import { hasBody, readIncoming } from './raw-request.js';
import { errorResponse, sendJson } from './wire.js';

export interface ProxyDeps {
  config: Pick<ConfigStore, 'getAccount' | 'settings'>;
  broker: Pick<Broker, 'getToken' | 'reject'>;
  getDriver: (name: string) => Driver | undefined;
  audit: Pick<AuditLog, 'record'>;
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

/** The upstream's answer: its status and headers, and the body still streaming. */
type Upstream = Dispatcher.ResponseData;
type Body = { kept: Buffer | undefined; head: Buffer[]; streamRest: boolean };

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
  if (!cfg.api_base) {
    throw E.invalidRequest(`account "${name}" has no api_base to proxy to; set it with \`tokend set ${name} --api-base URL\``, {
      account: name,
    });
  }
  let url: URL;
  try {
    url = resolveProxyUrl(cfg.api_base, target.rest, target.query);
  } catch (err) {
    if (err instanceof ProxyPathError) throw E.invalidRequest(`refused: ${err.message}`, { account: name });
    throw err;
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw E.invalidRequest(`account "${name}": plain http is allowed only to loopback hosts; the api_base must be https`, {
      account: name,
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw E.invalidRequest(`account "${name}": the api_base must be an http(s) URL`);

  const body = await readBody(req);
  const driver = deps.getDriver(cfg.driver);
  const stale = new Set([401, ...(driver?.staleStatuses ?? [])]);
  deps.audit.record(name, req.headers['user-agent'], 'proxy', callerOf(req));

  let token = await deps.broker.getToken({ account: name });
  const dispatcher = dispatcherFor(cfg);
  let upstream = await send(deps, dispatcher, req, res, url, token, body);
  if (nonceChallenge(deps.dpop, name, url, upstream) && body.kept !== undefined) {
    await upstream.body.dump(); // RFC 9449 §9: the same token again, with the nonce the API gave
    upstream = await send(deps, dispatcher, req, res, url, token, body);
    nonceChallenge(deps.dpop, name, url, upstream);
  }
  if (stale.has(upstream.statusCode)) {
    // The token was refused: whoever asks next gets a fresh one (rule 6, like git's erase).
    deps.broker.reject(name, token.access_token);
    if (body.kept !== undefined) {
      await upstream.body.dump(); // this answer is not the caller's: discard it, keep the connection
      token = await deps.broker.getToken({ account: name });
      upstream = await send(deps, dispatcher, req, res, url, token, body);
      if (stale.has(upstream.statusCode)) deps.broker.reject(name, token.access_token);
    }
  }
  respond(res, upstream, url, cfg.api_base, name);
}

/**
 * Read the body up to RETRY_BODY_LIMIT: a body that ends within it is kept (a retry can
 * send it again); a longer one is streamed to the first upstream request only.
 */
function readBody(req: IncomingMessage): Promise<Body> {
  if (!hasBody(req)) return Promise.resolve({ kept: Buffer.alloc(0), head: [], streamRest: false });
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

/**
 * One upstream request, through the account's dispatcher (outbound.ts: the environment's
 * proxy, the account's CA); resolves once the answer's headers are in, rejects as a wire error.
 */
async function send(
  deps: ProxyDeps,
  dispatcher: Dispatcher,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  token: CachedToken,
  body: Body,
): Promise<Upstream> {
  const headers: string[] = [];
  const connectionNamed = new Set(
    String(req.headers.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter(Boolean),
  );
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i];
    const lower = k.toLowerCase();
    if (HOP_BY_HOP.has(lower) || NEVER_UPSTREAM.has(lower) || connectionNamed.has(lower) || lower.startsWith('x-tokend-')) continue;
    if (lower === 'content-length' && body.kept !== undefined) continue; // set below, exactly
    headers.push(k, req.rawHeaders[i + 1]);
  }
  const auth = upstreamAuthorization(deps.dpop, accountOf(req), req.method ?? 'GET', url, token);
  headers.push(...(Array.isArray(auth) ? auth : await auth));
  if (body.kept !== undefined && body.kept.length > 0) headers.push('Content-Length', String(body.kept.length));

  // Once the request is sent the upstream has http_timeout_ms to start answering; an
  // upload takes as long as it takes before that, and so does the answer's body after
  // it (a download, a stream of server-sent events).
  const timeoutMs = deps.config.settings.http_timeout_ms;
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const sent = () => (timer = setTimeout(() => abort.abort(new UpstreamTimeout()), timeoutMs));
  // The caller went away before the answer came: stop the upstream request too.
  const callerGone = () => abort.abort(new Error('the caller went away'));
  res.once('close', callerGone);
  let upload: Buffer | Readable | undefined;
  if (body.kept !== undefined) {
    upload = body.kept.length > 0 ? body.kept : undefined;
    sent();
  } else {
    const pass = new PassThrough();
    for (const chunk of body.head) pass.write(chunk);
    req.pipe(pass);
    req.resume();
    pass.once('end', sent);
    // The caller's answer is over (the API answered before reading it all): stop the upload.
    res.once('close', () => {
      if (!pass.readableEnded) pass.destroy();
    });
    upload = pass;
  }
  try {
    return await dispatcher.request({
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
      headers,
      body: upload,
      signal: abort.signal,
      headersTimeout: 0, // ours, from the end of the upload (above)
      bodyTimeout: 0, // a stream may be quiet for a long time
    });
  } catch (err) {
    if (abort.signal.reason instanceof UpstreamTimeout) {
      throw E.upstreamTimeout(`the API of "${accountOf(req)}" at ${url.origin} did not answer within ${timeoutMs} ms`);
    }
    throw E.upstreamFailed(`could not reach the API of "${accountOf(req)}" at ${url.origin}: ${networkCodeOf(err) ?? 'connection failed'}`);
  } finally {
    clearTimeout(timer);
    res.off('close', callerGone);
  }
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

function accountOf(req: IncomingMessage): string {
  return splitProxyTarget(req.url ?? '')?.name ?? '?';
}

/** Copy the upstream answer to the caller: status, end-to-end headers, and the body as it streams. */
function respond(res: ServerResponse, up: Upstream, url: URL, apiBase: string, account: string): void {
  const connectionNamed = new Set(
    String(up.headers.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase()),
  );
  const headers: string[] = [];
  for (const [k, value] of Object.entries(up.headers)) {
    if (value === undefined) continue;
    const lower = k.toLowerCase();
    // x-tokend-* belong to the daemon: an upstream must not be able to fake a daemon error.
    if (HOP_BY_HOP.has(lower) || connectionNamed.has(lower) || lower.startsWith('x-tokend-')) continue;
    for (const v of Array.isArray(value) ? value : [value])
      headers.push(k, lower === 'location' ? rewriteLocation(v, url, apiBase, account) : v);
  }
  res.writeHead(up.statusCode, headers);
  // Server-sent events and other streams: every chunk goes out as it arrives.
  res.flushHeaders();
  up.body.pipe(res);
  up.body.on('error', () => res.destroy());
  res.on('close', () => {
    if (!up.body.readableEnded) up.body.destroy();
  });
}

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
  if (!(err instanceof TokendError)) log.error('proxy failed', { error: (err as Error)?.message });
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
