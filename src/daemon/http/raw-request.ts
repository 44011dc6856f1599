import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { MAX_BODY_BYTES } from '../../protocol/routes.js';
import { E } from '../errors.js';

/**
 * Bodies and headers straight from node's IncomingMessage. Through @hono/node-server,
 * touching `c.req.raw.body` or `c.req.header()` builds a web Request and Headers per
 * request, about a third of the daemon's CPU on the token hot path (bench/, row 1).
 * Under `app.request()` (tests without a socket) there is no IncomingMessage and the
 * web Request is used.
 */
function incomingOf(c: Context): IncomingMessage | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
}

const tooLarge = () => E.payloadTooLarge(`the request body is larger than ${MAX_BODY_BYTES} bytes`);

/** Read a node request's body, refusing more than MAX_BODY_BYTES (413) before reading it when it says its length. */
export function readIncoming(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners('data');
        req.resume(); // drain the rest; the 413 goes out on the same connection
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
  });
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
