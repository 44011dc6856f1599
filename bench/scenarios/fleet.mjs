// 11. A fleet (docs/fleet.md): three daemons sharing one grant through a private PostgreSQL
// cluster (test/support/postgres.ts), against a daemon of its own (SQLite) in the same run:
// the hot path on a fleet daemon vs a local one, a refresh storm over three daemons (one
// upstream call, no replay), and how long a rotated token takes to reach the other daemons
// (p99) against a bare LISTEN/NOTIFY round trip on the same cluster.
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from '../lib/processes.mjs';
import { median, nowMs, quantile } from '../lib/stats.mjs';
import { supportModule, writeSettings } from '../lib/support.mjs';
import { row } from '../lib/table.mjs';

const SCOPES = ['openid', 'offline_access', 'api'];
const STORM = 1000;

export default {
  id: 11,
  title: 'fleet',
  async run(ctx) {
    const quick = ctx.rounds.loadRounds < 5;
    const Q = quick
      ? { rounds: 3, warmupMs: 300, durationMs: 1000, storms: 3, propagations: 15, notifies: 50 }
      : { rounds: 5, warmupMs: 500, durationMs: 1500, storms: 5, propagations: 40, notifies: 200 };
    const idp = await ctx.idp();
    const { startPostgres } = await supportModule('postgres');
    const db = await startPostgres();
    const env = { TOKEND_DATABASE_URL: db.url, PGPASSWORD: db.password };
    // Three fleet daemons on one database, and one daemon of its own. The first creates the
    // fleet's key; the others get a copy, as docs/fleet.md deploys them.
    const settings = { proactive_refresh: false, max_refreshes_per_minute: 100_000 };
    const fleet = [];
    const local = [];
    try {
      for (let i = 0; i < 3; i++) {
        const home = tempDir('tkb-f-');
        writeSettings(home, settings);
        if (i > 0) fs.copyFileSync(path.join(fleet[0].home, 'config', 'key'), path.join(home, 'config', 'key'));
        fleet.push(await ctx.startDaemon(home, { env }));
      }
      const localHome = tempDir('tkb-l-');
      writeSettings(localHome, settings);
      local.push(await ctx.startDaemon(localHome));
      for (const d of [...fleet, local[0]]) await addAccount(d, idp.issuer);
      for (const d of [fleet[0], local[0]]) {
        const r = await d.request('POST', '/v1/accounts/work/import', { refresh_token: (await idp.issue()).refresh_token });
        if (r.status !== 200) throw new Error(`import: ${r.status} ${r.text}`);
      }
      await agree(fleet);
      return {
        rows: [
          ...(await hotToken(ctx, fleet[1], local[0], Q)),
          ...(await storm(ctx, fleet, local[0], idp, Q)),
          ...(await propagation(fleet, db, Q)),
        ],
      };
    } finally {
      for (const d of [...fleet, ...local]) await d.stop();
      await db.close();
    }
  },
};

/** F1: the hot path of a fleet daemon is the local daemon's (memory only): p99 and throughput, 16 connections. */
async function hotToken(ctx, fleetDaemon, local, Q) {
  const body = JSON.stringify({ account: 'work' });
  const res = { fleet: [], local: [] };
  for (let r = 0; r < Q.rounds; r++) {
    for (const who of r % 2 ? ['local', 'fleet'] : ['fleet', 'local']) {
      const d = who === 'fleet' ? fleetDaemon : local;
      const out = await ctx.runLoad({
        socket: d.socket,
        path: '/v1/token',
        bodies: [body],
        mode: 'duration',
        connections: 16,
        warmupMs: Q.warmupMs,
        durationMs: Q.durationMs,
      });
      if (out.ok !== out.requests || out.errors)
        throw new Error(`hot token on the ${who} daemon: ${JSON.stringify(out.statuses)}, ${out.errors} socket errors`);
      res[who].push(out);
    }
  }
  const m = (who, k) => median(res[who].map((o) => o[k]));
  const scenario = '11. fleet: hot token, fleet daemon vs local daemon, 16 conn';
  return [
    row({
      scenario,
      measure: `p99 latency, median of ${Q.rounds} rounds`,
      t: m('fleet', 'p99'),
      b: m('local', 'p99'),
      unit: 'ms',
      kind: 'max',
      limit: 1.25,
    }),
    row({ scenario, measure: 'throughput', t: m('fleet', 'rps'), b: m('local', 'rps'), unit: 'rps', kind: 'min', limit: 0.8 }),
  ];
}

/**
 * F2: every daemon's cached token dropped (`/v1/credential/reject`), then 1000 concurrent
 * requests spread over the three sockets: one refresh at the IdP for the whole fleet. The p99
 * wait is compared with the same storm on the local daemon.
 */
async function storm(ctx, fleet, local, idp, Q) {
  const body = JSON.stringify({ account: 'work' });
  const burst = (d, n) =>
    ctx.runLoad({ socket: d.socket, path: '/v1/token', bodies: [body], mode: 'burst', connections: n, capture: 'access_token' });
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
  const scenario = `11. fleet: refresh storm: ${STORM} concurrent requests over 3 fleet daemons, tokens dropped`;
  const calls = Math.max(...rounds.fleet.map((r) => r.calls));
  const replays = rounds.fleet.reduce((n, r) => n + r.replays, 0);
  return [
    row({ scenario, measure: `upstream refresh calls (max of ${Q.storms} rounds)`, t: calls, unit: 'count', kind: 'exact', limit: 1 }),
    row({ scenario, measure: 'replays at the IdP, all rounds', t: replays, unit: 'count', kind: 'exact', limit: 0 }),
    row({
      scenario,
      measure: `p99 wait, median of ${Q.storms} rounds`,
      t: median(rounds.fleet.map((r) => r.p99)),
      b: median(rounds.local.map((r) => r.p99)),
      unit: 'ms',
      baselineLabel: 'the same storm on one local daemon',
    }),
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
          while ((await tokenOf(d)) !== fresh)
            if (nowMs() - at > 10_000) throw new Error('a rotated token did not reach another daemon in 10 s');
          waits.push(nowMs() - at);
        }),
    );
  }
  const notify = await notifyRoundTrips(db, Q.notifies);
  return [
    row({
      scenario: '11. fleet: a rotated token reaches the other daemons',
      measure: `p50 of ${waits.length} (refreshing daemon answered → another serves it)`,
      t: median(waits),
      b: median(notify),
      unit: 'ms',
      baselineLabel: 'bare NOTIFY → LISTEN round trip, p50',
    }),
    row({
      scenario: '11. fleet: a rotated token reaches the other daemons',
      measure: `p99 of ${waits.length} (refreshing daemon answered → another serves it)`,
      t: quantile(waits, 0.99),
      b: quantile(notify, 0.99),
      unit: 'ms',
      kind: 'abs',
      limit: 50,
      baselineLabel: 'bare NOTIFY → LISTEN round trip, p99',
    }),
  ];
}

/** The floor of F3: NOTIFY on one connection until LISTEN on another hears it, `n` times (ms). */
async function notifyRoundTrips(db, n) {
  const { default: pg } = await import('pg');
  // pg lets a connection string's (absent) password override the one given beside it.
  const url = new URL(db.url);
  url.password = db.password;
  const listener = new pg.Client({ connectionString: url.href });
  const notifier = new pg.Client({ connectionString: url.href });
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
  const r = await d.request('PUT', '/v1/accounts/work?check=false', {
    issuer,
    client_id: 'conf',
    client_secret: 'conf-secret',
    scopes: SCOPES,
  });
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
