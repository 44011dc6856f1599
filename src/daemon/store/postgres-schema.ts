/**
 * A fleet's schema in PostgreSQL: versioned migrations that run once, under an advisory
 * lock, by whichever daemon starts first, and the sealed key check that tells every later
 * daemon whether its key is the fleet's. Everything lives in the `tokend` schema.
 */
import type { PoolClient } from 'pg';
import { FLEET_SCHEMA as S, FLEET_SCHEMA_VERSION, KEY_CHECK_AAD, KEY_CHECK_TEXT } from '../../protocol/fleet.js';
import { isMissingKey, loadKey, loadOrCreateKey, open, seal } from './crypto.js';
import { StoreError } from './errors.js';

/**
 * One step per release that changed the schema. Append only: a shipped step is never
 * edited, because fleets have run it. The tables mirror the SQLite store's (migrations.ts);
 * tokens and secrets are sealed `bytea`, never text. `in_flight_by` names the daemon whose
 * refresh is in flight; logins and audit rows say which daemon (`node`) wrote them.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE ${S}.grants (
    account            text PRIMARY KEY,
    refresh_token      bytea,
    access_token       bytea,
    token_type         text,
    expires_at         bigint,
    obtained_at        bigint,
    scope              text,
    generation         bigint NOT NULL,
    status             text NOT NULL CHECK (status IN ('active', 'reauth_required')),
    in_flight_since    bigint,
    in_flight_by       text,
    last_error         text,
    updated_at         bigint NOT NULL,
    bound_to           text,
    refresh_expires_at bigint
  );
  CREATE TABLE ${S}.secrets (
    account    text,
    name       text,
    value      bytea NOT NULL,
    updated_at bigint,
    PRIMARY KEY (account, name)
  );
  CREATE TABLE ${S}.audit (
    id      bigserial PRIMARY KEY,
    at      bigint NOT NULL,
    account text NOT NULL,
    client  text NOT NULL,
    action  text NOT NULL,
    node    text NOT NULL
  );
  CREATE INDEX audit_account_at ON ${S}.audit (account, at);
  CREATE TABLE ${S}.logins (
    id         text PRIMARY KEY,
    node       text NOT NULL,
    account    text NOT NULL,
    flow       text NOT NULL,
    status     text NOT NULL,
    data       text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
  );
  CREATE INDEX logins_node_account_updated ON ${S}.logins (node, account, updated_at);
  `,
  // Rule 5: an import's in-flight mark says it is an import's (Store.markImport).
  `ALTER TABLE ${S}.grants ADD COLUMN in_flight_for text CHECK (in_flight_for IN ('import'));`,
  // A pending login's secrets (state, PKCE verifier, authorization URL, device code), sealed,
  // in a row that goes when the login ends; the authorization URL (its state) out of `data`.
  `
  CREATE TABLE ${S}.login_secrets (
    login_id   text PRIMARY KEY REFERENCES ${S}.logins (id) ON DELETE CASCADE,
    secrets    bytea NOT NULL,
    updated_at bigint NOT NULL
  );
  UPDATE ${S}.logins SET data = (data::jsonb - 'authorization_url')::text WHERE data::jsonb ? 'authorization_url';
  `,
  // A browser login's callback finds its login by a keyed hash of its state (rows.ts loginStateHash).
  `
  ALTER TABLE ${S}.logins ADD COLUMN state_hash text;
  CREATE UNIQUE INDEX logins_state_hash ON ${S}.logins (state_hash) WHERE state_hash IS NOT NULL;
  `,
  // The fleet's one audit log reads back (GET /v1/audit): how each action ended, its task,
  // and names of what changed; listings by time and the retention prune read `at` alone.
  `
  ALTER TABLE ${S}.audit ADD COLUMN outcome text NOT NULL DEFAULT 'ok' CHECK (outcome IN ('ok', 'refused', 'failed'));
  ALTER TABLE ${S}.audit ADD COLUMN code text;
  ALTER TABLE ${S}.audit ADD COLUMN task text;
  ALTER TABLE ${S}.audit ADD COLUMN detail text;
  CREATE INDEX audit_at ON ${S}.audit (at);
  `,
  // When each grant was obtained and last refreshed (an app's `info`); unknown for those already stored.
  `
  ALTER TABLE ${S}.grants ADD COLUMN granted_at bigint;
  ALTER TABLE ${S}.grants ADD COLUMN refreshed_at bigint;
  `,
];

if (MIGRATIONS.length !== FLEET_SCHEMA_VERSION) {
  throw new Error(`FLEET_SCHEMA_VERSION is ${FLEET_SCHEMA_VERSION} but there are ${MIGRATIONS.length} fleet migrations`);
}

/**
 * Bring the fleet's schema up to this tokend's version (in one transaction, under an
 * advisory lock: daemons starting together run each step once), then return the master
 * key, checked against the fleet's sealed check value. The first daemon of a new fleet
 * seals that value with its key (creating the key file if there is none); any other
 * daemon must hold the same key, or it refuses to start.
 */
