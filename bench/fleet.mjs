// A fleet (docs/fleet.md) measured: daemons sharing one grant through a private PostgreSQL
// cluster, against a daemon of its own (SQLite) in the same run.
//
//   export async function run(ctx) → rows [{ scenario, measure, tokend, baseline, ratio, target, pass, raw }]
//
// ctx (every field optional): quick (fewer, shorter rounds), log (msg → void), idp (the bench's
// OpenID Provider as bench/run.mjs holds it: { issuer, issue(), stats(), reset() }; else this
// module starts bench/idp.mjs itself). `node bench/fleet.mjs [--quick]` runs it alone and
// prints the rows as a markdown table.
//
// Rows: F1 hot token p99 (and throughput) on a fleet daemon vs a local daemon; F2 a refresh
// storm of 1000 requests over three daemons (one upstream call, and its p99 wait vs the same
// storm on one local daemon); F3 how long a rotated token takes to reach the other daemons
// (p99), against a bare LISTEN/NOTIFY round trip on the same cluster.
import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH, ROOT, cleanupSync, installSignalHandlers, median, nowMs, onExit, quantile, runLoad, socketRequest, spawnTracked, startDaemon, tempDir, writeConfig } from './lib.mjs';

const SCOPES = ['openid', 'offline_access', 'api'];
const STORM = 1000;

export async function run(ctx = {}) {
  const log = ctx.log ?? ((m) => process.stderr.write(`bench fleet: ${m}\n`));
  const Q = ctx.quick
    ? { rounds: 3, warmupMs: 300, durationMs: 1000, storms: 3, propagations: 15, notifies: 50 }
    : { rounds: 5, warmupMs: 500, durationMs: 1500, storms: 5, propagations: 40, notifies: 200 };
  const idp = ctx.idp ?? (await ownIdp());
  const db = await privateCluster();
  log(`PostgreSQL at ${db.url}; IdP at ${idp.issuer}`);

  // Three fleet daemons on one database, and one daemon of its own. The first creates the
  // fleet's key; the others get a copy, as docs/fleet.md deploys them.
  const settings = { proactive_refresh: false, max_refreshes_per_minute: 100_000 };
  const fleet = [];
  for (let i = 0; i < 3; i++) {
    const home = tempDir('tkb-f-');
    writeConfig(home, settings);
    if (i > 0) fs.copyFileSync(path.join(fleet[0].home, 'config', 'key'), path.join(home, 'config', 'key'));
    fleet.push(await startDaemon(home, { env: { TOKEND_DATABASE_URL: db.url } }));
  }
  const localHome = tempDir('tkb-l-');
  writeConfig(localHome, settings);
  const local = await startDaemon(localHome);
  for (const d of [...fleet, local]) await addAccount(d, idp.issuer);
  for (const d of [fleet[0], local]) {
    const r = await d.request('POST', '/v1/accounts/work/import', { refresh_token: (await idp.issue()).refresh_token });
    if (r.status !== 200) throw new Error(`import: ${r.status} ${r.text}`);
  }
  await agree(fleet);

  const rows = [];
  try {
    rows.push(...(await hotToken(fleet[1], local, Q)));
    rows.push(...(await storm(fleet, local, idp, Q)));
    rows.push(...(await propagation(fleet, db, Q)));
  } finally {
    for (const d of [...fleet, local]) await d.stop();
    await db.stop();
    if (!ctx.idp) idp.child.kill();
  }
  return rows;
}

// ------------------------------------------------------------------ the scenarios

