/**
 * Three daemons sharing one rotating grant through a real PostgreSQL, against the real
 * rotating IdP (docs/fleet.md): one refresh per grant in the whole fleet, no refresh token
 * ever sent twice, and every daemon serving the rotated token from memory.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, runCli, sleep, tempHome, writeSettings } from './support/daemon.js';
import { waitFor } from './support/fake-as.js';
import { burst, useFleet } from './support/fleet.js';
import { sharedPostgres, type TestPostgres } from './support/postgres.js';

describe('a fleet of three daemons on one grant', () => {
  let pg: TestPostgres;
  beforeAll(async () => {
    pg = await sharedPostgres();
  });
  afterAll(async () => {
    await pg?.close();
  });
  const ctx = useFleet({ db: () => pg, n: 3, idp: { accessTokenTtl: 3 }, settings: { device_poll_unit_ms: 10 } });

  it('serves 1000 concurrent requests over the three sockets on an expired grant with exactly one refresh', async () => {
    const before = await ctx.fleet.tokensAgree();
    await sleep(3_200); // expired on every daemon; no timer refreshed it
    ctx.idp.resetStats();
    // The new token lives long enough to serve all 1000, however slowly a loaded machine
    // answers them (a 3 s one can be past half its life before the last, and refreshed again).
    ctx.idp.setAccessTokenTtl(120);
    try {
      const results = await burst(
        ctx.fleet.daemons.map((d) => d.socket),
        1000,
      );
      expect(results.filter((r) => r.status !== 200).map((r) => r.text)).toEqual([]);
      const tokens = new Set(results.map((r) => r.json.access_token));
      expect(tokens.size).toBe(1);
      expect(tokens.has(before)).toBe(false);
      expect(ctx.idp.stats.tokenRequests).toBe(1);
      expect(ctx.idp.stats.refreshes).toBe(1);
      expect(ctx.idp.stats.replays).toBe(0);
    } finally {
      ctx.idp.setAccessTokenTtl(3);
    }
  });

  it('rotates through 50 forced refreshes alternating between the daemons without a single replay', async () => {
    ctx.idp.resetStats();
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const d = ctx.fleet.daemons[i % 3]!;
      const r = await d.request('POST', '/v1/accounts/work/refresh');
      expect(r.status, r.text).toBe(200);
      seen.add((await d.request('POST', '/v1/token', { account: 'work' })).json.access_token);
    }
    expect(seen.size).toBe(50);
    expect(ctx.idp.stats.refreshes).toBe(50);
    expect(ctx.idp.stats.replays).toBe(0);
    expect(ctx.idp.stats.refreshErrors).toEqual([]);
  });

  it('serves a token another daemon refreshed, from memory, without a refresh of its own', async () => {
    ctx.idp.resetStats();
    const r = await ctx.fleet.daemons[1]!.request('POST', '/v1/accounts/work/refresh');
    expect(r.status, r.text).toBe(200);
    const fresh = (await ctx.fleet.daemons[1]!.request('POST', '/v1/token', { account: 'work' })).json.access_token;
    const started = Date.now();
    expect(await ctx.fleet.tokensAgree('work', 2_000)).toBe(fresh);
    const took = Date.now() - started;
    expect(took).toBeLessThan(2_000);
    expect(ctx.idp.stats.refreshes).toBe(1);
    expect((await ctx.idp.introspect(fresh)).active).toBe(true);
  });

  it("a daemon restarted reads the fleet's tokens ahead from the database and serves them from memory", async () => {
    // A token that outlives a restart on a loaded machine (this fleet's usual 3 s ones may not):
    // the point is where the restarted daemon gets it, not how long it lives.
    ctx.idp.setAccessTokenTtl(120);
    try {
      expect((await ctx.fleet.daemons[0]!.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
      const want = await ctx.fleet.tokensAgree('work', 2_000);
      ctx.idp.resetStats();
      const d = ctx.fleet.daemons[2]!;
      await d.stop();
      await d.start();
      // Read ahead after start-up (Broker.readStoredTokens): no error, and the token is the fleet's.
      await sleep(500);
      expect((await d.request('POST', '/v1/token', { account: 'work' })).json.access_token).toBe(want);
      expect(d.logs).not.toMatch(/could not read the stored access tokens ahead/);
      expect(ctx.idp.stats.refreshes).toBe(0);
    } finally {
      ctx.idp.setAccessTokenTtl(3);
    }
  });

  it('installs a login finished on one daemon for the whole fleet; every daemon lists the login', async () => {
    const [d0, d1] = ctx.fleet.daemons;
    const started = await d0!.request('POST', '/v1/accounts/work/login', { flow: 'device' });
    expect(started.status, started.text).toBe(202);
    await ctx.idp.approveDevice(started.json.user_code);
    await waitFor(async () => (await d0!.request('GET', `/v1/logins/${started.json.id}`)).json?.status === 'active', 'the login to finish');
    const token = (await d0!.request('POST', '/v1/token', { account: 'work' })).json.access_token;
    expect(await ctx.fleet.tokensAgree()).toBe(token);
    // Its record (user code, status) is kept in the database, the fleet's: every daemon lists it (docs/fleet.md).
    expect((await d0!.request('GET', '/v1/logins')).json.logins.map((l: { id: string }) => l.id)).toContain(started.json.id);
    expect((await d1!.request('GET', '/v1/logins')).json.logins.map((l: { id: string }) => l.id)).toContain(started.json.id);
    expect((await d1!.request('GET', `/v1/logins/${started.json.id}`)).json).toMatchObject({ status: 'active' });
  });

  it("refuses an import the provider refuses and leaves the fleet's grant to the fleet; an account without one keeps none", async () => {
    const [d0] = ctx.fleet.daemons;
    // The grant's generation moves with the daemons' own timers (3 s tokens): its status and mark say enough.
    const row = () => pg.sql("SELECT status, in_flight_for IS NULL, last_error IS NULL FROM tokend.grants WHERE account = 'work'");
    expect(await row()).toBe('active|t|t\n');
    const imp = await d0!.cli(['import', 'work', '--refresh-token-stdin'], 'rt-nobody-issued');
    expect(imp.code).toBe(1);
    expect(imp.stderr).toContain('refused the tokens imported for "work"');
    expect(await row()).toBe('active|t|t\n');
    await ctx.fleet.tokensAgree();
    // The fleet's one audit log: another daemon reads the refusal this one recorded (once written: within its second).
    const [, d1] = ctx.fleet.daemons;
    const refused = await waitFor(
      async () =>
        (await d1!.request('GET', '/v1/audit?account=work&action=import')).json.entries.find(
          (e: { outcome: string }) => e.outcome === 'refused',
        ),
      "d0's audit row",
    );
    expect(refused).toMatchObject({ outcome: 'refused', code: 'import_refused', caller: { user_agent: 'tokend-cli/import' } });

    await ctx.fleet.addAccount(ctx.idp.issuer, 'fresh');
    expect((await d0!.cli(['import', 'fresh', '--refresh-token-stdin'], 'rt-nobody-issued')).code).toBe(1);
    expect(await pg.sql("SELECT count(*) FROM tokend.grants WHERE account = 'fresh'")).toBe('0\n');
    expect(ctx.idp.stats.replays).toBe(0);
  });

  it('keeps no token or secret in clear in the database, nor in any log', async () => {
    // The fleet's audit log: every daemon's rows, each saying which daemon served.
    expect(Number(await pg.sql('SELECT count(DISTINCT node) FROM tokend.audit'))).toBe(3);
    const dump = await pg.dump();
    expect(dump).toContain('COPY tokend.grants');
    // The grant's row: sealed bytes (format version 1, in COPY's escaped hex) where the tokens are.
    expect(dump).toMatch(/^work\t\\\\x01[0-9a-f]+\t\\\\x01/m);
    const secrets = [...ctx.idp.issuedRefreshTokens(), ...ctx.idp.issuedAccessTokens(), 'conf-secret', pg.password];
    expect(secrets.length).toBeGreaterThan(100);
    // Nor in the audit log any daemon answers.
    const logs = ctx.fleet.logs() + (await ctx.fleet.daemons[0]!.request('GET', '/v1/audit?limit=1000')).text;
    for (const s of secrets) {
      expect(dump.includes(s)).toBe(false);
      expect(logs.includes(s)).toBe(false);
    }
  });

  it("refuses to start a daemon whose key is not the fleet's, or that has none, and says so", async () => {
    const h = tempHome();
    try {
      const keyFile = path.join(h.home, 'other.key');
      fs.writeFileSync(keyFile, randomBytes(32), { mode: 0o600 });
      // This one has the password in its URL: it must not show anywhere either.
      const withPassword = pg.url.replace('fleet@', `fleet:${pg.password}@`);
      const env = { ...ctx.fleet.env(0), TOKEND_HOME: h.home, TOKEND_KEY_FILE: keyFile, TOKEND_DATABASE_URL: withPassword, PGPASSWORD: '' };
      const wrong = new DaemonProcess(h.home, env);
      const refused = await wrong.start().catch((e: Error) => e.message);
      expect(refused).toMatch(/the key .*other\.key does not open the fleet database postgresql:\/\/fleet@127\.0\.0\.1:\d+\/fleet/);
      expect(refused).not.toContain(pg.password);
      const doctor = await runCli(['doctor', '--json'], { env });
      expect(doctor.code).toBe(1);
      expect(doctor.stdout + doctor.stderr).not.toContain(pg.password);
      const checks = JSON.parse(doctor.stdout).checks as Array<{ id: string; status: string; message: string }>;
      expect(checks.find((c) => c.id === 'database')).toMatchObject({ status: 'ok' });
      expect(checks.find((c) => c.id === 'database-key')).toMatchObject({ status: 'fail' });

      const missing = path.join(h.home, 'no.key');
      const none = new DaemonProcess(h.home, { ...env, TOKEND_KEY_FILE: missing });
      await expect(none.start()).rejects.toThrow(/there is no key at .*no\.key/);
      expect(fs.existsSync(missing)).toBe(false); // a fleet's key is copied, never invented

      // Every daemon of a fleet reads the one key file: the OS keyring is refused, by name.
      writeSettings(h.home, { key_store: 'keyring' });
      const keyring = new DaemonProcess(h.home, env);
      await expect(keyring.start()).rejects.toThrow(/settings\.key_store \\?"keyring\\?" is for a daemon of its own/);
    } finally {
      h.cleanup();
    }
  });

  it("passes the doctor's database, schema and key checks on a daemon of the fleet; `tokend key` names its key file", async () => {
    const doctor = await runCli(['doctor', '--json'], { env: ctx.fleet.env(0) });
    const checks = JSON.parse(doctor.stdout).checks as Array<{ id: string; status: string; message: string }>;
    expect(checks.filter((c) => c.id.startsWith('database')).map((c) => [c.id, c.status])).toEqual([
      ['database', 'ok'],
      ['database-schema', 'ok'],
      ['database-key', 'ok'],
    ]);
    expect(doctor.stdout).not.toContain(pg.password);
    // `tokend key` names the fleet's key file; moving it into one host's keyring is refused.
    const where = await runCli(['key'], { env: ctx.fleet.env(0) });
    expect(where.code, where.stderr).toBe(0);
    expect(where.stdout).toContain(ctx.fleet.keyFile);
    const move = await runCli(['key', 'move', '--to', 'keyring'], { env: ctx.fleet.env(0) });
    expect(move.code).not.toBe(0);
    expect(move.stderr).toMatch(/fleet database: its key is the fleet's key file/);
  });

  it("leaves the fleet's grant alone on a daemon whose config names another client (rule 8)", async () => {
    const h = tempHome();
    const env = { ...ctx.fleet.env(0), TOKEND_HOME: h.home };
    const odd = new DaemonProcess(h.home, env);
    try {
      // Provisioned by hand (or by configuration management) with another client id.
      writeSettings(h.home, { proactive_refresh: false });
      const file = path.join(h.home, 'config', 'config.json');
      const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
      cfg.accounts.work = { issuer: ctx.idp.issuer, client_id: 'conf-post', scopes: ['openid', 'offline_access', 'api'] };
      fs.writeFileSync(file, JSON.stringify(cfg), { mode: 0o600 });
      const generation = await pg.sql("SELECT generation FROM tokend.grants WHERE account = 'work'");
      ctx.idp.resetStats();
      await odd.start();

      const tok = await odd.request('POST', '/v1/token', { account: 'work' });
      expect(tok.status).toBe(409);
      expect(tok.json.error.code).toBe('conflict');
      expect(tok.json.error.message).toMatch(
        /the fleet's grant of account "work" was issued by issuer .*, client conf, but this daemon's config names issuer .*, client conf-post/,
      );
      const login = await odd.request('POST', '/v1/accounts/work/login', { flow: 'device' });
      expect(login.status).toBe(409);
      const imp = await odd.cli(['import', 'work', '--refresh-token-stdin'], 'rt-from-elsewhere');
      expect(imp.code).not.toBe(0);
      const status = await odd.cli(['status', 'work', '--json']);
      expect(status.stdout).toContain('does not use, refresh or replace it');
      expect(odd.logs).toContain('this daemon does not use the fleet grant');

      // Nothing reached the provider, the grant did not move, and the fleet still serves it.
      expect(ctx.idp.stats.tokenRequests).toBe(0);
      expect(await pg.sql("SELECT generation FROM tokend.grants WHERE account = 'work'")).toBe(generation);
      await ctx.fleet.tokensAgree();
    } finally {
      await odd.stop('SIGKILL');
      h.cleanup();
    }
  });
});
