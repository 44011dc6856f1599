/**
 * A preload for a daemon under test (NODE_OPTIONS=--require): for every request whose body
 * is over 1 MiB (an upload), one stderr line per event that can end its connection, so a
 * test that sees a client's EPIPE can show who closed the daemon's side and why: node's
 * HTTP server (clientError, its request timeouts), the daemon's code (the stack of a
 * socket's destroy()), or the peer. Lines start with `TRACE-UPLOAD `; no header, body or
 * token is printed (methods, paths under /v1/proxy/NAME, byte counts, error codes, stacks).
 */
'use strict';
const http = require('node:http');
const net = require('node:net');

const UPLOAD = Symbol('trace-uploads');
const t0 = Date.now();
const say = (event) => process.stderr.write(`TRACE-UPLOAD ${JSON.stringify({ ms: Date.now() - t0, ...event })}\n`);
const stack = () =>
  new Error().stack
    .split('\n')
    .slice(3, 11)
    .map((l) => l.trim())
    .join(' | ');

const destroy = net.Socket.prototype.destroy;
net.Socket.prototype.destroy = function (err) {
  if (this[UPLOAD] && !this.destroyed)
    say({ what: 'destroy', error: err ? err.code || err.message : null, read: this.bytesRead, stack: stack() });
  return destroy.call(this, err);
};

const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, ...args) {
  if (event === 'clientError' && args[1]?.[UPLOAD]) say({ what: 'clientError', error: args[0]?.code });
  if (event === 'request') {
    const [req, res] = args;
    if (Number(req.headers['content-length'] || 0) > 1024 * 1024 || req.headers['transfer-encoding'] !== undefined) {
      const socket = req.socket;
      socket[UPLOAD] = true;
      say({ what: 'request', method: req.method, path: (req.url || '').split('?')[0] });
      req.on('aborted', () => say({ what: 'request aborted', read: socket.bytesRead }));
      req.on('end', () => say({ what: 'request body ended', read: socket.bytesRead }));
      socket.on('error', (e) => say({ what: 'socket error', error: e.code || e.message, read: socket.bytesRead }));
      socket.on('close', () => say({ what: 'socket closed', read: socket.bytesRead, written: socket.bytesWritten }));
      const writeHead = res.writeHead;
      res.writeHead = function (status, ...rest) {
        say({ what: 'answer', status, bodyComplete: req.complete, stack: stack() });
        return writeHead.call(this, status, ...rest);
      };
    }
  }
  return emit.call(this, event, ...args);
};
