// 1. Hot token: POST /v1/token for a cached token, keep-alive, 1 and 16 connections, against
// a plain node:http server answering the same JSON from a Map. Two reference servers on
// tokend's HTTP stack (Hono on @hono/node-server) without tokend tell framework cost from
// tokend's own.
import { median } from '../lib/stats.mjs';
import { cpuMsOf, memoryOf, stopChild } from '../lib/processes.mjs';
import { fmtMs, fmtRatio, fmtRps, row } from '../lib/table.mjs';

export default {
  id: 1,
  title: 'hot token',
  async run(ctx) {
    const { daemon, token } = await ctx.main();
    const { loadRounds, warmupMs, durationMs } = ctx.rounds;
    const servers = {
      tokend: { socket: daemon.socket, pid: daemon.pid },
      baseline: await ctx.startSideServer('baseline-server.mjs', [], [token]),
      'hono, c.req.text()': await ctx.startSideServer('hono-server.mjs', ['text'], [token]),
      'hono, body from c.env.incoming': await ctx.startSideServer('hono-server.mjs', ['incoming'], [token]),
    };
    const names = Object.keys(servers);
    const body = JSON.stringify({ account: 'work' });
    const rows = [];
    const references = [];
    const raw = { hot: {} };
    try {
      for (const conns of [1, 16]) {
        const res = Object.fromEntries(names.map((n) => [n, []]));
        for (let r = 0; r < loadRounds; r++) {
          for (let j = 0; j < names.length; j++) {
            const who = names[(r + j) % names.length]; // rotate who goes first
            const pid = servers[who].pid ?? servers[who].child?.pid;
            const cpu0 = cpuMsOf(pid);
            const out = await ctx.runLoad({
              socket: servers[who].socket,
              path: '/v1/token',
              bodies: [body],
              mode: 'duration',
              connections: conns,
              warmupMs,
              durationMs,
            });
            if (out.ok !== out.requests || out.errors)
              throw new Error(
                `${who}: ${out.requests - out.ok} non-200 answers, ${out.errors} socket errors (${JSON.stringify(out.statuses)})`,
              );
            // CPU per answer (warm-up included in both): far steadier than req/s on a busy machine.
            res[who].push({ ...out, cpuUs: ((cpuMsOf(pid) - cpu0) * 1000) / out.total });
          }
        }
        raw.hot[conns] = res;
        const m = (who, k) => median(res[who].map((o) => o[k]));
        const scenario = `1. hot token, ${conns} conn`;
        rows.push(
          row({
            scenario,
            measure: 'throughput',
            t: m('tokend', 'rps'),
            b: m('baseline', 'rps'),
            unit: 'rps',
            kind: 'min',
            limit: conns === 16 ? 0.85 : 0.7,
          }),
          row({ scenario, measure: 'p50 latency', t: m('tokend', 'p50'), b: m('baseline', 'p50'), unit: 'ms' }),
          row({ scenario, measure: 'p99 latency', t: m('tokend', 'p99'), b: m('baseline', 'p99'), unit: 'ms', kind: 'max', limit: 1.5 }),
        );
        const refs = names
          .filter((n) => n.startsWith('hono'))
          .map((n) => `${n}: ${fmtRps(m(n, 'rps'))} (${fmtRatio(m(n, 'rps') / m('baseline', 'rps'))}), p99 ${fmtMs(m(n, 'p99'))}`);
        references.push(`Hot token, ${conns} conn, Hono on @hono/node-server alone (no tokend code, same Map answer): ${refs.join('; ')}.`);
        references.push(
          `Hot token, ${conns} conn, server CPU per answer (user + system from /proc, medians): tokend ${m('tokend', 'cpuUs').toFixed(1)} µs, baseline ${m('baseline', 'cpuUs').toFixed(1)} µs (baseline/tokend ${fmtRatio(m('baseline', 'cpuUs') / m('tokend', 'cpuUs'))}: the throughput ratio CPU alone would give).`,
        );
      }
    } finally {
      for (const n of names) if (servers[n].child) await stopChild(servers[n].child);
    }
    raw.mainDaemonMemoryAfterLoad = memoryOf(daemon.pid);
    return { rows, references, raw };
  },

  /** The daemon under 16-connection hot-token load, under --cpu-prof. */
  async profile(ctx, profiler) {
    const main = await ctx.main();
    await main.daemon.stop(); // the profiled daemon takes over its home
    await profiler.run('hot-token', 'daemon under hot-token load (16 connections)', async (cpuArgs) => {
      const d = await ctx.startDaemon(main.home, { nodeArgs: cpuArgs(200) });
      await ctx.runLoad({
        socket: d.socket,
        path: '/v1/token',
        bodies: [JSON.stringify({ account: 'work' })],
        mode: 'duration',
        connections: 16,
        warmupMs: 300,
        durationMs: 3000,
      });
      await d.stop();
    });
  },
};
