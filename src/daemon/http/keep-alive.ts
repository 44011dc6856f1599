/**
 * Keep-alive and request bodies nobody reads. A route may answer without reading the
 * body (a GET or DELETE that carries one, an unknown route, an early refusal); the bytes
 * still on the wire then either get drained or, when they keep coming, the connection is
 * cut (the router gives up draining after a moment). A keep-alive client that was not told
 * would send its next request on a dead connection and see ECONNRESET. So: whenever an
 * answer starts before its request has fully arrived, it says `Connection: close`; the
 * client opens a new connection for the next request, and nothing is lost.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Arm the rule for one request; cheap enough for every request (a body is rare on the hot path). */
export function closeIfBodyUnread(req: IncomingMessage, res: ServerResponse): void {
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  if (!hasBody) return;
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    if (!req.complete && !res.headersSent) res.setHeader('connection', 'close');
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as typeof res.writeHead;
}
