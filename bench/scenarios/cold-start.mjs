// 8. Daemon cold start: `node bin/tokend daemon` spawn → GET /v1/health answers (polled every
// 2 ms), 1 account with a grant, against `node -e 0`. Publishes figures.oneAccount (ready
// time, idle RSS) for row 7, which therefore runs after this one.
import { idleMemoryOf, tempDir, timeAsync, timeSync, ROOT } from '../lib/processes.mjs';
import { median } from '../lib/stats.mjs';
import { fmtMs, row } from '../lib/table.mjs';
import { CLIENT_SECRET, accountConfig, randomGrant } from '../context.mjs';

/** A home with account `work` and a valid grant, written without a daemon. */
async function oneAccountHome(ctx) {
  const home = tempDir('tkb-c-');
  const { issuer } = await ctx.idp();
  await ctx.seedHome(home, {}, [{ name: 'work', config: accountConfig(issuer), secret: CLIENT_SECRET, grant: randomGrant() }]);
  return home;
}

/** What each import costs a fresh process, as a text section for the profile report. */
function importCost() {
  // Paired with a `node -e 0` run each time, so machine noise cancels; median of the
  // differences. Shared dependencies are counted in each row, so rows do not add up.
  const run = (args) => timeSync(process.execPath, args, { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' } });
  const cost = (args) => median(Array.from({ length: 7 }, () => run(args) - run(['-e', '0'])));
  const base = median(Array.from({ length: 5 }, () => run(['-e', '0'])));
  const imports = [
    'hono',
    '@hono/node-server',
    'zod',
    'better-sqlite3',
    './dist/protocol/api.js',
    './dist/daemon/http/app.js',
    './dist/daemon/main.js',
  ];
  const lines = [
    `#### import cost in a fresh process (median of 7 differences to a paired \`node -e 0\`, which took ${fmtMs(base)}; ESM loader start-up included, shared dependencies counted in every row)`,
    '',
  ];
  for (const spec of imports)
    lines.push(`    ${fmtMs(cost(['--input-type=module', '-e', `await import(${JSON.stringify(spec)})`])).padStart(9)}  ${spec}`);
  lines.push(
    `    ${fmtMs(cost(['-e', 'globalThis.Request'])).padStart(9)}  globalThis.Request (loads undici; @hono/node-server touches it at import)`,
  );
  return lines.join('\n') + '\n';
}

export default {
  id: 8,
  title: 'daemon cold start',
  async run(ctx) {
    const home = await oneAccountHome(ctx);
    await (await ctx.startDaemon(home)).stop(); // first start: nothing cached by the OS yet
    const runs = ctx.rounds.coldRuns;
    const t = { tokend: [], node: [], rss: [] };
    for (let i = 0; i < runs; i++) {
      const nodeRun = async () => t.node.push((await timeAsync(process.execPath, ['-e', '0'])).ms);
      if (i % 2) await nodeRun();
      const d = await ctx.startDaemon(home);
      t.tokend.push(d.readyMs);
      // Idle RSS from the first start only (it waits IDLE_SETTLE_MS): the baseline of rows 7 and 13.
      if (i === 0) t.rss.push((await idleMemoryOf(d.pid)).rssMb);
      await d.stop();
      if (i % 2 === 0) await nodeRun();
    }
    ctx.figures.oneAccount = { readyMs: median(t.tokend), idleRssMb: median(t.rss) };
    return {
      rows: [
        row({
          scenario: '8. daemon cold start (1 account)',
          measure: `spawn → /v1/health answers, median of ${runs}`,
          t: median(t.tokend),
          b: median(t.node),
          unit: 'ms',
          kind: 'max',
          limit: 3,
          baselineLabel: 'node -e 0',
        }),
      ],
      raw: { coldStart: t },
    };
  },

  /** One cold start under --cpu-prof, then the import cost of the main modules. */
  async profile(ctx, profiler) {
    const home = await oneAccountHome(ctx);
    await profiler.run('cold-start', 'daemon cold start (spawn → /v1/health, then SIGTERM)', async (cpuArgs) => {
      await (await ctx.startDaemon(home, { nodeArgs: cpuArgs(100) })).stop();
    });
    profiler.section(importCost());
  },
};
