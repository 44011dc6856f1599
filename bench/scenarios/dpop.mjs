// 15. DPoP (RFC 9449, docs/dpop.md): a proxied GET of 1 KiB of JSON at 16 connections for a
// DPoP account (Authorization: DPoP and a fresh proof signed per request) against the same GET
// for a Bearer account, in the same run against the same API; and a proof from the oracle
// (POST /v1/dpop/proof), timed inside the daemon (its Server-Timing header).
import path from 'node:path';
import { BENCH, cpuMsOf, freePort, mainThreadCpuMsOf, spawnTracked, stopChild } from '../lib/processes.mjs';
import { median } from '../lib/stats.mjs';
import { row } from '../lib/table.mjs';
import { accountConfig, CLIENT_SECRET } from '../context.mjs';

/** The two accounts of the row, both client credentials against `api_base`: one Bearer, one DPoP (its token fetched). */
async function putAccounts(daemon, issuer, api_base) {
  for (const [name, dpop] of [
    ['plain-cc', false],
    ['dpop-cc', true],
  ]) {
    const put = await daemon.request('PUT', `/v1/accounts/${name}`, {
      ...accountConfig(issuer, { flow: 'client-credentials', api_base, ...(dpop ? { dpop: true } : {}) }),
      client_secret: CLIENT_SECRET,
    });
    if (put.status !== 201 && put.status !== 200) throw new Error(`PUT /v1/accounts/${name} answered ${put.status}: ${put.text}`);
  }
  const tok = await daemon.request('POST', '/v1/token', { account: 'dpop-cc', min_ttl: 600 });
  if (tok.json?.token_type !== 'DPoP') throw new Error(`the DPoP account got ${tok.json?.token_type ?? tok.text}`);
}

/** The upstream API (bench/api-server.mjs), taking any Bearer token and any DPoP token with a proof. */
async function startApi(port) {
  const api = spawnTracked(process.execPath, [path.join(BENCH, 'api-server.mjs'), String(port), '*'], {
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  await new Promise((resolve) => api.once('message', resolve));
  return api;
}

export default {
  id: 15,
  title: 'DPoP',
  async run(ctx) {
    const { daemon } = await ctx.main();
    const { issuer } = await ctx.idp();
    const { loadRounds, warmupMs, durationMs } = ctx.rounds;
    const port = await freePort();
    const api_base = `http://127.0.0.1:${port}/api`;
    await putAccounts(daemon, issuer, api_base);
    const api = await startApi(port);
    try {
      const runs = { dpop: [], bearer: [] };
      for (let r = 0; r < loadRounds; r++) {
        for (const who of r % 2 ? ['bearer', 'dpop'] : ['dpop', 'bearer']) {
          const account = who === 'dpop' ? 'dpop-cc' : 'plain-cc';
          const cpu0 = cpuMsOf(daemon.pid);
          const main0 = mainThreadCpuMsOf(daemon.pid);
          const out = await ctx.runLoad({
            socket: daemon.socket,
            method: 'GET',
            path: `/v1/proxy/${account}/item`,
            mode: 'duration',
            connections: 16,
            warmupMs,
            durationMs,
          });
          if (out.ok !== out.requests || out.errors)
            throw new Error(
              `${who}: ${out.requests - out.ok} non-200 answers, ${out.errors} socket errors (${JSON.stringify(out.statuses)})`,
            );
          // The daemon's CPU time per request over the whole round (warm-up included): steadier
          // than throughput on a loaded machine.
          // The main thread's alone: the event loop every request waits for (proofs signed ahead
          // on the proof pool's worker thread count in the process's figure, not in this one).
          runs[who].push({
            ...out,
            daemonUs: ((cpuMsOf(daemon.pid) - cpu0) * 1000) / out.total,
            mainUs: ((mainThreadCpuMsOf(daemon.pid) - main0) * 1000) / out.total,
          });
        }
      }
      const m = (who, k) => median(runs[who].map((o) => o[k]));
      const scenario = '15. proxied GET with DPoP, 1 KiB JSON, 16 conn';
      // The oracle, one request at a time: the daemon's own time from the token to the signed proof.
      const inside = [];
      for (let i = 0; i < 500; i++) {
        const r = await daemon.request('POST', '/v1/dpop/proof', { account: 'dpop-cc', htm: 'GET', htu: `${api_base}/item?i=${i}` });
        if (r.status !== 200) throw new Error(`POST /v1/dpop/proof answered ${r.status}: ${r.text}`);
        inside.push(Number(/dur=([\d.]+)/.exec(String(r.headers['server-timing']))?.[1]));
      }
      const rows = [
        row({
          scenario,
          measure: 'throughput',
          t: m('dpop', 'rps'),
          b: m('bearer', 'rps'),
          unit: 'rps',
          kind: 'min',
          limit: 1 / 1.15,
          baselineLabel: 'the same GET for a Bearer account',
        }),
        row({ scenario, measure: 'p50 latency', t: m('dpop', 'p50'), b: m('bearer', 'p50'), unit: 'ms', kind: 'max', limit: 1.15 }),
        row({ scenario, measure: 'p99 latency', t: m('dpop', 'p99'), b: m('bearer', 'p99'), unit: 'ms' }),
        row({ scenario, measure: 'daemon CPU a request', t: m('dpop', 'daemonUs'), b: m('bearer', 'daemonUs'), unit: 'us' }),
        row({ scenario, measure: 'daemon main thread CPU a request', t: m('dpop', 'mainUs'), b: m('bearer', 'mainUs'), unit: 'us' }),
        row({
          scenario: '15. a DPoP proof from the oracle, inside the daemon',
          measure: 'median',
          t: median(inside),
          unit: 'ms',
          kind: 'abs',
          limit: 0.2,
        }),
      ];
      return { rows, raw: { dpop: runs, oracleMs: inside } };
    } finally {
      await stopChild(api);
    }
  },

  /** The daemon under the DPoP GET load, then under the Bearer GET load, each under --cpu-prof. */
  async profile(ctx, profiler) {
    const main = await ctx.main();
    const { issuer } = await ctx.idp();
    await main.daemon.stop(); // the profiled daemons take over its home
    for (const [label, account] of [
      ['dpop', 'dpop-cc'],
      ['dpop-bearer', 'plain-cc'],
    ]) {
      await profiler.run(
        label,
        `daemon under proxied GET load for the ${account} account (1 KiB JSON, 16 connections)`,
        async (cpuArgs) => {
          const d = await ctx.startDaemon(main.home, { nodeArgs: cpuArgs(200) });
          const port = await freePort();
          const api = await startApi(port);
          try {
            await putAccounts(d, issuer, `http://127.0.0.1:${port}/api`);
            const load = { socket: d.socket, method: 'GET', path: `/v1/proxy/${account}/item`, mode: 'duration', connections: 16 };
            const out = await ctx.runLoad({ ...load, warmupMs: 300, durationMs: 3000 });
            // The request count turns the profile's milliseconds into time per request.
            profiler.section(`${label}: ${out.total} requests (warm-up included) under --cpu-prof`);
          } finally {
            await stopChild(api);
            await d.stop();
          }
        },
      );
    }
  },
};
