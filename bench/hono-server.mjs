// Reference servers for the hot-token rows: the same Map answer as baseline-server.mjs, but
// through tokend's HTTP stack, Hono on @hono/node-server, and nothing of tokend. They show
// what the framework alone costs, so the notes can tell framework overhead from tokend's.
//
// usage: node bench/hono-server.mjs SOCKET MODE   (tokens in env BENCH_TOKENS, as baseline-server.mjs)
//   MODE text:     the body through c.req.text(), as tokend's readJson does (this makes
//                  @hono/node-server build a full web Request with a ReadableStream body)
//   MODE incoming: the body read from the node IncomingMessage (c.env.incoming)
import { Hono } from 'hono';
import { createAdaptorServer } from '@hono/node-server';
import { listenOnSocket, tokenAnswer, tokensFromEnv } from './lib/side-server.mjs';

const [socket, mode = 'text'] = process.argv.slice(2);
const tokens = tokensFromEnv();

const readIncoming = (incoming) =>
  new Promise((resolve, reject) => {
    const chunks = [];
    incoming.on('data', (c) => chunks.push(c));
    incoming.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    incoming.on('error', reject);
  });

const app = new Hono();
app.get('/v1/health', (c) => c.json({ status: 'ok', pid: process.pid }));
app.post('/v1/token', async (c) => {
  const text = mode === 'incoming' ? await readIncoming(c.env.incoming) : await c.req.text();
  const t = tokens.get(JSON.parse(text).account);
  if (!t) return c.json({ error: { code: 'not_found', message: 'no such account' } }, 404);
  return c.json(tokenAnswer(t));
});
const server = createAdaptorServer({ fetch: app.fetch });
listenOnSocket(server, socket);
