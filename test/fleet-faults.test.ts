/**
 * A fleet when things break (docs/fleet.md, failure modes), with real daemons, a real
 * PostgreSQL and the real rotating IdP: the lock holder killed mid-refresh (before the
 * provider read its request, and in the crash window after the provider rotated), the
 * database stopped under load, and proactive timers on three daemons.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, sleep, tempHome, type HttpResult, postConfGrant } from './support/daemon.js';
import { waitFor } from './support/fake-as.js';
import { startFleet, useFleet } from './support/fleet.js';
import { startIdp, type TestIdp } from './support/idp.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { FLEET_SCHEMA_VERSION } from '../src/protocol/fleet.js';

let db: TestPostgres;
beforeAll(async () => {
  db = await startPostgres();
});
afterAll(async () => {
  await db?.close();
});

/** A forced refresh as a careful client makes it: a 503 is tried again after its retry_after. */
async function refreshRetrying(d: DaemonProcess, tries = 10): Promise<{ last: HttpResult; retried: number }> {
  for (let i = 0; ; i++) {
    const r = await d.request('POST', '/v1/accounts/work/refresh');
    if (r.status !== 503 || i >= tries) return { last: r, retried: i };
    await sleep(Math.min(2_000, (Number(r.json?.error?.retry_after) || 1) * 1000));
  }
}

/**
 * Start a forced refresh on `d` that the IdP holds `ms` before reading it; resolved once the
 * request has reached the IdP, so `d` holds the grant's lock and marked it in flight.
 */
async function refreshHeldAtIdp(d: DaemonProcess, idp: TestIdp, ms: number): Promise<{ answer: Promise<HttpResult> }> {
  idp.resetStats();
  idp.setFault({ kind: 'delay', ms, times: 1 });
  const answer = d.request('POST', '/v1/accounts/work/refresh');
  answer.catch(() => undefined); // a killed daemon never answers
  await waitFor(() => idp.stats.tokenRequests >= 1, 'the refresh to reach the IdP');
  return { answer };
}

