// 3. `git-credential-tokend get`: wall time of one helper run for the git server's host, as
// `tokend setup git --native` configures it (build/git-credential-tokend, the native client
// under the helper's name, when it was built; else the sh shim, which plain `setup git` names
// and the references time too), against `git credential-cache get`.
// The references split its time: `store`, the sh shim in bin/, the native client alone, a
// bare sh, and the daemon's share of the round trip.
import fs from 'node:fs';
import { GIT_HELPER_BIN, GIT_SHIM_BIN, NATIVE_BIN, timeSync } from '../lib/processes.mjs';
import { interleave, median } from '../lib/stats.mjs';
import { fmtMs, row, textRow } from '../lib/table.mjs';
import { gitHelperMissing } from '../lib/git-helper.mjs';
import { benchEnv } from '../context.mjs';

const SCENARIO = '3. `git-credential-tokend get`';

export default {
  id: 3,
  title: 'git-credential-tokend get',
  async run(ctx) {
    const { daemon, home, token } = await ctx.main();
    const git = await ctx.git();
    const input = `protocol=http\nhost=127.0.0.1:${git.port}\n\n`;
    const why = await gitHelperMissing(daemon, input);
    if (why) return { rows: [textRow(SCENARIO, 'wall time', `not measured (helpers not built: ${why})`)] };
    const { get } = await ctx.credentialCache();
    const env = benchEnv(home);
    const cmds = {
      tokend: () => timeSync(GIT_HELPER_BIN, ['get'], { env, input, check: (o) => o.includes(`password=${token.access_token}\n`) }),
      cc: get,
      // Where the helper's time goes: `store` (git calls it after every success), the native
      // client alone, and a bare sh.
      store: () =>
        timeSync(GIT_HELPER_BIN, ['store'], { env, input: `${input.trimEnd()}\nusername=x\npassword=${token.access_token}\n\n` }),
      sh: () => timeSync('/bin/sh', ['-c', ':']),
    };
    if (GIT_HELPER_BIN !== GIT_SHIM_BIN) {
      cmds.shim = () => timeSync(GIT_SHIM_BIN, ['get'], { env, input, check: (o) => o.includes(`password=${token.access_token}\n`) });
    }
    if (fs.existsSync(NATIVE_BIN)) {
      cmds.native = () => timeSync(NATIVE_BIN, [daemon.socket, '/v1/helpers/git/get'], { input, check: (o) => o.includes('password=') });
    }
    const t = await interleave(ctx.rounds.cliRuns, cmds);
    // The daemon's share: one connection, back to back, helper route against the token route.
    const load = (p, body, contentType) =>
      ctx.runLoad({
        socket: daemon.socket,
        path: p,
        bodies: [body],
        contentType,
        mode: 'duration',
        connections: 1,
        warmupMs: 200,
        durationMs: 800,
      });
    const route = {
      helper: await load('/v1/helpers/git/get', input, 'application/octet-stream'),
      token: await load('/v1/token', JSON.stringify({ account: 'work' })),
    };
    t.route = route;
    return {
      rows: [
        row({
          scenario: SCENARIO,
          measure: `wall time, median of ${ctx.rounds.cliRuns}`,
          t: median(t.tokend),
          b: median(t.cc),
          unit: 'ms',
          kind: 'max',
          limit: 1.2,
          baselineLabel: 'git credential-cache get',
        }),
      ],
      references: [
        `${GIT_HELPER_BIN === GIT_SHIM_BIN ? 'bin/git-credential-tokend (the native client is not built)' : 'build/git-credential-tokend'}, medians: \`get\` ${fmtMs(median(t.tokend))}, \`store\` ${fmtMs(median(t.store))} (git runs it after every successful request)` +
          (t.shim ? `; the sh shim bin/git-credential-tokend \`get\` ${fmtMs(median(t.shim))}` : '') +
          (t.native ? `; build/tokend-fast alone (POST /v1/helpers/git/get) ${fmtMs(median(t.native))}` : '') +
          `; \`sh -c :\` ${fmtMs(median(t.sh))}. Inside the daemon (socket round trip, one connection): POST /v1/helpers/git/get p50 ${fmtMs(route.helper.p50)}, POST /v1/token p50 ${fmtMs(route.token.p50)}.`,
      ],
      raw: { helper: t },
    };
  },
};
