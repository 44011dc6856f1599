/**
 * A DPoP account in a fleet (docs/fleet.md, RFC 9449): the key is one of the account's
 * secrets, sealed in the shared PostgreSQL like the grant, so a second daemon refreshes the
 * bound grant with the same key, and the provider keeps binding its tokens to it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settled } from './support/fake-as.js';
import { writeSettings } from './support/daemon.js';
import { deviceLogin, dpopAccount, putDpopAccount } from './support/dpop-login.js';
import { startFleet, type TestFleet } from './support/fleet.js';
import { startIdp, type TestIdp } from './support/idp.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';

describe('a DPoP account shared by two daemons', () => {
  let pg: TestPostgres;
  let idp: TestIdp;
  let fleet: TestFleet;
  beforeAll(async () => {
    pg = await startPostgres();
    idp = await startIdp({ accessTokenTtl: 60 });
    fleet = await startFleet(pg, 2, { proactive_refresh: false, device_poll_unit_ms: 10 });
  });
  afterAll(async () => {
    await fleet?.cleanup();
    await idp?.close();
    await pg?.close();
  });

  it('the second daemon refreshes the first one’s bound grant with the same key', async () => {
    const [a, b] = fleet.daemons as [TestFleet['daemons'][0], TestFleet['daemons'][0]];
    await putDpopAccount(a, idp.issuer, 'work');
    await putDpopAccount(b, idp.issuer, 'work');
    const jkt = (await a.request('GET', '/v1/accounts/work')).json.dpop.jkt;
    expect((await b.request('GET', '/v1/accounts/work')).json.dpop.jkt).toBe(jkt);

    await deviceLogin(a, idp, 'work');
    idp.resetStats();
    const r = await b.request('POST', '/v1/accounts/work/refresh');
    expect(r.status, r.text).toBe(200);
    expect(idp.stats.refreshErrors).toEqual([]);
    const tok = await fleet.tokensAgree();
    expect((await idp.introspect(tok)).cnf).toEqual({ jkt });
  });

  it('two daemons making a key at once for a hand-written DPoP account end with one key, the one the grant names', async () => {
    const [a, b] = fleet.daemons as [TestFleet['daemons'][0], TestFleet['daemons'][0]];
    const names = ['hand1', 'hand2', 'hand3', 'hand4'];
    // config.json written by hand (configuration management) on both hosts: dpop on, no key anywhere yet.
    await Promise.all([a, b].map((d) => d.stop()));
    for (const d of [a, b]) {
      const file = path.join(d.home, 'config', 'config.json');
      const settings = JSON.parse(fs.readFileSync(file, 'utf8')).settings;
      const account = dpopAccount(idp.issuer);
      writeSettings(d.home, settings, Object.fromEntries(names.map((n) => [n, account])));
    }
    await Promise.all([a, b].map((d) => d.start()));
    // Both daemons start a login of each account at once: each makes a key where none is stored.
    const started = await Promise.all(
      names.map((n) => Promise.all([a, b].map((d) => d.request('POST', `/v1/accounts/${n}/login`, { flow: 'device' })))),
    );
    for (const [i, n] of names.entries()) {
      const [onA, onB] = started[i]!;
      expect(onA.status, onA.text).toBe(202);
      expect(onB.status, onB.text).toBe(202);
      const jkt = (await a.request('GET', `/v1/accounts/${n}`)).json.dpop.jkt;
      expect((await b.request('GET', `/v1/accounts/${n}`)).json.dpop.jkt).toBe(jkt);
      // A's login signed its proofs with the key it found or made: the one stored, which the grant names.
      await idp.approveDevice(onA.json.user_code);
      expect((await settled(a, onA.json.id)).status).toBe('active');
      const bound = JSON.parse(await pg.sql(`SELECT bound_to FROM tokend.grants WHERE account = '${n}'`));
      expect(bound.jkt).toBe(jkt);
      idp.resetStats();
      const r = await b.request('POST', `/v1/accounts/${n}/refresh`);
      expect(r.status, r.text).toBe(200);
      expect(idp.stats.refreshErrors).toEqual([]);
      expect((await idp.introspect(await fleet.tokensAgree(n))).cnf).toEqual({ jkt });
    }
  });
});
