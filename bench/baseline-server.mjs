// The hot-token baseline: a plain node:http server on a Unix socket that answers
// POST /v1/token {"account"} with the same JSON as tokend, from a Map. No framework, no
// validation beyond JSON.parse, no audit. Run as its own process, like the daemon.
//
// usage: node bench/baseline-server.mjs SOCKET   (tokens as JSON in env BENCH_TOKENS:
//        [{account, access_token, token_type, expires_at (epoch ms), scope}])
import fs from 'node:fs';
import http from 'node:http';

const socket = process.argv[2];
const tokens = new Map(JSON.parse(process.env.BENCH_TOKENS ?? '[]').map((t) => [t.account, t]));

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/v1/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', pid: process.pid }));
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let account;
    try {
      account = JSON.parse(Buffer.concat(chunks).toString('utf8')).account;
    } catch {
      /* falls through to 404 */
    }
    const t = tokens.get(account);
    if (req.method !== 'POST' || req.url !== '/v1/token' || !t) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"not_found","message":"no such account"}}');
      return;
    }
    const now = Date.now();
    const body = JSON.stringify({
      account: t.account,
      access_token: t.access_token,
      token_type: t.token_type,
      expires_at: new Date(t.expires_at).toISOString(),
      expires_in: Math.max(0, Math.floor((t.expires_at - now) / 1000)),
      scope: t.scope,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
fs.rmSync(socket, { force: true });
server.listen({ path: socket, backlog: 4096 });
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
