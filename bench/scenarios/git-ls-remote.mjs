// 4. `git ls-remote` against the local git HTTP server with tokend as the credential helper
// (as `tokend setup git` configures it), against the same command with git's own
// `credential-cache` holding the same token: git's helper machinery is the floor, and the
// ratio is what tokend adds to it. git runs the helper twice per command: `get` after the
// 401, `store` after the success. A third reference: the token in the URL (no helper).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { GIT_HELPER_BIN, onExit, tempDir, timeAsync } from '../lib/processes.mjs';
import { median } from '../lib/stats.mjs';
import { fmtMs, row, textRow } from '../lib/table.mjs';
import { gitHelperMissing } from '../lib/git-helper.mjs';
import { isolatedGitEnv } from '../lib/support.mjs';

const SCENARIO = '4. `git ls-remote` (local git HTTP server)';

export default {
  id: 4,
  title: 'git ls-remote',
  async run(ctx) {
    const { daemon, home: tokendHome, token } = await ctx.main();
    const git = await ctx.git();
    const host = `127.0.0.1:${git.port}`;
    const why = await gitHelperMissing(daemon, `protocol=http\nhost=${host}\n\n`);
    if (why) return { rows: [textRow(SCENARIO, 'wall time', `not measured (helpers not built: ${why})`)] };
    const env = isolatedGitEnv({ HOME: tempDir('tkb-gh-'), TOKEND_HOME: tokendHome, TOKEND_NO_AUTOSTART: '1' });
    // git credential-cache holding the same token for the same host, warm.
    const ccSocket = path.join(tempDir('tkb-cc4-'), 'cc', 'sock');
    const stored = spawnSync('git', ['credential-cache', '--timeout', '900', '--socket', ccSocket, 'store'], {
      input: `protocol=http\nhost=${host}\nusername=x-access-token\npassword=${token.access_token}\n\n`,
      env,
      stdio: ['pipe', 'ignore', 'ignore'],
      timeout: 10_000,
    });
    if (stored.status !== 0) throw new Error(`git credential-cache store exited ${stored.status}`);
    onExit(() => spawnSync('git', ['credential-cache', '--socket', ccSocket, 'exit'], { env, stdio: 'ignore', timeout: 5000 }));
    const argsFor = {
      tokend: ['-c', 'credential.helper=', '-c', `credential.helper=${GIT_HELPER_BIN}`, 'ls-remote', `${git.url}/demo.git`],
      cache: ['-c', 'credential.helper=', '-c', `credential.helper=cache --socket ${ccSocket}`, 'ls-remote', `${git.url}/demo.git`],
      url: ['-c', 'credential.helper=', 'ls-remote', `http://x-access-token:${token.access_token}@${host}/demo.git`],
    };
    const run = async (args) => {
      const r = await timeAsync('git', args, { env });
      if (!r.stdout.includes('refs/heads/main')) throw new Error(`git ls-remote printed no refs: ${r.stderr.slice(0, 300)}`);
      return r.ms;
    };
    const who = Object.keys(argsFor);
    for (let i = 0; i < 2; i++) for (const w of who) await run(argsFor[w]);
    const t = { tokend: [], cache: [], url: [] };
    for (let i = 0; i < ctx.rounds.gitRuns; i++) {
      // Rotate the order, so no one always runs first after a pause.
      for (let j = 0; j < who.length; j++) {
        const w = who[(i + j) % who.length];
        t[w].push(await run(argsFor[w]));
      }
    }
    return {
      rows: [
        row({
          scenario: SCENARIO,
          measure: `wall time, median of ${ctx.rounds.gitRuns}`,
          t: median(t.tokend),
          b: median(t.cache),
          unit: 'ms',
          kind: 'max',
          limit: 1.05,
          baselineLabel: 'the same with git credential-cache',
        }),
      ],
      references: [
        `git ls-remote medians: tokend ${fmtMs(median(t.tokend))}, git credential-cache ${fmtMs(median(t.cache))}, the token in the URL (no helper) ${fmtMs(median(t.url))}.`,
      ],
      raw: { lsRemote: t },
    };
  },
};