export async function prepareFleet(client: PoolClient, opts: { keyFile: string; where: string; now: number }): Promise<Buffer> {
  const { keyFile, where } = opts;
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${S}.schema`]);
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [S]);
    // Only when missing: CREATE SCHEMA needs a right on the database that a schema made by
    // the database's owner for tokend spares its role.
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${S}`);
    await client.query(`
      CREATE TABLE IF NOT EXISTS ${S}.meta (
        id             int PRIMARY KEY CHECK (id = 1),
        schema_version int NOT NULL,
        key_check      bytea,
        created_at     bigint NOT NULL
      )`);
    await client.query(
      `INSERT INTO ${S}.meta (id, schema_version, key_check, created_at) VALUES (1, 0, NULL, $1) ON CONFLICT (id) DO NOTHING`,
      [opts.now],
    );
    const meta = (await client.query(`SELECT schema_version, key_check FROM ${S}.meta WHERE id = 1`)).rows[0] as {
      schema_version: number;
      key_check: Buffer | null;
    };
    if (meta.schema_version > FLEET_SCHEMA_VERSION) {
      throw new StoreError(
        'schema',
        `the fleet database ${where} has schema version ${meta.schema_version}, but this tokend knows only up to ${FLEET_SCHEMA_VERSION}: another daemon of the fleet runs a newer tokend; upgrade this one`,
      );
    }
    for (let v = meta.schema_version; v < FLEET_SCHEMA_VERSION; v++) await client.query(MIGRATIONS[v]!);
    if (meta.schema_version !== FLEET_SCHEMA_VERSION)
      await client.query(`UPDATE ${S}.meta SET schema_version = $1 WHERE id = 1`, [FLEET_SCHEMA_VERSION]);

    let key: Buffer;
    if (meta.key_check === null) {
      key = loadOrCreateKey(keyFile);
      await client.query(`UPDATE ${S}.meta SET key_check = $1 WHERE id = 1`, [seal(key, KEY_CHECK_TEXT, KEY_CHECK_AAD)]);
    } else {
      key = fleetKey(keyFile, where);
      let text: string | undefined;
      try {
        text = open(key, meta.key_check, KEY_CHECK_AAD);
      } catch {
        text = undefined;
      }
      if (text !== KEY_CHECK_TEXT) {
        throw new StoreError(
          'key_mismatch',
          `the key ${keyFile} does not open the fleet database ${where}: every daemon of a fleet must use the fleet's key. Copy it from a daemon of the fleet (TOKEND_KEY_FILE can point at it; docs/fleet.md)`,
        );
      }
    }
    await client.query('COMMIT');
    return key;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** An existing fleet's key: read, never invented (a new key could not open the fleet's rows). */
function fleetKey(keyFile: string, where: string): Buffer {
  try {
    return loadKey(keyFile);
  } catch (err) {
    if (!isMissingKey(err)) throw err;
    throw new StoreError(
      'key_mismatch',
      `there is no key at ${keyFile}, and the fleet database ${where} is sealed with the fleet's key: copy it from a daemon of the fleet (TOKEND_KEY_FILE can point at it; docs/fleet.md)`,
    );
  }
}
