// The hot-token baseline, the lean floor: a plain node:http server on a Unix socket that
// answers POST /v1/token {"account"} with the same JSON as tokend, from a Map: it reads the
// body, JSON.parse, one lookup, and writes the JSON (serialised once per account and second,
// as tokend does) with a content-type and a content-length and nothing else. No framework,
// no validation, no audit, no caller check. Run as its own process, like the daemon.
//
// usage: node bench/baseline-server.mjs SOCKET   (tokens as JSON in env BENCH_TOKENS:
//        [{account, access_token, token_type, expires_at (epoch ms), scope}])
import http from 'node:http';
import { listenOnSocket, tokenAnswer, tokensFromEnv } from './lib/side-server.mjs';

const socket = process.argv[2];
const tokens = tokensFromEnv();
/** account → [second, JSON]: expires_in changes once a second. */
const answers = new Map();
const answerOf = (t) => {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  const hit = answers.get(t.account);
  if (hit && hit[0] === second) return hit[1];
  const json = JSON.stringify(tokenAnswer(t, now));
  answers.set(t.account, [second, json]);
  return json;
};

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
    const body = answerOf(t);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
listenOnSocket(server, socket);
