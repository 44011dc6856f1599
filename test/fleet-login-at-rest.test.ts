/**
 * A fleet's logins at rest (docs/fleet.md): a browser login on a daemon whose store is a real
 * PostgreSQL keeps its state, PKCE verifier and authorization URL sealed in the database
 * while it is pending, and their row is gone once it ends. An older fleet schema loses
 * every authorization URL it kept in clear when a daemon upgrades it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLEET_SCHEMA_VERSION } from '../src/protocol/fleet.js';
import { settled } from './support/fake-as.js';
import { useFleet } from './support/fleet.js';
import { sharedPostgres, type TestPostgres } from './support/postgres.js';

describe("a fleet daemon's browser login at rest", () => {
  let pg: TestPostgres;
  beforeAll(async () => {
    pg = await sharedPostgres();
  });
  afterAll(async () => {
    await pg?.close();
  });
  const ctx = useFleet({ db: () => pg, n: 1 });

  it('stores the secrets of a pending login only sealed, and removes them when it ends', async () => {
    const [d] = ctx.fleet.daemons;
    const started = await d!.request('POST', '/v1/accounts/work/login', { flow: 'browser' });
    expect(started.status, started.text).toBe(202);
    const url = new URL(started.json.authorization_url);
    const state = url.searchParams.get('state')!;
    const clear = [state, encodeURIComponent(state), url.search.slice(1, 60)];

    const pending = await pg.dump();
    expect(pending).toContain('COPY tokend.login_secrets');
    expect(await pg.sql(`SELECT count(*) FROM tokend.login_secrets WHERE login_id = '${started.json.id}'`)).toBe('1\n');
    for (const s of clear) expect(pending.includes(s), s).toBe(false);
    // Read back from the database: the pending login still shows its URL.
    expect((await d!.request('GET', '/v1/logins')).json.logins[0].authorization_url).toBe(url.href);

    expect((await fetch(await ctx.idp.authorize(url))).status).toBe(200);
    expect((await settled(d!, started.json.id)).status).toBe('active');
    expect(await pg.sql('SELECT count(*) FROM tokend.login_secrets')).toBe('0\n');
    expect(await pg.sql(`SELECT status FROM tokend.logins WHERE id = '${started.json.id}'`)).toBe('active\n');
    const after = await pg.dump();
    for (const s of clear) expect(after.includes(s), s).toBe(false);
  });

  it('an upgrade from the schema before sealed logins drops the authorization URLs kept in clear', async () => {
    const [d] = ctx.fleet.daemons;
    await d!.stop('SIGTERM');
    await pg.sql(`
      DROP TABLE tokend.login_secrets;
      -- Back to schema 2 (before sealed logins), undoing the later steps too (state hashes, audit outcomes, grant times).
      ALTER TABLE tokend.grants DROP COLUMN granted_at, DROP COLUMN refreshed_at;
      ALTER TABLE tokend.logins DROP COLUMN state_hash;
      DROP INDEX tokend.audit_at;
      ALTER TABLE tokend.audit DROP COLUMN outcome, DROP COLUMN code, DROP COLUMN task, DROP COLUMN detail;
      UPDATE tokend.meta SET schema_version = 2;
      -- Recent: the fleet's finished logins are pruned by any daemon after login_retention_hours.
      INSERT INTO tokend.logins (id, node, account, flow, status, data, created_at, updated_at)
      VALUES ('old', 'n', 'work', 'browser', 'failed', '{"authorization_url":"https://id.example/auth?state=OLD-STATE-marker","error":null}', ${Date.now()}, ${Date.now()});`);
    await d!.start();
    expect(await pg.sql("SELECT data FROM tokend.logins WHERE id = 'old'")).toBe('{"error": null}\n');
    expect(await pg.sql('SELECT schema_version FROM tokend.meta')).toBe(`${FLEET_SCHEMA_VERSION}\n`);
  });
});
