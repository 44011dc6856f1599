// The upstream API of the proxy rows: a plain node:http server on 127.0.0.1 that accepts
// one bearer token (as a resource server would, without the introspection round trip that
// would dominate), answering GET /api/item with 1 KiB of JSON, streaming N bytes on
// GET /api/download?bytes=N, and counting what PUT /api/upload sends. Run as its own process.
//
// The download is the tests' own (test/support/api-server.ts), so both stream the same way.
//
// usage: node bench/api-server.mjs PORT TOKEN
import http from 'node:http';
import { supportModule } from './lib/support.mjs';

const { sendBytes } = await supportModule('api-server');
const [port, token] = [Number(process.argv[2]), process.argv[3]];
const item = JSON.stringify({ id: 1, name: 'x'.repeat(980) });

http
  .createServer((req, res) => {
    // '*': any bearer token (the soak refreshes the account's token as it runs).
    // '*' also takes a DPoP token with its proof (the DPoP rows: the proof's cost is the daemon's, not checked here).
    const anyToken =
      req.headers.authorization?.startsWith('Bearer ') || (req.headers.authorization?.startsWith('DPoP ') && req.headers.dpop);
    if (token === '*' ? !anyToken : req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401).end();
      return;
    }
    const url = new URL(req.url, 'http://api');
    if (url.pathname === '/api/item') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(item) });
      res.end(item);
    } else if (url.pathname === '/api/download') {
      sendBytes(res, Number(url.searchParams.get('bytes')));
    } else if (url.pathname === '/api/upload') {
      let bytes = 0;
      req.on('data', (c) => (bytes += c.length));
      req.on('end', () => res.end(JSON.stringify({ bytes })));
    } else {
      res.writeHead(404).end();
    }
  })
  .listen(port, '127.0.0.1', () => process.send?.({ ready: true }));
process.on('SIGTERM', () => process.exit(0));
