// The bench's OpenID Provider: the tests' IdP (test/support/idp.ts: npm oidc-provider,
// refresh-token rotation on) in a process of its own, so the provider's CPU time never
// lands in the bench process that times the requests. bench/context.mjs starts it and
// drives it over IPC:
//   → {id, cmd: 'issue'}   ← {id, ok, tokens}   a fresh grant for client `conf`: refresh_token, access_token, …
//   → {id, cmd: 'stats'}   ← {id, ok, stats}    counters since the last reset
//   → {id, cmd: 'reset'}   ← {id, ok}
// It announces {ready: true, issuer} once listening. The counters are the test IdP's (from
// the provider's own events); `tokenMs` is the server-side time of each outside POST /token.
import { supportModule } from './lib/support.mjs';

const { startIdp, DEFAULT_SCOPE } = await supportModule('idp');
const idp = await startIdp({
  accessTokenTtl: Number(process.env.BENCH_IDP_AT_TTL ?? 3600),
  refreshTokenTtl: 24 * 3600, // outlives any bench run
});

const commands = {
  // No resource indicator (RFC 8707): a plain grant, as most providers hand out.
  issue: async () => ({ tokens: await idp.issueRefreshToken('conf', DEFAULT_SCOPE, { resource: null }) }),
  stats: async () => ({
    stats: {
      tokenRequests: idp.stats.tokenRequests,
      refreshes: idp.stats.refreshes,
      refreshErrors: idp.stats.refreshErrors.length,
      replays: idp.stats.replays,
      tokenMs: idp.tokenRequestMs,
    },
  }),
  reset: async () => {
    idp.resetStats();
    return {};
  },
};

process.on('message', async (m) => {
  try {
    if (!Object.hasOwn(commands, m.cmd)) throw new Error(`unknown command ${m.cmd}`);
    process.send({ id: m.id, ok: true, ...(await commands[m.cmd]()) });
  } catch (err) {
    process.send({ id: m.id, ok: false, error: String(err?.stack ?? err) });
  }
});
const quit = () => idp.close().then(() => process.exit(0));
process.on('disconnect', quit);
process.on('SIGTERM', quit);
process.send({ ready: true, issuer: idp.issuer });