/** F1: the hot path of a fleet daemon is the local daemon's (memory only): p99 and throughput, 16 connections. */
async function hotToken(fleetDaemon, local, Q) {
  const body = JSON.stringify({ account: 'work' });
  const res = { fleet: [], local: [] };
  for (let r = 0; r < Q.rounds; r++) {
    for (const who of r % 2 ? ['local', 'fleet'] : ['fleet', 'local']) {
      const d = who === 'fleet' ? fleetDaemon : local;
      const out = await runLoad({ socket: d.socket, path: '/v1/token', bodies: [body], mode: 'duration', connections: 16, warmupMs: Q.warmupMs, durationMs: Q.durationMs });
      if (out.ok !== out.requests || out.errors) throw new Error(`hot token on the ${who} daemon: ${JSON.stringify(out.statuses)}, ${out.errors} socket errors`);
      res[who].push(out);
    }
  }
  const m = (who, k) => median(res[who].map((o) => o[k]));
  const scenario = 'F1. hot token, fleet daemon vs local daemon, 16 conn';
  return [
    row({ scenario, measure: `p99 latency, median of ${Q.rounds} rounds`, t: m('fleet', 'p99'), b: m('local', 'p99'), unit: 'ms', max: 1.25, raw: res }),
    row({ scenario, measure: 'throughput', t: m('fleet', 'rps'), b: m('local', 'rps'), unit: 'rps', min: 0.8 }),
  ];
}

/**
 * F2: every daemon's cached token dropped (`/v1/credential/reject`), then 1000 concurrent
 * requests spread over the three sockets: one refresh at the IdP for the whole fleet. The p99
 * wait is compared with the same storm on the local daemon.
 */
async function storm(fleet, local, idp, Q) {
  const body = JSON.stringify({ account: 'work' });
  const burst = (d, n) => runLoad({ socket: d.socket, path: '/v1/token', bodies: [body], mode: 'burst', connections: n, capture: 'access_token' });
  const rounds = { fleet: [], local: [] };
  for (let r = 0; r < Q.storms; r++) {
    for (const who of r % 2 ? ['local', 'fleet'] : ['fleet', 'local']) {
      const ds = who === 'fleet' ? fleet : [local];
      for (const d of ds) await d.request('POST', '/v1/credential/reject', { account: 'work' });
      await idp.reset();
      const outs = await Promise.all(ds.map((d, i) => burst(d, Math.floor(STORM / ds.length) + (i < STORM % ds.length ? 1 : 0))));
      const ok = outs.reduce((n, o) => n + (o.statuses[200] ?? 0), 0);
      if (ok !== STORM) throw new Error(`storm on the ${who} daemon(s): ${outs.map((o) => JSON.stringify(o.statuses)).join(' ')}`);
      const st = await idp.stats();
      rounds[who].push({ calls: st.tokenRequests, refreshes: st.refreshes, replays: st.replays, p99: Math.max(...outs.map((o) => o.p99)) });
    }
    await agree(fleet);
  }
  const scenario = `F2. refresh storm: ${STORM} concurrent requests over 3 fleet daemons, tokens dropped`;
  const calls = Math.max(...rounds.fleet.map((r) => r.calls));
  const replays = rounds.fleet.reduce((n, r) => n + r.replays, 0);
  return [
    row({ scenario, measure: `upstream refresh calls (max of ${Q.storms} rounds)`, t: calls, unit: 'count', exact: 1, raw: rounds }),
    row({ scenario, measure: 'replays at the IdP, all rounds', t: replays, unit: 'count', exact: 0 }),
    row({ scenario, measure: `p99 wait, median of ${Q.storms} rounds`, t: median(rounds.fleet.map((r) => r.p99)), b: median(rounds.local.map((r) => r.p99)), unit: 'ms', baselineLabel: 'the same storm on one local daemon' }),
  ];
}

/**
 * F3: a forced refresh on one daemon, then how long until each of the two others serves the
 * new token (from when the refreshing daemon answered, i.e. had committed). The baseline is
 * a bare NOTIFY → LISTEN round trip on the same cluster.
 */
