/**
 * A fleet: several daemons sharing one PostgreSQL database (docs/fleet.md). What the daemon
 * and `tokend doctor` must agree on: where the URL comes from, how it is shown without its
 * password, the schema version this tokend writes, and the sealed value that tells whether a
 * key is the fleet's. Node built-ins only: the client imports it on its start-up path.
 */

/** The environment variable that selects a fleet's database (else `settings.database_url`). */
export const DATABASE_URL_ENV = 'TOKEND_DATABASE_URL';

/** The PostgreSQL schema every tokend table lives in, apart from whatever else the database holds. */
export const FLEET_SCHEMA = 'tokend';

/** The version of the fleet schema this tokend writes (the number of its migrations). */
export const FLEET_SCHEMA_VERSION = 6;

/**
 * The channel each commit is announced on: `NOTIFY tokend_grants, '<account>:<generation>'`.
 * Never a token in a notification: other daemons read the grant itself from the database.
 */
export const FLEET_CHANNEL = 'tokend_grants';

/**
 * The channel each login write is announced on: `NOTIFY tokend_logins, '<status>:<login id>'`,
 * so every daemon tells its event subscribers (never a secret: the others read the login).
 */
export const FLEET_LOGIN_CHANNEL = 'tokend_logins';

/**
 * The key check: a known text sealed with the fleet's key when the schema is created. A
 * daemon (or the doctor) whose key cannot open it holds another key than the fleet.
 */
export const KEY_CHECK_AAD = 'fleet:key_check';
export const KEY_CHECK_TEXT = 'tokend fleet key check v1';

/** The fleet's database URL: `TOKEND_DATABASE_URL`, else config.json's `settings.database_url`; undefined for the embedded SQLite store. */
export function fleetDatabaseUrl(env: NodeJS.ProcessEnv, settings?: { database_url?: string }): string | undefined {
  return env[DATABASE_URL_ENV] || settings?.database_url || undefined;
}

/** A PostgreSQL URL tokend accepts: `postgres://` or `postgresql://`. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(url);
}

/**
 * The URL as messages and logs show it, and as `pg_isready -d` takes it: scheme, user, host,
 * port and database, and the socket folder when given as `?host=`; never the password or
 * any other parameter.
 */
export function describeDatabase(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'the fleet database (its URL does not parse)';
  }
  const user = u.username ? `${u.username}@` : '';
  const socket = u.searchParams.get('host');
  return `${u.protocol}//${user}${u.host}${u.pathname}${socket ? `?host=${encodeURIComponent(socket)}` : ''}`;
}
