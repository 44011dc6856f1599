/**
 * The one place a fleet's PostgreSQL errors (node-postgres, the server's SQLSTATE, the socket)
 * become store errors: a message naming the database without its password, and a code the
 * broker branches on. Never a bound value: server errors give only their primary message
 * (a `detail` may echo a row), and tokend never puts a value in SQL text.
 */
import { StoreError } from './errors.js';

/** Socket failures (node) and node-postgres's own words for a connection that is gone. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ENOENT',
]);
const CLIENT_GONE =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|not queryable|Cannot use a pool after calling end|Client was closed/i;

/** Translate anything a pg call threw into a StoreError about the fleet database `where`. */
export function postgresError(err: unknown, where: string): StoreError {
  if (err instanceof StoreError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (code && /^[0-9A-Z]{5}$/.test(code)) {
    const cls = code.slice(0, 2);
    // 55P03 lock_not_available: lock_timeout ran out while another daemon held the grant.
    if (code === '55P03')
      return new StoreError('lock_timeout', `another daemon of the fleet held the grant's lock too long (${where})`, code);
    // 08 connection, 28 authorization, 3D no such database, 53 resources, 57 operator
    // intervention (shutdown, cancel, timeouts), 58 system: the database cannot serve now.
    if (['08', '28', '3D', '53', '57', '58'].includes(cls) || code === '25P03') {
      return new StoreError('unavailable', `the fleet database ${where} cannot serve: ${message} (${code})`, code);
    }
    if (cls === '42' || cls === '3F')
      return new StoreError('schema', `the fleet database ${where} does not have tokend's schema as expected: ${message} (${code})`, code);
    if (cls === '23')
      return new StoreError('constraint', `a write to the fleet database ${where} broke a constraint (a bug in tokend) (${code})`, code);
    return new StoreError('postgres', `the fleet database ${where} failed: ${message} (${code})`, code);
  }
  if ((code && SOCKET_CODES.has(code)) || CLIENT_GONE.test(message)) {
    return new StoreError('unavailable', `cannot reach the fleet database ${where} (${code ?? message})`, code);
  }
  if (err instanceof Error) return new StoreError('postgres', `the fleet database ${where} failed: ${message}`, code);
  return new StoreError('postgres', `the fleet database ${where} failed`);
}
