/**
 * A DPoP account in a fleet (docs/fleet.md, RFC 9449): the key is one of the account's
 * secrets, sealed in the shared PostgreSQL like the grant, so a second daemon refreshes the
 * bound grant with the same key, and the provider keeps binding its tokens to it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settled, startLogin } from './support/fake-as.js';
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
    const add = [
      'add',
      'work',
      '--issuer',
      idp.issuer,
      '--client-id',
      'cli',
      '--scope',
      'openid offline_access api',
      '--dpop',
      '--flow',
      'device',
    ];
    expect((await a.cli(add)).code).toBe(0);
    expect((await b.cli(add)).code).toBe(0);
    const jkt = (await a.request('GET', '/v1/accounts/work')).json.dpop.jkt;
    expect((await b.request('GET', '/v1/accounts/work')).json.dpop.jkt).toBe(jkt);

    const login = await startLogin(a, 'work', 'device');
    await idp.approveDevice(login.user_code);
    expect((await settled(a, login.id)).status).toBe('active');
    idp.resetStats();
    const r = await b.request('POST', '/v1/accounts/work/refresh');
    expect(r.status, r.text).toBe(200);
    expect(idp.stats.refreshErrors).toEqual([]);
    const tok = await fleet.tokensAgree();
    expect((await idp.introspect(tok)).cnf).toEqual({ jkt });
  });
});
