/**
 * Keep-alive and request bodies nobody reads. A route may answer without reading the
 * body (a GET or DELETE that carries one, an unknown route, an early refusal); the bytes
 * still on the wire then either get drained or, when they keep coming, the connection is
 * cut (the router gives up draining after a moment). A keep-alive client that was not told
 * would send its next request on a dead connection and see ECONNRESET. So: whenever an
 * answer starts before its request has fully arrived, it says `Connection: close`; the
 * client opens a new connection for the next request, and nothing is lost.
 *
 * And the connection lingers: node closes a `Connection: close` connection as soon as the
 * answer is written, and a client still sending its body then fails with EPIPE (node's own
 * client reports that error even after the answer came), so the answer is never read: a
 * 256 MiB upload to an unknown account, or one the API refused early, said "write EPIPE"
 * instead of what went wrong. Like nginx's lingering close, the daemon ends its side once
 * the answer is written, reads and discards what the client still sends until the body
 * ends, and only then closes; at most LINGER_MS, or LINGER_IDLE_MS without a byte.
 */
import { ServerResponse, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { hasBody } from './raw-request.js';

/** Marks a connection whose last answer said `Connection: close`. */
const CLOSING = Symbol('tokend.closing');
type ClosingSocket = Socket & { [CLOSING]?: true };

/** nginx's `lingering_time` and `lingering_timeout` defaults. */
export const LINGER_MS = 30_000;
export const LINGER_IDLE_MS = 5_000;

/**
 * The rule, for every answer the daemon writes (the servers are created with it as their
 * `ServerResponse`, so no route and no lane has to remember it): an answer that starts
 * while its request's body is still arriving says `Connection: close` and lingers.
 * Node's implicit headers (`res.end()` without `writeHead`) come through here too.
 */
export class ClosingResponse<Request extends IncomingMessage = IncomingMessage> extends ServerResponse<Request> {
  // Named parameters, not a rest parameter spread into super's: an array per answer otherwise.
  // Node's own writeHead reads a missing `reason` or `headers` as undefined the same way.
  override writeHead(statusCode: number, reason?: unknown, headers?: unknown): this {
    const req = this.req;
    if (!req.complete && !this.headersSent && hasBody(req)) {
      this.setHeader('connection', 'close');
      if (this.socket) {
        (this.socket as ClosingSocket)[CLOSING] = true;
        lingerOnClose(req, this.socket);
      }
    }
    return super.writeHead(statusCode, reason as string, headers as OutgoingHttpHeaders);
  }
}

/**
 * A request that came on a connection already told `Connection: close`: a client pipelined
 * it behind a body the daemon was still discarding. It is never served (a client sends it
 * again on a new connection, so serving it could do it twice); the connection closes once
 * the body before it has ended.
 */
export function arrivedAfterClose(req: IncomingMessage): boolean {
  return (req.socket as ClosingSocket)[CLOSING] === true;
}

/**
 * Replace how node closes this connection after its last answer (`socket.destroySoon`, called
 * once the answer is written): end our side, discard the rest of the body, then close.
 */
function lingerOnClose(req: IncomingMessage, socket: Socket): void {
  let armed = false;
  socket.destroySoon = function lingerThenClose(this: Socket) {
    if (armed) return;
    armed = true;
    if (socket.writable) socket.end();
    // Unref'd: a lingering client never holds up the daemon's exit (the socket is closed with it).
    const total = setTimeout(close, LINGER_MS).unref();
    const idle = setTimeout(close, LINGER_IDLE_MS).unref();
    const stillSending = () => idle.refresh();
    function close() {
      clearTimeout(total);
      clearTimeout(idle);
      req.off('data', stillSending);
      socket.destroy();
    }
    // Whoever read the body (the proxy's upload) is done with it: nothing of it is used now.
    // (The socket's own 'data' is no signal: node's parser reads it below JavaScript.)
    req.unpipe();
    req.on('data', stillSending);
    req.resume();
    socket.once('close', close);
    // The body is all in: close once our answer has left (destroy would drop what is unsent).
    const bodyDone = () => (socket.writableFinished ? close() : socket.once('finish', close));
    if (req.complete) bodyDone();
    else req.once('end', bodyDone);
    return this;
  };
}
