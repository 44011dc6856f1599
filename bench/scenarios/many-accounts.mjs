// 7. 10 000 accounts with grants (written through the store module, not 10 000 logins):
// daemon RSS when ready and after hot-token load, start → ready, and hot-token p99 and
// throughput with requests spread over all accounts, against the 1-account daemons (row 8's
// cold start for ready time and idle RSS, so row 8 runs first; the main daemon for load).
import { memoryOf, tempDir } from '../lib/processes.mjs';
import { median } from '../lib/stats.mjs';
import { row } from '../lib/table.mjs';
import { CLIENT_SECRET, accountConfig, randomGrant } from '../context.mjs';

const BIG_ACCOUNTS = 10_000;

/** A home with BIG_ACCOUNTS accounts and grants; returns {home, names}. */
async function bigHome(ctx) {
  const home = tempDir('tkb-k-');
  const { issuer } = await ctx.idp();
  const names = Array.from({ length: BIG_ACCOUNTS }, (_, i) => `acct${String(i).padStart(5, '0')}`);
  const s0 = Date.now();
  await ctx.seedHome(
    home,
    {},
    names.map((name) => ({ name, config: accountConfig(issuer), secret: CLIENT_SECRET, grant: randomGrant() })),
    { fast: true },
  );
  ctx.log(`seeded ${BIG_ACCOUNTS} accounts in ${Date.now() - s0} ms`);
  return { home, names };
}

export default {
  id: 7,
  title: '10 000 accounts',
  async run(ctx) {
    const { home, names } = await bigHome(ctx);
    const { daemon } = await ctx.main();
    const { loadRounds, warmupMs, durationMs, bigStarts } = ctx.rounds;
    const ready = [];
    let d;
    for (let i = 0; i < bigStarts; i++) {
      d = await ctx.startDaemon(home, { timeoutMs: 60_000 });
      ready.push(d.readyMs);
      if (i < bigStarts - 1) await d.stop();
    }
    try {
      const idle = memoryOf(d.pid);
      // Hot token p99: requests spread over all 10 000 accounts vs the 1-account daemon.
      const shuffled = names.map((n) => [Math.random(), n]).sort((a, b) => a[0] - b[0]).map(([, n]) => JSON.stringify({ account: n }));
      const res = { big: [], one: [] };
      for (let r = 0; r < loadRounds; r++) {
        const runs = [
          ['big', d.socket, shuffled],
          ['one', daemon.socket, [JSON.stringify({ account: 'work' })]],
        ];
        if (r % 2) runs.reverse();
        for (const [who, socket, bodies] of runs) {
          const out = await ctx.runLoad({ socket, path: '/v1/token', bodies, mode: 'duration', connections: 16, warmupMs, durationMs });
          if (out.ok !== out.requests || out.errors) throw new Error(`${who}: non-200 answers ${JSON.stringify(out.statuses)}`);
          res[who].push(out);
        }
      }
      const loaded = memoryOf(d.pid);
      const oneMem = memoryOf(daemon.pid);
      const one = ctx.figures.oneAccount ?? {};
      const scenario = `7. ${BIG_ACCOUNTS.toLocaleString('en-US')} accounts with grants`;
      return {
        rows: [
          row({ scenario, measure: 'daemon RSS when ready, idle (VmRSS)', t: idle.rssMb, b: one.idleRssMb, unit: 'mb', kind: 'abs', limit: 100, baselineLabel: '1 account' }),
          row({ scenario, measure: `daemon RSS after ${loadRounds} hot-token runs (VmRSS)`, t: loaded.rssMb, b: oneMem.rssMb, unit: 'mb', kind: 'abs', limit: 100, baselineLabel: '1 account, the main daemon' }),
          row({ scenario, measure: `start → ready, median of ${ready.length}`, t: median(ready), b: one.readyMs, unit: 'ms', kind: 'abs', limit: 500, baselineLabel: '1 account' }),
          row({
            scenario,
            measure: 'hot token p99, 16 conn',
            t: median(res.big.map((o) => o.p99)),
            b: median(res.one.map((o) => o.p99)),
            unit: 'ms',
            kind: 'max',
            limit: 1.25,
            target: '≤ 1.25× (unchanged)',
            baselineLabel: '1 account',
          }),
          row({ scenario, measure: 'hot token throughput, 16 conn', t: median(res.big.map((o) => o.rps)), b: median(res.one.map((o) => o.rps)), unit: 'rps', baselineLabel: '1 account' }),
        ],
        raw: { big: { ready, idle, loaded, oneAccountMemory: oneMem, load: res } },
      };
    } finally {
      await d.stop();
    }
  },

  /** One start with 10 000 accounts under --cpu-prof. */
  async profile(ctx, profiler) {
    const { home } = await bigHome(ctx);
    await profiler.run('big-start', `daemon start with ${BIG_ACCOUNTS} accounts`, async (cpuArgs) => {
      await (await ctx.startDaemon(home, { nodeArgs: cpuArgs(200), timeoutMs: 60_000 })).stop();
    });
  },
};
