// 4. `git ls-remote` against the local git HTTP server with credential.helper=
// bin/git-credential-tokend, against the same command with the token in the URL. git runs
// the helper twice per command: `get` after the 401, `store` after the success.
import { GIT_HELPER_BIN, tempDir, timeAsync } from '../lib/processes.mjs';
import { median } from '../lib/stats.mjs';
import { row, textRow } from '../lib/table.mjs';
import { gitHelperMissing } from '../lib/git-helper.mjs';
import { isolatedGitEnv } from '../lib/support.mjs';

const SCENARIO = '4. `git ls-remote` (local git HTTP server)';

export default {
  id: 4,
  title: 'git ls-remote',
  async run(ctx) {
    const { daemon, home: tokendHome, token } = await ctx.main();
    const git = await ctx.git();
    const why = await gitHelperMissing(daemon, `protocol=http\nhost=127.0.0.1:${git.port}\n\n`);
    if (why) return { rows: [textRow(SCENARIO, 'wall time', `not measured (helpers not built: ${why})`)] };
    const env = isolatedGitEnv({ HOME: tempDir('tkb-gh-'), TOKEND_HOME: tokendHome, TOKEND_NO_AUTOSTART: '1' });
    const viaHelper = ['-c', 'credential.helper=', '-c', `credential.helper=${GIT_HELPER_BIN}`, 'ls-remote', `${git.url}/demo.git`];
    const inUrl = ['-c', 'credential.helper=', 'ls-remote', `http://x-access-token:${token.access_token}@127.0.0.1:${git.port}/demo.git`];
    const run = async (args) => {
      const r = await timeAsync('git', args, { env });
      if (!r.stdout.includes('refs/heads/main')) throw new Error(`git ls-remote printed no refs: ${r.stderr.slice(0, 300)}`);
      return r.ms;
    };
    for (let i = 0; i < 2; i++) {
      await run(viaHelper);
      await run(inUrl);
    }
    const t = { tokend: [], url: [] };
    for (let i = 0; i < ctx.rounds.gitRuns; i++) {
      for (const who of i % 2 === 0 ? ['tokend', 'url'] : ['url', 'tokend']) t[who].push(await run(who === 'tokend' ? viaHelper : inUrl));
    }
    return {
      rows: [row({ scenario: SCENARIO, measure: `wall time, median of ${ctx.rounds.gitRuns}`, t: median(t.tokend), b: median(t.url), unit: 'ms', kind: 'max', limit: 1.15, baselineLabel: 'token in the URL' })],
      raw: { lsRemote: t },
    };
  },
};
