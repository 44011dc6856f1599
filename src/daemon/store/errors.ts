/** Why a store operation failed; the message names the database, never a value. */
export type StoreErrorCode =
  | 'generation_mismatch'
  | 'no_grant'
  | 'insecure_file'
  | 'invalid_row'
  | 'decrypt_failed'
  | 'busy'
  | 'corrupt'
  | 'readonly'
  | 'full'
  | 'io'
  | 'cannot_open'
  | 'permission'
  | 'constraint'
  | 'sqlite'
  /** The database file was deleted or replaced while the daemon runs: writes would be lost. */
  | 'replaced'
  /** PostgreSQL cannot be reached, or dropped the connection: try again later (nothing was written). */
  | 'unavailable'
  /** Another daemon of the fleet held the grant's lock past the lock timeout. */
  | 'lock_timeout'
  /** The fleet's rows are sealed with another key than this daemon's. */
  | 'key_mismatch'
  /** The fleet's schema is newer than this tokend, or cannot be created. */
  | 'schema'
  | 'postgres';

/** An error from the store, with a `code` callers can branch on. */
export class StoreError extends Error {
  override name = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    /** For `sqlite`-family codes: the SQLite extended code, e.g. `SQLITE_BUSY_SNAPSHOT`; for PostgreSQL, its SQLSTATE or socket error code. */
    readonly sqliteCode?: string,
  ) {
    super(message);
  }
}

/**
 * Thrown by `commitRefresh` when the grant moved on (another refresh or a login committed,
 * or the grant was deleted) since the caller read it. The message is exactly
 * `generation mismatch`; the numbers are properties.
 */
export class GenerationMismatchError extends StoreError {
  override name = 'GenerationMismatchError';
  constructor(
    readonly account: string,
    readonly expected: number,
    /** null when the grant no longer exists. */
    readonly stored: number | null,
  ) {
    super('generation_mismatch', 'generation mismatch');
  }
}

/**
 * A failure that says nothing about the data, only that the database cannot answer now
 * (a fleet's PostgreSQL is down or busy): callers treat it as transient, like a provider
 * outage, and try again later.
 */
export function isStoreUnavailable(err: unknown): err is StoreError {
  return err instanceof StoreError && STORE_CANNOT_WRITE.has(err.code);
}

/**
 * The codes that mean "nothing can be written now": a fleet's database down or its lock
 * held too long, and a local disk that is full, read-only, failing, or whose database file
 * was deleted or replaced. No refresh is sent then (its result could not be committed), the
 * cached token is served while it is valid, and a rotation already answered waits in memory.
 */
const STORE_CANNOT_WRITE = new Set<StoreErrorCode>([
  'unavailable',
  'lock_timeout',
  'full',
  'readonly',
  'io',
  'cannot_open',
  'busy',
  'permission',
  'replaced',
]);
