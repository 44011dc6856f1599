// 2. `tokend token NAME`: one process run as users run it (spawn → exit, stdout checked),
// as `tokend setup cli` links the command (build/tokend, the native client under the
// command's name, when it was built; else bin/tokend), against `git credential-cache get`
// (a C helper on a Unix socket) and `node -e 0`. The references time bin/tokend too: the
// sh script npm links by default, which a copied tree or an install without `setup cli` runs.
import { spawnSync } from 'node:child_process';
import { TOKEND_BIN, TOKEND_CLI_BIN, timeSync } from '../lib/processes.mjs';
import { interleave, median } from '../lib/stats.mjs';
import { fmtMs, row } from '../lib/table.mjs';
import { benchEnv } from '../context.mjs';

export default {
  id: 2,
  title: 'tokend token CLI',
  async run(ctx) {
    const { home, token } = await ctx.main();
    const { get } = await ctx.credentialCache();
    const env = benchEnv(home);
    const runs = ctx.rounds.cliRuns;
    const check = (o) => o === `${token.access_token}\n`;
    const t = await interleave(runs, {
      tokend: () => timeSync(TOKEND_CLI_BIN, ['token', 'work'], { env, check }),
      cc: get,
      node: () => timeSync(process.execPath, ['-e', '0']),
      ...(TOKEND_CLI_BIN !== TOKEND_BIN && { sh: () => timeSync(TOKEND_BIN, ['token', 'work'], { env, check }) }),
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
      references: [
        `\`tokend token work\` run as ${TOKEND_CLI_BIN === TOKEND_BIN ? 'bin/tokend (the native client is not built)' : 'build/tokend (what `tokend setup cli` links)'}: ${fmtMs(median(t.tokend))}` +
          (t.sh
            ? `; as bin/tokend, the sh script (npm's default link; a copied tree): ${fmtMs(median(t.sh))} (${(median(t.sh) / median(t.cc)).toFixed(2)}× git credential-cache get)`
            : '') +
          '.',
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
