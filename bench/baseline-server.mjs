// The hot-token baseline: a plain node:http server on a Unix socket that answers
// POST /v1/token {"account"} with the same JSON as tokend, from a Map. No framework, no
// validation beyond JSON.parse, no audit. Run as its own process, like the daemon.
//
// usage: node bench/baseline-server.mjs SOCKET   (tokens as JSON in env BENCH_TOKENS:
//        [{account, access_token, token_type, expires_at (epoch ms), scope}])
import http from 'node:http';
import { listenOnSocket, tokenAnswer, tokensFromEnv } from './lib/side-server.mjs';

const socket = process.argv[2];
const tokens = tokensFromEnv();

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
    const body = JSON.stringify(tokenAnswer(t));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
listenOnSocket(server, socket);
