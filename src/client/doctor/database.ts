import fs from 'node:fs';
import {
  describeDatabase,
  FLEET_SCHEMA,
  FLEET_SCHEMA_VERSION,
  fleetDatabaseUrl,
  KEY_CHECK_AAD,
  KEY_CHECK_TEXT,
} from '../../protocol/fleet.js';
import { open } from '../../protocol/sealed.js';
import type { Check, DoctorContext } from './check.js';
import { shq } from './shell.js';

const TIMEOUT_MS = 5_000;

/**
 * A fleet's database (docs/fleet.md): it answers, its schema is one this tokend can use, and
 * the key here opens the fleet's sealed check value. Nothing for a daemon of its own (no
 * TOKEND_DATABASE_URL, no settings.database_url). pg is loaded only here, only then.
 */
export async function databaseChecks(ctx: DoctorContext): Promise<Check[]> {
  const config = await ctx.config;
  const url = fleetDatabaseUrl(ctx.env, { database_url: config.databaseUrl });
  if (!url) return [];
  const where = describeDatabase(url);
  let pg: typeof import('pg').default;
  try {
    pg = (await import('pg')).default;
  } catch {
    return [
      {
        id: 'database',
        status: 'fail',
        message: `a fleet database is configured (${where}) but the pg package is not installed with tokend`,
        fix: 'npm install pg',
      },
    ];
  }
  // The password comes from the URL, PGPASSWORD or ~/.pgpass, as for the daemon; never printed.
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: TIMEOUT_MS,
    query_timeout: TIMEOUT_MS,
    application_name: 'tokend doctor',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    return [
      {
        id: 'database',
        status: 'fail',
        message: `cannot connect to the fleet database ${where}: ${(err as Error).message}; check that PostgreSQL runs and takes connections from this host, and the password (PGPASSWORD or ~/.pgpass)`,
        fix: `pg_isready -d '${shq(where)}'`,
      },
    ];
  }
  try {
    const checks: Check[] = [{ id: 'database', status: 'ok', message: `the fleet database ${where} answers` }];
    let meta: { schema_version: number; key_check: Buffer | null } | undefined;
    try {
      meta = (await client.query(`SELECT schema_version, key_check FROM ${FLEET_SCHEMA}.meta WHERE id = 1`)).rows[0];
    } catch (err) {
      const code = (err as { code?: string }).code;
      // 3F000: no such schema; 42P01: no such table. Nothing was created yet.
      if (code !== '3F000' && code !== '42P01') {
        return [
          ...checks,
          { id: 'database-schema', status: 'fail', message: `cannot read tokend's schema in ${where}: ${(err as Error).message}` },
        ];
      }
    }
    if (!meta) {
      return [
        ...checks,
        { id: 'database-schema', status: 'info', message: `no tokend schema in ${where} yet: the first daemon to start creates it` },
      ];
    }
    checks.push(schemaCheck(meta.schema_version, where));
    if (meta.key_check) checks.push(keyCheck(ctx.paths.keyFile, meta.key_check, where));
    return checks;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function schemaCheck(version: number, where: string): Check {
  if (version > FLEET_SCHEMA_VERSION) {
    return {
      id: 'database-schema',
      status: 'fail',
      message: `the fleet database ${where} has schema version ${version}, newer than this tokend knows (${FLEET_SCHEMA_VERSION}): another daemon of the fleet runs a newer tokend; upgrade this one`,
    };
  }
  if (version < FLEET_SCHEMA_VERSION) {
    return {
      id: 'database-schema',
      status: 'info',
      message: `the fleet database ${where} has schema version ${version}; the next daemon to start upgrades it to ${FLEET_SCHEMA_VERSION}`,
    };
  }
  return { id: 'database-schema', status: 'ok', message: `the fleet database has tokend's schema, version ${version}` };
}

/** Does the key here open the fleet's sealed check value? A daemon whose key does not refuses to start. */
function keyCheck(keyFile: string, sealed: Buffer, where: string): Check {
  const copy = `the fleet's key: copy it from a host of the fleet to ${keyFile} (mode 0600), or point TOKEND_KEY_FILE at it`;
  let key: Buffer;
  try {
    key = fs.readFileSync(keyFile);
  } catch (err) {
    return {
      id: 'database-key',
      status: 'fail',
      message: `cannot read the key ${keyFile} (${(err as NodeJS.ErrnoException).code ?? 'error'}): the fleet's rows need ${copy}`,
    };
  }
  let opened: string | undefined;
  try {
    opened = open(key, sealed, KEY_CHECK_AAD);
  } catch {
    opened = undefined;
  }
  if (opened !== KEY_CHECK_TEXT) {
    return {
      id: 'database-key',
      status: 'fail',
      message: `the key ${keyFile} does not open the fleet database ${where}: the daemon will not start with it; it needs ${copy}`,
    };
  }
  return { id: 'database-key', status: 'ok', message: `the key ${keyFile} is the fleet's` };
}
