import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { CLIENT_HEADER, MAX_BODY_BYTES } from '../../protocol/routes.js';
import type { Caller } from '../../protocol/caller.js';
import { callerOf } from '../caller/connection.js';
import type { CallerIdentity } from '../caller/proc.js';
import { E } from '../errors.js';

/**
 * Bodies and headers straight from node's IncomingMessage. Through @hono/node-server,
 * touching `c.req.raw.body` or `c.req.header()` builds a web Request and Headers per
 * request, about a third of the daemon's CPU on the token hot path (the hot-token bench).
 * Under `app.request()` (tests without a socket) there is no IncomingMessage and the
 * web Request is used.
 */
function incomingOf(c: Context): IncomingMessage | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
}

const tooLarge = () => E.payloadTooLarge(`the request body is larger than ${MAX_BODY_BYTES} bytes`);

/**
 * A too-large body is read and discarded before the 413 as far as this, so the connection
 * stays usable; past it the 413 is answered at once and the rest is discarded while the
 * connection closes (keep-alive.ts, lingering close).
 */
const DRAIN_LIMIT = 16 * 1024 * 1024;

/** Does the request carry a body (chunked, or a content-length above 0)? */
export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** A body read before routing (see `readBeforeRouting`): the bytes, or why they were refused. */
const READ_AHEAD = Symbol('tokend.readAhead');
type ReadAhead = Promise<Buffer>;

/**
 * Read a request's body before the router sees the request, so a route that never reads
 * it (a GET or DELETE that carries one, an unknown route) cannot leave bytes on a
 * keep-alive connection, and the answer never has to cut the connection (which a client
 * still sending would see as EPIPE). Routes then get the same bytes from `readIncoming`.
 * Only requests that carry a body pay for it; their bodies are small JSON.
 */
export function readBeforeRouting(req: IncomingMessage): Promise<void> {
  if (!hasBody(req)) return Promise.resolve();
  const ahead = readIncoming(req);
  ahead.catch(() => undefined); // the route that reads it gets the error; one that does not, does not care
  (req as IncomingMessage & { [READ_AHEAD]?: ReadAhead })[READ_AHEAD] = ahead;
  return ahead.then(
    () => undefined,
    () => undefined,
  );
}

/** Read a node request's body; more than MAX_BODY_BYTES is read and discarded, then refused (413). */
export function readIncoming(req: IncomingMessage): Promise<Buffer> {
  const ahead = (req as IncomingMessage & { [READ_AHEAD]?: ReadAhead })[READ_AHEAD];
  if (ahead) return ahead;
  return new Promise((resolve, reject) => readIncomingThen(req, resolve, reject));
}

/**
 * `readIncoming` without a promise: `done` with the body, or `fail` (once, whichever comes
 * first), called from the request's own events. The token lane answers from there without a
 * promise hop (rule 2's hot path).
 */
export function readIncomingThen(req: IncomingMessage, done: (body: Buffer) => void, fail: (err: unknown) => void): void {
  const ahead = (req as IncomingMessage & { [READ_AHEAD]?: ReadAhead })[READ_AHEAD];
  if (ahead) {
    ahead.then(done, fail);
    return;
  }
  const declared = Number(req.headers['content-length']);
  if (declared > DRAIN_LIMIT) {
    fail(tooLarge());
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = declared > MAX_BODY_BYTES;
  let settled = false;
  const refuse = (err: unknown) => {
    if (settled) return;
    settled = true;
    fail(err);
  };
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) tooBig = true;
    if (!tooBig) {
      chunks.push(chunk);
      return;
    }
    chunks.length = 0;
    if (size > DRAIN_LIMIT) refuse(tooLarge()); // the answer goes now; the rest is discarded
  });
  req.on('end', () => {
    if (tooBig) {
      refuse(tooLarge());
      return;
    }
    if (settled) return;
    settled = true;
    done(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
  });
  req.on('error', refuse);
}

/** The request body, at most MAX_BODY_BYTES. */
export async function readBody(c: Context): Promise<Buffer> {
  const incoming = incomingOf(c);
  if (incoming) return readIncoming(incoming);
  const buf = Buffer.from(await c.req.arrayBuffer());
  if (buf.length > MAX_BODY_BYTES) throw tooLarge();
  return buf;
}

/** One request header (lower-case name). */
export function header(c: Context, name: string): string | undefined {
  const incoming = incomingOf(c);
  if (!incoming) return c.req.header(name);
  const v = incoming.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The verified caller of the request's connection (caller/connection.ts); undefined under `app.request()` or without the addon. */
export function callerOfContext(c: Context): CallerIdentity | undefined {
  return callerOf(incomingOf(c));
}

/** Who asks, for an audit row: the User-Agent it declared and the caller the daemon verified. */
export function who(c: Context): { caller: string | undefined; by: Caller | undefined } {
  return { caller: header(c, CLIENT_HEADER), by: callerOfContext(c)?.caller };
}
