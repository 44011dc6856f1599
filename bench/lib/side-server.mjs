// What the side servers (baseline-server.mjs, hono-server.mjs) share: the tokens they serve,
// the answer tokend gives for one, and how they listen and stop.
import fs from 'node:fs';

/** account → token, from env BENCH_TOKENS: [{account, access_token, token_type, expires_at (epoch ms), scope}]. */
export const tokensFromEnv = () => new Map(JSON.parse(process.env.BENCH_TOKENS ?? '[]').map((t) => [t.account, t]));

/** The body of tokend's POST /v1/token answer for `t`. */
export const tokenAnswer = (t, now = Date.now()) => ({
  account: t.account,
  access_token: t.access_token,
  token_type: t.token_type,
  expires_at: new Date(t.expires_at).toISOString(),
  expires_in: Math.max(0, Math.floor((t.expires_at - now) / 1000)),
  scope: t.scope,
});

/** Listen on the Unix socket `socket` (a stale file removed first), exit 0 on SIGTERM or SIGINT. */
export function listenOnSocket(server, socket) {
  fs.rmSync(socket, { force: true });
  server.listen({ path: socket, backlog: 4096 });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
