// 5. Forced refresh: POST /v1/accounts/rot/refresh through the rotating IdP, one at a time,
// against one bare refresh_token request with fetch to the same token endpoint (chaining the
// rotated refresh tokens). Publishes figures.bareRefreshMs for row 6.
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../lib/processes.mjs';
import { median, nowMs, quantile } from '../lib/stats.mjs';
import { fmtMs, row } from '../lib/table.mjs';
import { bareRefresh, dist, randomGrant } from '../context.mjs';

/** The two durable writes every refresh makes (rule 5: the in-flight mark, then the commit), on a scratch store. */
async function durablePairTimer() {
  const { store: S } = await dist();
  const scratch = S.openStore({ file: path.join(tempDir('tkb-r-'), 'tokend.db'), key: randomBytes(32) });
  let gen = (await scratch.replaceGrant('x', randomGrant({ expiresAt: Date.now() + 3_600_000, scope: 'api' }))).generation;
  return {
    async time() {
      const s = nowMs();
      await scratch.markInFlight('x', Date.now());
      gen = (await scratch.commitRefresh('x', gen, randomGrant({ expiresAt: Date.now() + 3_600_000, scope: 'api' }))).generation;
      return nowMs() - s;
    },
    close: () => scratch.close(),
  };
}

export default {
  id: 5,
  title: 'forced refresh',
  async run(ctx) {
    const idp = await ctx.idp();
    const { daemon } = await ctx.main();
    const runs = ctx.rounds.refreshRuns;
    let rt = (await idp.issue()).refresh_token;
    const timed = async (fn) => {
      const s = nowMs();
      await fn();
      return nowMs() - s;
    };
    const calls = {
      tokend: () =>
        timed(async () => {
          const r = await daemon.request('POST', '/v1/accounts/rot/refresh');
          if (r.status !== 200) throw new Error(`forced refresh answered ${r.status}: ${r.text}`);
        }),
      bare: () => timed(async () => (rt = await bareRefresh(idp.issuer, rt))),
    };
    for (let i = 0; i < 3; i++) for (const call of Object.values(calls)) await call();
    // Timed on the same disk between the calls, so the references can say how much of
    // tokend's extra time is fsync.
    const durable = await durablePairTimer();
    const t = { tokend: [], bare: [], idpTokend: [], idpBare: [], durablePair: [], socketRoundTrip: [] };
    let errors = 0;
    let replays = 0;
    // After each call, ask the IdP how long it spent on that one request (server side).
    const one = async (who) => {
      await idp.reset();
      t[who].push(await calls[who]());
      const st = await idp.stats();
      if (st.tokenRequests !== 1) throw new Error(`${who}: ${st.tokenRequests} token requests for one refresh`);
      errors += st.refreshErrors;
      replays += st.replays;
      t[who === 'tokend' ? 'idpTokend' : 'idpBare'].push(st.tokenMs[0]);
    };
    try {
      for (let i = 0; i < runs; i++) {
        for (const who of i % 2 === 0 ? ['tokend', 'bare'] : ['bare', 'tokend']) await one(who);
        t.durablePair.push(await durable.time());
        // The cost of asking the daemon at all, with the same client: a cached token.
        t.socketRoundTrip.push(await timed(() => daemon.request('POST', '/v1/token', { account: 'work' })));
      }
    } finally {
      durable.close();
    }
    if (errors || replays) throw new Error(`the IdP saw ${errors} refresh errors and ${replays} replays`);
    ctx.figures.bareRefreshMs = median(t.bare);
    const scenario = '5. forced refresh (`POST /v1/accounts/:name/refresh`), rotating IdP';
    return {
      rows: [
        row({
          scenario,
          measure: `latency, median of ${runs}`,
          t: median(t.tokend),
          b: median(t.bare),
          unit: 'ms',
          kind: 'max',
          limit: 1.5,
          baselineLabel: 'one bare refresh request',
        }),
        row({ scenario, measure: 'latency, p90', t: quantile(t.tokend, 0.9), b: quantile(t.bare, 0.9), unit: 'ms' }),
      ],
      references: [
        `Forced refresh: the IdP itself spent ${fmtMs(median(t.idpTokend))} (median, server side) on tokend's refresh requests and ${fmtMs(median(t.idpBare))} on the bare ones; ` +
          `so tokend adds ${fmtMs(median(t.tokend) - median(t.idpTokend))} around the IdP call, a bare fetch ${fmtMs(median(t.bare) - median(t.idpBare))}. ` +
          `tokend sends its token request with node:http on a kept-alive agent (exchangeFetch, src/daemon/outbound.ts); the bare refresh keeps node's fetch, as a hand-written app would. ` +
          `The two writes of a refresh (markInFlight under synchronous=NORMAL, commitRefresh under FULL) took ${fmtMs(median(t.durablePair))} (median; p90 ${fmtMs(quantile(t.durablePair, 0.9))}) on a scratch store on the same disk; asking the daemon for a cached token with the same client (new connection each time) took ${fmtMs(median(t.socketRoundTrip))}.`,
      ],
      raw: { refresh: t },
    };
  },

  /** 40 forced refreshes, one at a time, in a daemon under --cpu-prof. */
  async profile(ctx, profiler) {
    const main = await ctx.main();
    await main.daemon.stop(); // the profiled daemon takes over its home
    await profiler.run('refresh', 'daemon: 40 forced refreshes (one at a time)', async (cpuArgs) => {
      const d = await ctx.startDaemon(main.home, { nodeArgs: cpuArgs(200) });
      for (let i = 0; i < 40; i++) {
        const r = await d.request('POST', '/v1/accounts/rot/refresh');
        if (r.status !== 200) throw new Error(`forced refresh answered ${r.status}: ${r.text}`);
      }
      await d.stop();
    });
  },
};