async function propagation(fleet, db, Q) {
  const waits = [];
  const tokenOf = async (d) => (await d.request('POST', '/v1/token', { account: 'work' })).json?.access_token;
  for (let r = 0; r < Q.propagations; r++) {
    const writer = fleet[r % 3];
    const refreshed = await writer.request('POST', '/v1/accounts/work/refresh');
    const at = nowMs();
    if (refreshed.status !== 200) throw new Error(`forced refresh: ${refreshed.status} ${refreshed.text}`);
    const fresh = await tokenOf(writer);
    await Promise.all(
      fleet
        .filter((d) => d !== writer)
        .map(async (d) => {
          while ((await tokenOf(d)) !== fresh) if (nowMs() - at > 10_000) throw new Error('a rotated token did not reach another daemon in 10 s');
          waits.push(nowMs() - at);
        }),
    );
  }
  const notify = await notifyRoundTrips(db, Q.notifies);
  return [
    row({
      scenario: 'F3. a rotated token reaches the other daemons',
      measure: `p50 of ${waits.length} (refreshing daemon answered → another serves it)`,
      t: median(waits),
      b: median(notify),
      unit: 'ms',
      baselineLabel: 'bare NOTIFY → LISTEN round trip, p50',
    }),
    row({
      scenario: 'F3. a rotated token reaches the other daemons',
      measure: `p99 of ${waits.length} (refreshing daemon answered → another serves it)`,
      t: quantile(waits, 0.99),
      b: quantile(notify, 0.99),
      unit: 'ms',
      below: 50,
      baselineLabel: 'bare NOTIFY → LISTEN round trip, p99',
      raw: { waits, notify },
    }),
  ];
}

/** The floor of F3: NOTIFY on one connection until LISTEN on another hears it, `n` times (ms). */
async function notifyRoundTrips(db, n) {
  const { default: pg } = await import('pg');
  const listener = new pg.Client({ connectionString: db.url });
  const notifier = new pg.Client({ connectionString: db.url });
  await Promise.all([listener.connect(), notifier.connect()]);
  try {
    await listener.query('LISTEN bench_roundtrip');
    const out = [];
    for (let i = 0; i < n; i++) {
      const heard = once(listener, 'notification');
      const t0 = nowMs();
      await notifier.query(`NOTIFY bench_roundtrip, '${i}'`);
      await heard;
      out.push(nowMs() - t0);
    }
    return out;
  } finally {
    await Promise.all([listener.end(), notifier.end()]);
  }
}

// ------------------------------------------------------------------ plumbing

/** `PUT /v1/accounts/work` on daemon `d`: the IdP's confidential client, no provider check. */
async function addAccount(d, issuer) {
  const r = await d.request('PUT', '/v1/accounts/work?check=false', { issuer, client_id: 'conf', client_secret: 'conf-secret', scopes: SCOPES });
  if (r.status !== 200 && r.status !== 201) throw new Error(`add account: ${r.status} ${r.text}`);
}

/** Wait until every daemon of `ds` serves the same token. */
async function agree(ds) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const seen = await Promise.all(ds.map(async (d) => (await d.request('POST', '/v1/token', { account: 'work' })).json?.access_token));
    if (seen[0] && seen.every((t) => t === seen[0])) return;
    if (Date.now() > deadline) throw new Error('the fleet daemons do not agree on a token');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const UNITS = {
  ms: (v) => `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v)} ms`,
  rps: (v) => `${Math.round(v).toLocaleString('en-US')} req/s`,
  count: (v) => String(v),
};

/** One row: figures formatted, the verdict against one target (max/min ratio, below an absolute, exact). */
function row({ scenario, measure, t, b, unit, max, min, below, exact, baselineLabel, raw }) {
  const fmt = UNITS[unit];
  const ratio = Number.isFinite(t) && Number.isFinite(b) && b ? t / b : NaN;
  const [target, pass] =
    max !== undefined ? [`≤ ${max.toFixed(2)}×`, ratio <= max]
    : min !== undefined ? [`≥ ${min.toFixed(2)}×`, ratio >= min]
    : below !== undefined ? [`< ${fmt(below)}`, t < below]
    : exact !== undefined ? [`exactly ${exact}`, t === exact]
    : ['–', undefined];
  return {
    scenario,
    measure,
    tokend: fmt(t),
    baseline: b === undefined ? '–' : `${fmt(b)}${baselineLabel ? ` (${baselineLabel})` : ''}`,
    ratio: Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : '–',
    target,
    pass,
    raw: { tokend: t, baseline: b, unit, ...(raw ? { detail: raw } : {}) },
  };
}

