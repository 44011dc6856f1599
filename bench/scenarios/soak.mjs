// 12. Soak: minutes of mixed load on one daemon (hot tokens, git helper calls, forced
// refreshes against the rotating IdP, logins started and cancelled, proxied API calls), its
// RSS and open file descriptors sampled every 10 s. A leak shows as a trend: the rows
// compare the last quarter of the samples with the second (the first is the warm-up).
// Not in the default run, and not in CI: `npm run bench -- --soak 30`.
import path from 'node:path';
import fs from 'node:fs';
import { BENCH, freePort, GIT_HELPER_BIN, memoryOf, spawnTracked, stopChild, timeSync } from '../lib/processes.mjs';
import { median } from '../lib/stats.mjs';
import { row } from '../lib/table.mjs';
import { benchEnv } from '../context.mjs';

const SCENARIO = '12. soak, mixed load';
const SAMPLE_MS = 10_000;

const openFds = (pid) => {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
};

/** Growth from the second quarter of `samples` to the last, per 10 minutes of run. */
function trend(samples, key, minutes) {
  const q = Math.max(1, Math.floor(samples.length / 4));
  const early = median(samples.slice(q, 2 * q).map((s) => s[key]));
  const late = median(samples.slice(-q).map((s) => s[key]));
  const spanMin = Math.max(minutes / 2, 0.1); // between the middles of the two quarters
  return ((late - early) / spanMin) * 10;
}

export default {
  id: 12,
  title: 'soak',
  /** Only with --soak MINUTES. */
  optIn: true,
  async run(ctx) {
    const minutes = ctx.soakMinutes ?? 30;
    const { daemon, home } = await ctx.main();
    const git = await ctx.git();
    const port = await freePort();
    const set = await daemon.request('PATCH', '/v1/accounts/work', { api_base: `http://127.0.0.1:${port}/api` });
    if (set.status !== 200) throw new Error(`PATCH api_base answered ${set.status}: ${set.text}`);
    // The API accepts any token the IdP issues for the account: the soak refreshes it.
    const api = spawnTracked(process.execPath, [path.join(BENCH, 'api-server.mjs'), String(port), '*'], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
    await new Promise((resolve) => api.once('message', resolve));
    const env = benchEnv(home);
    const helperInput = `protocol=http\nhost=127.0.0.1:${git.port}\n\n`;
    const counts = { tokens: 0, proxied: 0, helpers: 0, refreshes: 0, logins: 0, errors: 0 };
    const samples = [];
    const sample = () => samples.push({ t: Date.now(), rssMb: memoryOf(daemon.pid).rssMb, fds: openFds(daemon.pid) });
    const end = Date.now() + minutes * 60_000;
    sample();
    const timer = setInterval(sample, SAMPLE_MS);
    try {
      while (Date.now() < end) {
        const load = await ctx.runLoad({
          socket: daemon.socket,
          path: '/v1/token',
          bodies: [JSON.stringify({ account: 'work' })],
          mode: 'duration',
          connections: 16,
          warmupMs: 0,
          durationMs: 1000,
        });
        counts.tokens += load.ok;
        counts.errors += load.requests - load.ok + load.errors;
        const proxied = await ctx.runLoad({
          socket: daemon.socket,
          method: 'GET',
          path: '/v1/proxy/work/item',
          mode: 'duration',
          connections: 4,
          warmupMs: 0,
          durationMs: 300,
        });
        counts.proxied += proxied.ok;
        counts.errors += proxied.requests - proxied.ok + proxied.errors;
        for (let i = 0; i < 5; i++) {
          try {
            timeSync(GIT_HELPER_BIN, ['get'], { env, input: helperInput, check: (o) => o.includes('password=') });
            counts.helpers++;
          } catch {
            counts.errors++;
          }
        }
        const r = await daemon.request('POST', '/v1/accounts/work/refresh');
        if (r.status === 200) counts.refreshes++;
        else counts.errors++;
        const login = await daemon.request('POST', '/v1/accounts/work/login', { flow: 'device' });
        const id = login.json?.login?.id ?? login.json?.id;
        if (login.status < 300 && id) {
          const cancel = await daemon.request('POST', `/v1/logins/${encodeURIComponent(id)}/cancel`);
          if (cancel.status < 300) counts.logins++;
          else counts.errors++;
        } else counts.errors++;
      }
    } finally {
      clearInterval(timer);
      sample();
      await stopChild(api);
    }
    const rss = trend(samples, 'rssMb', minutes);
    const fds = trend(samples, 'fds', minutes);
    return {
      rows: [
        row({
          scenario: SCENARIO,
          measure: `daemon RSS growth per 10 min (${minutes} min run)`,
          t: rss,
          unit: 'mb',
          kind: 'abs',
          limit: 8,
        }),
        row({
          scenario: SCENARIO,
          measure: 'open descriptors growth per 10 min',
          t: Math.round(fds * 10) / 10,
          unit: 'count',
          kind: 'abs',
          limit: 2,
        }),
        row({ scenario: SCENARIO, measure: 'failed requests', t: counts.errors, unit: 'count', kind: 'exact', limit: 0 }),
      ],
      references: [
        `Soak (${minutes} min): ${counts.tokens} tokens, ${counts.proxied} proxied calls, ${counts.helpers} git helper calls, ${counts.refreshes} forced refreshes, ${counts.logins} logins started and cancelled; ` +
          `RSS ${samples[0].rssMb.toFixed(1)} → ${samples.at(-1).rssMb.toFixed(1)} MB, descriptors ${samples[0].fds} → ${samples.at(-1).fds}.`,
      ],
      raw: { soak: { counts, samples } },
    };
  },
};
