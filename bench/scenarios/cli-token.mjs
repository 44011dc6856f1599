// 2. `tokend token NAME`: one process run as users run it (spawn → exit, stdout checked),
// against `git credential-cache get` (a C helper on a Unix socket) and `node -e 0`.
import { spawnSync } from 'node:child_process';
import { TOKEND_BIN, timeSync } from '../lib/processes.mjs';
import { interleave, median } from '../lib/stats.mjs';
import { row } from '../lib/table.mjs';
import { benchEnv } from '../context.mjs';

export default {
  id: 2,
  title: 'tokend token CLI',
  async run(ctx) {
    const { home, token } = await ctx.main();
    const { get } = await ctx.credentialCache();
    const env = benchEnv(home);
    const runs = ctx.rounds.cliRuns;
    const t = await interleave(runs, {
      tokend: () => timeSync(TOKEND_BIN, ['token', 'work'], { env, check: (o) => o === `${token.access_token}\n` }),
      cc: get,
      node: () => timeSync(process.execPath, ['-e', '0']),
    });
    const scenario = '2. `tokend token NAME`';
    return {
      rows: [
        row({
          scenario,
          measure: `wall time, median of ${runs}`,
          t: median(t.tokend),
          b: median(t.cc),
          unit: 'ms',
          kind: 'max',
          limit: 1.2,
          baselineLabel: 'git credential-cache get',
        }),
        row({
          scenario,
          measure: `wall time, median of ${runs}`,
          t: median(t.tokend),
          b: median(t.node),
          unit: 'ms',
          baselineLabel: 'node -e 0',
        }),
      ],
      raw: { cli: t },
    };
  },

  /** `node bin/tokend token work` under --cpu-prof: the node client, the fallback when the native fast path is missing. */
  async profile(ctx, profiler) {
    const main = await ctx.main();
    await main.daemon.stop();
    const d = await ctx.startDaemon(main.home);
    try {
      await profiler.run(
        'cli',
        '`node bin/tokend token work`: the node client (the fallback when the native fast path is missing)',
        async (cpuArgs) => {
          const r = spawnSync(process.execPath, [...cpuArgs(100), TOKEND_BIN, 'token', 'work'], {
            env: benchEnv(main.home),
            encoding: 'utf8',
          });
          if (r.status !== 0) throw new Error(`tokend token under --cpu-prof exited ${r.status}: ${r.stderr}`);
        },
      );
    } finally {
      await d.stop();
    }
  },
};
