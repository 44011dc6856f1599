/**
 * Logins in a fleet (docs/fleet.md "Logins in a fleet"): two real daemons on one real
 * PostgreSQL, against the real oidc-provider. A login started on one daemon is listed on the
 * other, completed by a callback handed to the other (one code exchange, under the login's
 * lease), taken up by the other when its polling daemon is killed, and its status changes
 * reach the event subscribers of both.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settled, tapEvents, waitFor } from './support/fake-as.js';
import { useFleet } from './support/fleet.js';
import { TEST_APP_REDIRECT_URI } from './support/idp.js';
import { sharedPostgres, type TestPostgres } from './support/postgres.js';

describe('logins in a fleet of two daemons', () => {
  let pg: TestPostgres;
  beforeAll(async () => {
    pg = await sharedPostgres();
  });
  afterAll(async () => {
    await pg?.close();
  });
  const ctx = useFleet({ db: () => pg, n: 2, settings: { device_poll_unit_ms: 10 } });
  const a = () => ctx.fleet.daemons[0]!;
  const b = () => ctx.fleet.daemons[1]!;

  /** Account `desk` (a deep-link redirect) on both daemons; its client secret given on A only, as docs/fleet.md deploys it. */
  async function addDeskAccount(): Promise<void> {
    const identity = {
      issuer: ctx.idp.issuer,
      client_id: 'conf',
      scopes: ['openid', 'offline_access', 'api'],
      redirect_uri: TEST_APP_REDIRECT_URI,
    };
    expect((await a().request('PUT', '/v1/accounts/desk', { ...identity, client_secret: 'conf-secret' })).status).toBe(201);
    expect((await b().request('PUT', '/v1/accounts/desk', identity)).status).toBe(201);
  }

  it("lists a login started on A on B by task, and B's event subscribers hear its status changes", async () => {
    const tap = await tapEvents(b().socket);
    try {
      const started = await a().request('POST', '/v1/accounts/work/login', { flow: 'device', task: 'fleet-task-1' });
      expect(started.status, started.text).toBe(202);
      const login = started.json;
      const listed = await b().request('GET', '/v1/logins?task=fleet-task-1');
      expect(listed.status).toBe(200);
      expect(listed.json.logins).toMatchObject([{ id: login.id, account: 'work', task: 'fleet-task-1', status: 'pending' }]);
      expect((await b().request('GET', `/v1/logins/${login.id}`)).json).toMatchObject({ id: login.id, user_code: login.user_code });
      expect((await b().request('GET', '/v1/logins?account=work&status=pending')).json.logins.map((l: { id: string }) => l.id)).toContain(
        login.id,
      );
      const pending = await waitFor(
        () => tap.events.find((e) => e.type === 'login.pending' && e.login_id === login.id),
        'login.pending on B',
      );
      expect(pending).toMatchObject({ account: 'work', flow: 'device', task: 'fleet-task-1', user_code: login.user_code });

      await ctx.idp.approveDevice(login.user_code);
      expect(await settled(a(), login.id)).toMatchObject({ status: 'active' });
      const done = await waitFor(
        () => tap.events.find((e) => e.type === 'login.succeeded' && e.login_id === login.id),
        'login.succeeded on B',
      );
      expect(done).toMatchObject({ account: 'work', status: 'active', task: 'fleet-task-1' });
      // Each status once, though the database announces every write.
      expect(tap.events.filter((e) => e.login_id === login.id).map((e) => e.type)).toEqual(['login.pending', 'login.succeeded']);
      await ctx.fleet.tokensAgree();
    } finally {
      tap.close();
    }
  });

  it('completes a deep-link login started on A from its callback handed to B, with one code exchange; both serve its token', async () => {
    await addDeskAccount();
    const login = (await a().request('POST', '/v1/accounts/desk/login', { flow: 'browser', task: 'deep' })).json;
    expect(login.status).toBe('pending');
    const callback = await ctx.idp.authorize(login.authorization_url);
    expect(callback.protocol).toBe('com.example.tokend:');
    ctx.idp.resetStats();
    // The same callback to both daemons at once: one exchanges the code, the other does not.
    const [onB, onA] = await Promise.all([
      b().request('POST', '/v1/logins/callback', { url: callback.href }),
      a().request('POST', `/v1/logins/${login.id}/callback`, { url: callback.href }),
    ]);
    // The one that waited answers the login as it is (pending, or active once done) or 409 `being completed`.
    for (const r of [onA, onB]) expect([200, 409], r.text).toContain(r.status);
    expect([onA, onB].some((r) => r.status === 200 && r.json.status === 'active')).toBe(true);
    expect(ctx.idp.stats.grants.authorization_code).toBe(1);
    expect(ctx.idp.stats.replays).toBe(0);
    // A, which started it, sees it active too.
    expect(await settled(a(), login.id)).toMatchObject({ status: 'active', task: 'deep', authorization_url: null });
    expect(await settled(b(), login.id)).toMatchObject({ status: 'active' });
    const token = await ctx.fleet.tokensAgree('desk');
    expect((await ctx.idp.introspect(token)).active).toBe(true);
    // Handed over again, to either daemon: it is over.
    const again = await b().request('POST', '/v1/logins/callback', { url: callback.href });
    expect(again.status).toBe(409);
    expect(again.json.error.message).toContain('active');
  });

  it('completes a deep-link login started on A by id on B (POST /v1/logins/:id/callback)', async () => {
    const login = (await a().request('POST', '/v1/accounts/desk/login', { flow: 'browser' })).json;
    const callback = await ctx.idp.authorize(login.authorization_url);
    ctx.idp.resetStats();
    const done = await b().request('POST', `/v1/logins/${login.id}/callback`, { url: callback.href });
    expect(done.status, done.text).toBe(200);
    expect(done.json).toMatchObject({ id: login.id, status: 'active' });
    expect(ctx.idp.stats.grants.authorization_code).toBe(1);
    await waitFor(
      async () => ((await a().request('GET', `/v1/logins/${login.id}`)).json.status === 'active' ? true : undefined),
      'A to see it',
    );
    await ctx.fleet.tokensAgree('desk');
  });

  it("hands a loopback login's redirect, caught by an app, to B: B completes it and A stops listening", async () => {
    const login = (await a().request('POST', '/v1/accounts/work/login', { flow: 'browser' })).json;
    const back = await ctx.idp.authorize(login.authorization_url);
    expect(back.hostname).toBe('127.0.0.1');
    const done = await b().request('POST', '/v1/logins/callback', { url: back.href });
    expect(done.status, done.text).toBe(200);
    expect(done.json).toMatchObject({ id: login.id, status: 'active' });
    expect(await settled(a(), login.id)).toMatchObject({ status: 'active' });
    // A heard it ended: nothing listens on its loopback port any more.
    await waitFor(
      async () =>
        (await fetch(back).then(
          () => false,
          () => true,
        ))
          ? true
          : undefined,
      "A's listener to close",
    );
    await ctx.fleet.tokensAgree();
  });

  it('a device login whose daemon is killed is polled by the other and ends active once approved', async () => {
    const tap = await tapEvents(b().socket);
    try {
      const login = (await a().request('POST', '/v1/accounts/work/login', { flow: 'device', task: 'killed' })).json;
      expect(login.status).toBe('pending');
      await a().stop('SIGKILL');
      await ctx.idp.approveDevice(login.user_code);
      expect(await settled(b(), login.id, 30_000)).toMatchObject({ status: 'active', task: 'killed', error: null });
      expect(b().logs).toContain('taking up a device login nobody polls');
      const tok = await b().request('POST', '/v1/token', { account: 'work' });
      expect(tok.status).toBe(200);
      expect((await ctx.idp.introspect(tok.json.access_token)).active).toBe(true);
      await waitFor(() => tap.events.find((e) => e.type === 'login.succeeded' && e.login_id === login.id), 'login.succeeded on B');
    } finally {
      tap.close();
      await a().start();
    }
    // A, back, finds its login ended (B finished it) and takes nothing up.
    await ctx.fleet.tokensAgree();
  });
});