/** bench/idp.mjs as a child, when the runner gives none: issue, stats, reset over IPC. */
async function ownIdp() {
  const child = spawnTracked(process.execPath, [path.join(BENCH, 'idp.mjs')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const [{ issuer }] = await once(child, 'message');
  let seq = 0;
  const answers = new Map();
  child.on('message', (m) => answers.get(m.id)?.(m));
  const ask = (cmd) => new Promise((resolve) => answers.set(++seq, resolve) && child.send({ id: seq, cmd }));
  return { issuer, child, issue: async () => (await ask('issue')).tokens, stats: async () => (await ask('stats')).stats, reset: () => ask('reset') };
}

/**
 * A throwaway cluster with trust authentication on 127.0.0.1 and its own port (the default
 * configuration otherwise, fsync included: commits cost what they cost). The server will not
 * run as root: then it runs as the system user `tokendpg` (made once) through runuser.
 */
async function privateCluster() {
  const versions = fs.existsSync('/usr/lib/postgresql') ? fs.readdirSync('/usr/lib/postgresql').sort((a, b) => b - a) : [];
  const bin = process.env.PG_BIN ?? versions.map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => fs.existsSync(`${d}/pg_ctl`));
  if (!bin) throw new Error('PostgreSQL is not installed (no pg_ctl); set PG_BIN');
  const dir = tempDir('tkb-pg-');
  let as = [];
  if (process.getuid?.() === 0) {
    if (spawnSync('id', ['tokendpg']).status !== 0) spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'tokendpg']);
    const [uid, gid] = ['-u', '-g'].map((f) => Number(execFileSync('id', [f, 'tokendpg'], { encoding: 'utf8' })));
    fs.chownSync(dir, uid, gid);
    as = ['runuser', '-u', 'tokendpg', '--'];
  }
  const pgctl = (...args) => {
    const [cmd, ...rest] = [...as, `${bin}/pg_ctl`, '-D', `${dir}/data`, ...args];
    const r = spawnSync(cmd, rest, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0) throw new Error(`pg_ctl ${args[0]}: ${r.stderr || r.stdout}`);
  };
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = s.address();
      s.close(() => resolve(free));
    });
  });
  pgctl('initdb', '-o', '-A trust -U bench --no-sync');
  pgctl('start', '-w', '-l', `${dir}/server.log`, '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`);
  onExit(() => spawnSync(as[0] ?? `${bin}/pg_ctl`, [...as.slice(1), ...(as.length ? [`${bin}/pg_ctl`] : []), '-D', `${dir}/data`, '-m', 'immediate', 'stop'], { stdio: 'ignore' }));
  return { url: `postgresql://bench@127.0.0.1:${port}/postgres`, stop: async () => pgctl('stop', '-m', 'fast', '-w') };
}

// `node bench/fleet.mjs [--quick]`: the rows as a markdown table.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  installSignalHandlers();
  try {
    const rows = await run({ quick: process.argv.includes('--quick') });
    const cells = (r) => [r.scenario, r.measure, r.tokend, r.baseline, r.ratio, r.target, r.pass === undefined ? '–' : r.pass ? 'pass' : '**MISS**'];
    const lines = ['| scenario | measure | tokend | baseline | ratio | target | verdict |', '|---|---|---|---|---|---|---|', ...rows.map((r) => `| ${cells(r).join(' | ')} |`)];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    cleanupSync();
  }
}
