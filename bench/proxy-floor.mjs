// The reference for row 10's proxied GET: the least a proxy in node does, with nothing of
// tokend. node:http on a Unix socket; every request goes to the API through one undici
// Agent's dispatch() with the token added and the answer written straight into the
// response, as tokend's proxy lane does (src/daemon/http/proxy-lane.ts), without its checks,
// audit, token lookup, header filtering or timeout. What tokend costs per proxied request
// above this is tokend's; this much is node and undici.
//
// usage: node bench/proxy-floor.mjs SOCKET PORT   (the token in env BENCH_PROXY_TOKEN)
import http from 'node:http';
import { createRequire } from 'node:module';
import { listenOnSocket } from './lib/side-server.mjs';

const undici = createRequire(import.meta.url)('undici');
const [socket, port] = process.argv.slice(2);
const agent = new undici.Agent({ keepAliveTimeout: 30_000 });
const origin = `http://127.0.0.1:${port}`;
const auth = `Bearer ${process.env.BENCH_PROXY_TOKEN}`;
const PREFIX = '/v1/proxy/work';
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);

const uncork = (res) => res.uncork();

const server = http.createServer((req, res) => {
  agent.dispatch(
    {
      origin,
      path: `/api${req.url.slice(PREFIX.length)}`,
      method: req.method,
      headers: ['user-agent', req.headers['user-agent'] ?? '', 'authorization', auth],
      headersTimeout: 0,
      bodyTimeout: 0,
    },
    {
      onConnect() {},
      onHeaders(status, raw, resume) {
        const headers = [];
        for (let i = 0; i < raw.length; i += 2) {
          const k = raw[i].toString('latin1');
          if (!HOP.has(k.toLowerCase())) headers.push(k, raw[i + 1].toString('utf8'));
        }
        res.writeHead(status, headers);
        res.cork();
        res.flushHeaders();
        process.nextTick(uncork, res);
        res.on('drain', resume);
        return true;
      },
      onData: (chunk) => res.write(chunk),
      onComplete: () => res.end(),
      onError: () => res.destroy(),
    },
  );
});
listenOnSocket(server, socket);
server.once('listening', () => process.send?.({ ready: true }));
// A clean exit on SIGTERM, so a --cpu-prof run writes its profile (the bench's --profile).
process.on('SIGTERM', () => process.exit(0));