describe('the daemon holding the lock is killed mid-refresh', () => {
  const ctx = useFleet({ db: () => db, n: 2, idp: { accessTokenTtl: 60 } });

  it('before the provider read its request: another daemon completes the next refresh, with no replay', async () => {
    const [d0, d1] = ctx.fleet.daemons as [DaemonProcess, DaemonProcess];
    await refreshHeldAtIdp(d0, ctx.idp, 2_000);
    // d0 marked the grant in flight, durably, before its request left.
    expect(await db.sql("SELECT in_flight_since IS NOT NULL AND in_flight_by IS NOT NULL FROM tokend.grants WHERE account = 'work'")).toBe(
      't\n',
    );
    await d0.stop('SIGKILL');

    const { last } = await refreshRetrying(d1);
    expect(last.status, last.text).toBe(200);
    // The delay fault holds a request before the provider reads it. d0's connection died with
    // d0, so the provider never read that request and never rotated: d1's use of the same
    // refresh token is its first. The one refresh at the IdP is d1's, and nothing was replayed.
    expect(ctx.idp.stats.refreshes).toBe(1);
    expect(ctx.idp.stats.replays).toBe(0);
    await d0.start();
    expect(await ctx.fleet.tokensAgree()).toBe((await d1.request('POST', '/v1/token', { account: 'work' })).json.access_token);
  });

  it('in the crash window (the provider rotated, the daemon died before committing): one replay, and the next daemon says why', async () => {
    const [d0, d1] = ctx.fleet.daemons as [DaemonProcess, DaemonProcess];
    await refreshHeldAtIdp(d0, ctx.idp, 1_000);
    // Hold the grant's row, so d0's commit waits while the provider answers and rotates.
    const blocker = new pg.Client({ host: '127.0.0.1', port: db.port, user: 'fleet', database: db.database, password: db.password });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query("SELECT 1 FROM tokend.grants WHERE account = 'work' FOR UPDATE");
      await waitFor(() => ctx.idp.stats.refreshes === 1, 'the provider to rotate d0 refresh token');
      await sleep(300); // d0 has the answer and waits on its commit
      // d0's host dies: the process, and with it every connection it had.
      const pid = d0.child!.pid!;
      await d0.stop('SIGKILL');
      await db.sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'tokend %:${pid}:%'`);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      await blocker.end();
    }
    // The rotation d0 obtained is lost with it; the stored refresh token is the one the
    // provider just rotated. Sending it again is the crash window's one replay: the provider
    // revokes the whole grant (PROTOCOLS of oidc-provider: reuse detection), and d1 says that
    // an interrupted refresh of another daemon may have spent the token.
    const { last } = await refreshRetrying(d1);
    expect(last.status, last.text).toBe(409);
    expect(last.json.error.code).toBe('reauth_required');
    expect(last.json.error.message).toMatch(/a refresh by another daemon of the fleet \(.+\) interrupted at \S+ .*may have spent it/);
    expect(ctx.idp.stats.refreshes).toBe(1);
    expect(ctx.idp.stats.replays).toBe(1);
    // A new grant heals the whole ctx.fleet.
    await d0.start();
    await postConfGrant(d1, ctx.idp);
    await ctx.fleet.tokensAgree();
  });
});

describe('PostgreSQL stopped under load', () => {
  const ctx = useFleet({
    db: () => db,
    n: 3,
    // Long enough that the rotation d0 held is still the token served once the database is
    // back, however long a loaded machine takes to get there (30 s ones were refreshed again).
    idp: { accessTokenTtl: 120 },
    settings: { backoff_initial_ms: 200, backoff_max_ms: 1_000 },
    database: 'outage',
  });

  it('serves cached tokens through the outage, commits a rotation it held, refreshes again after, and loses nothing', async () => {
    const [d0, d1, d2] = ctx.fleet.daemons as [DaemonProcess, DaemonProcess, DaemonProcess];
    // Load on every daemon for the whole test.
    const statuses: number[] = [];
    let loading = true;
    const load = (async () => {
      while (loading) {
        const rs = await Promise.all(
          ctx.fleet.daemons.map((d) => d.request('POST', '/v1/token', { account: 'work' }).catch(() => ({ status: 0 }))),
        );
        statuses.push(...rs.map((r) => r.status));
        await sleep(25);
      }
    })();

    // A refresh is on its way to the provider when the database goes.
    const held = (await refreshHeldAtIdp(d0, ctx.idp, 1_500)).answer;
    await db.stop();
    const stopped = Date.now();
    // The provider rotated; d0 cannot commit, keeps the rotation in memory and serves it.
    expect((await held).status).toBe(200);
    const rotated = (await d0.request('POST', '/v1/token', { account: 'work' })).json.access_token;
    expect(d0.logs).toContain('it is kept in memory and committed as soon as the database is back');

    // Refreshes fail as transient while the database is away.
    const down = await d1.request('POST', '/v1/accounts/work/refresh');
    expect(down.status, down.text).toBe(503);
    expect(down.json.error.code).toBe('upstream_unavailable');
    expect(down.json.error.retry_after).toBeGreaterThan(0);
    expect(down.json.error.message).toContain('postgresql://fleet@127.0.0.1');
    expect(down.text).not.toContain(db.password);
    // The accounts still show, from memory; a daemon that starts now cannot, and says why.
    const listed = await d2.cli(['list', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('"active"');
    const lateHome = tempHome();
    try {
      const late = new DaemonProcess(lateHome.home, { ...ctx.fleet.env(2), TOKEND_HOME: lateHome.home });
      await expect(late.start()).rejects.toThrow(/cannot reach the fleet database postgresql:\/\/fleet@127\.0\.0\.1:\d+\/outage/);
    } finally {
      lateHome.cleanup();
    }
    const doctor = await d1.cli(['doctor', '--json']);
    const check = (JSON.parse(doctor.stdout).checks as Array<{ id: string; status: string; fix?: string }>).find(
      (c) => c.id === 'database',
    );
    expect(check).toMatchObject({
      status: 'fail',
      fix: expect.stringMatching(/^pg_isready -d 'postgresql:\/\/fleet@127\.0\.0\.1:\d+\/outage'$/),
    });

    // An outage of at least 4 s: the load above runs through it, and each account's backoff
    // (200 ms doubling to its 1 s maximum) has come round several times before the database is back.
    await sleep(Math.max(0, 4_000 - (Date.now() - stopped)));
    await db.start();

    // d0 commits what it held; the others reconnect, reconcile and serve it.
    expect(await ctx.fleet.tokensAgree('work', 15_000)).toBe(rotated);
    // Refreshes resume, from the committed refresh token: no replay anywhere.
    const again = await refreshRetrying(d2);
    expect(again.last.status, again.last.text).toBe(200);
    loading = false;
    await load;
    expect(statuses.length).toBeGreaterThan(100);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(ctx.idp.stats.refreshes).toBe(2);
    expect(ctx.idp.stats.replays).toBe(0);
    expect(ctx.idp.stats.refreshErrors).toEqual([]);
    // No account or grant lost, on any daemon.
    for (const d of ctx.fleet.daemons) {
      const list = await d.cli(['list', '--json']);
      expect(JSON.parse(list.stdout).accounts ?? JSON.parse(list.stdout)).toEqual(
        expect.arrayContaining([expect.objectContaining({ name: 'work', status: 'active' })]),
      );
    }
    expect(await db.sql("SELECT generation FROM tokend.grants WHERE account = 'work'", 'outage')).toMatch(/^\d+\n$/);
    expect(d0.logs).toContain('the rotated grant held in memory is committed');
    for (const d of ctx.fleet.daemons) expect(d.logs).not.toContain(db.password);
  });
});

describe('three daemons starting at once on a new database, with proactive refresh', () => {
  it('create the schema once, and their timers cost one upstream call per period, not one per daemon', async () => {
    const idp = await startIdp({ accessTokenTtl: 4 });
    const url = await db.createDatabase('timers');
    const fleet = await startFleet(db, 3, { proactive_refresh: true, max_refreshes_per_minute: 1000 }, { url, together: true });
    try {
      expect(await db.sql('SELECT schema_version, key_check IS NOT NULL FROM tokend.meta', 'timers')).toBe(`${FLEET_SCHEMA_VERSION}|t\n`);
      await fleet.addAccount(idp.issuer);
      await postConfGrant(fleet.daemons[0]!, idp);
      await fleet.tokensAgree();
      idp.resetStats();
      // Each daemon's timer fires 3 s into every 4 s token (the lead is ¼ of its lifetime).
      await sleep(9_500);
      expect(idp.stats.refreshes).toBeGreaterThanOrEqual(2);
      expect(idp.stats.refreshes).toBeLessThanOrEqual(4);
      expect(idp.stats.replays).toBe(0);
      expect(idp.stats.refreshErrors).toEqual([]);
      await fleet.tokensAgree();
    } finally {
      await fleet.cleanup();
      await idp.close();
    }
  });
});
