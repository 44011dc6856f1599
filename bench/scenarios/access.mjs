// 14. What an account's access costs (docs/security.md, access), in the same run as the open
// account it is compared with: two accounts of the main daemon, `work` (open) and `guarded`
// (access callers), served alternately.
// - Hot token on keep-alive connections: `guarded` allows the load generator by a script rule
//   (node running bench/loadgen.mjs), behind two rules that do not match. The decision is
//   cached per connection, so this is the cost of one lookup a request.
// - The git helper (one connection per process): `guarded` allows it by an ancestor rule.
//   git is not in the chain here (the bench runs the helper itself), so the rule names the
//   helper's parent, this node, as `tokend setup git` names git: the same check.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BENCH, GIT_HELPER_BIN, timeSync } from '../lib/processes.mjs';
import { interleave, median } from '../lib/stats.mjs';
import { row, textRow } from '../lib/table.mjs';
import { accountConfig, benchEnv, CLIENT_SECRET } from '../context.mjs';

const SCENARIO = '14. access';
const GUARDED_HOST = 'guarded.bench.test';

export default {
  id: 14,
  title: 'access: callers rules against open',
  async run(ctx) {
    const { daemon, home } = await ctx.main();
    const { issuer, issue } = await ctx.idp();
    const node = fs.realpathSync(process.execPath);
    const put = await daemon.request('PUT', '/v1/accounts/guarded', {
      ...accountConfig(issuer, { hosts: [GUARDED_HOST] }),
      client_secret: CLIENT_SECRET,
    });
    if (put.status !== 201 && put.status !== 200) throw new Error(`PUT /v1/accounts/guarded answered ${put.status}: ${put.text}`);
    const imp = await daemon.request('POST', '/v1/accounts/guarded/import', { refresh_token: (await issue()).refresh_token });
    if (imp.status !== 200) throw new Error(`import guarded answered ${imp.status}: ${imp.text}`);
    const callers = [
      { exe: '/usr/bin/curl' },
      { unit: 'bench-nothing.service' },
      { script: path.join(BENCH, 'loadgen.mjs'), exe: node },
      { ancestor: node },
    ];
    const patch = await daemon.request('PATCH', '/v1/accounts/guarded', { access: { mode: 'callers', callers } });
    if (patch.status !== 200)
      return { rows: [textRow(SCENARIO, 'hot token', `not measured (access refused: ${patch.text.slice(0, 200)})`)] };

    const rows = [];
    const raw = { hot: {} };
    const { loadRounds, warmupMs, durationMs } = ctx.rounds;
    for (const conns of [1, 16]) {
      const res = { open: [], callers: [] };
      for (let r = 0; r < loadRounds; r++) {
        for (const who of r % 2 ? ['callers', 'open'] : ['open', 'callers']) {
          const account = who === 'open' ? 'work' : 'guarded';
          const out = await ctx.runLoad({
            socket: daemon.socket,
            path: '/v1/token',
            bodies: [JSON.stringify({ account })],
            mode: 'duration',
            connections: conns,
            warmupMs,
            durationMs,
          });
          if (out.ok !== out.requests || out.errors)
            throw new Error(
              `${account}: ${out.requests - out.ok} non-200 answers, ${out.errors} socket errors (${JSON.stringify(out.statuses)})`,
            );
          res[who].push(out);
        }
      }
      raw.hot[conns] = res;
      const m = (who, k) => median(res[who].map((o) => o[k]));
      rows.push(
        row({
          scenario: `${SCENARIO}, hot token, ${conns} conn`,
          measure: 'throughput, callers rule vs open',
          t: m('callers', 'rps'),
          b: m('open', 'rps'),
          unit: 'rps',
          kind: 'min',
          limit: 1 / 1.1,
          target: 'cost ≤ 1.10× open',
          baselineLabel: 'open',
        }),
      );
    }

    if (!fs.existsSync(GIT_HELPER_BIN)) {
      rows.push(textRow(`${SCENARIO}, git helper`, 'wall time', `not measured (${GIT_HELPER_BIN} is missing)`));
      return { rows, raw };
    }
    const env = benchEnv(home);
    const git = await ctx.git();
    // The helper's own word when it prints no credential (a miss: no account, or a refusal).
    const probe = spawnSync(GIT_HELPER_BIN, ['get'], { env, input: `protocol=https\nhost=${GUARDED_HOST}\n\n`, encoding: 'utf8' });
    if (!probe.stdout.includes('password='))
      throw new Error(`the git helper for the guarded account printed no credential: ${probe.stderr.trim().slice(0, 500)}`);
    const get = (host, protocol) => () =>
      timeSync(GIT_HELPER_BIN, ['get'], { env, input: `protocol=${protocol}\nhost=${host}\n\n`, check: (o) => o.includes('password=') });
    const t = await interleave(ctx.rounds.cliRuns, { open: get(`127.0.0.1:${git.port}`, 'http'), ancestor: get(GUARDED_HOST, 'https') });
    raw.helper = t;
    rows.push(
      row({
        scenario: `${SCENARIO}, git helper`,
        measure: `wall time, median of ${ctx.rounds.cliRuns}, ancestor rule vs open`,
        t: median(t.ancestor),
        b: median(t.open),
        unit: 'ms',
        kind: 'diff',
        limit: 0.5,
        baselineLabel: 'open',
      }),
    );
    return { rows, raw };
  },
};
