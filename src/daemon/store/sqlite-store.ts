import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, GenerationMismatchError, type StoreErrorCode } from './errors.js';
import { LOGIN_SECRETS_VERSION, migrate, userVersion } from './migrations.js';
import { sqliteAudit } from './sqlite-audit.js';
import { isNativeModuleError, nativeModuleError } from './sqlite-native.js';
import {
  GRANT_SUMMARY_COLUMNS,
  LOGIN_WITH_SECRETS,
  checkAuditPrune,
  commitColumns,
  decodeAccessToken,
  decodeGrant,
  decodeGrantSummary,
  decodeLogin,
  decodeWrittenGrant,
  grantColumns,
  openSecret,
  sealLoginSecrets,
  loginStateHash,
  stateHashOf,
  sealSecret,
  summaryRow,
  type Row,
} from './rows.js';
import {
  soleLease,
  type AuditEntry,
  type AuditQuery,
  type GrantPage,
  type GrantRecord,
  type GrantWrite,
  type LoginRecord,
  type LoginStatusValue,
  type Store,
  type TokenUpdate,
} from './types.js';

export { AUDIT_CLIENT_MAX } from './rows.js';
export { GenerationMismatchError, StoreError, type StoreErrorCode } from './errors.js';

/** Where the store lives, the master key that seals its secrets, and a clock (tests inject one). */
export interface StoreOptions {
  file: string;
  key: Buffer;
  now?: () => number;
}

const BUSY_TIMEOUT_MS = 5000;

/** Open (creating and migrating if needed) the SQLite store at `file`, sealing secrets with `key`. */
export function openStore({ file, key, now = Date.now }: StoreOptions): Store {
  createPrivateFile(file);
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
    configure(db, file);
    const from = userVersion(db);
    migrate(db, file);
    if (from > 0 && from < LOGIN_SECRETS_VERSION) scrubAfterUpgrade(db);
    return buildStore(db, file, key, now);
  } catch (err) {
    db?.close();
    if (isNativeModuleError(err)) throw nativeModuleError(err);
    return storeError(err, file);
  }
}

/**
 * Make the DB file 0600 before SQLite touches it: SQLite creates -wal and -shm with the
 * main file's mode, so they inherit it. An existing file that others can read, or that
 * belongs to someone else, is refused (README, Files and places).
 */
function createPrivateFile(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const fd = fs.openSync(file, 'a', 0o600);
  try {
    const st = fs.fstatSync(fd);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new StoreError(
        'insecure_file',
        `the database ${file} is owned by uid ${st.uid}, not by this user (uid ${uid}); refusing to use it`,
      );
    }
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new StoreError('insecure_file', `the database ${file} is accessible by group or others (mode ${mode}); run: chmod 600 ${file}`);
    }
  } finally {
    fs.closeSync(fd);
  }
}

function configure(db: Database.Database, file: string): void {
  // busy_timeout first, so the journal_mode switch below waits for other connections.
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal') {
    throw new Error(`the database ${file} cannot use WAL mode (got ${String(mode)}); is it on a network filesystem?`);
  }
  // FULL fsyncs the WAL on every commit: a rotated refresh token must survive a power cut,
  // because the old refresh token is dead once the provider has answered (rule 5,
  // docs/architecture.md). The in-flight mark alone is written with NORMAL (markInFlight).
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // A small page cache (2 MiB, not this build's 16): the daemon reads the whole file once at
  // start and then mostly writes; the kernel's page cache keeps it warm anyway, and 16 MiB of
  // cache was a tenth of a 10 000-account daemon's memory (the many-accounts bench).
  db.pragma('cache_size = -2048');
  // Deleted content is overwritten with zeros, in the page and on the freelist: a login's
  // sealed secrets, an old sealed token, leave no copy in the file once removed. The WAL
  // keeps old page images until a checkpoint; removeFromWal() empties it where it matters.
  db.pragma('secure_delete = ON');
}

/**
 * Copy the WAL into the database and truncate it to zero bytes, so page images from before
 * a removal (a finished login's secrets) stop lingering in the -wal file. Best effort: it
 * needs no reader in the way, and there is none but this daemon.
 */
function removeFromWal(db: Database.Database): void {
  db.pragma('wal_checkpoint(TRUNCATE)');
}

/**
 * A database from before logins' secrets were sealed held each browser login's
 * authorization URL (its state) in clear, also in logins pruned since, whose bytes stay in
 * free pages until overwritten: rewrite the file once (VACUUM) and empty the WAL.
 */
function scrubAfterUpgrade(db: Database.Database): void {
  db.exec('VACUUM');
  removeFromWal(db);
}

function buildStore(db: Database.Database, file: string, key: Buffer, now: () => number): Store {
  // Every statement is prepared once here; the methods below only bind and run.
  const sql = {
    getGrant: db.prepare<[string], Row>('SELECT * FROM grants WHERE account = ?'),
    listGrants: db.prepare<[], unknown[]>(`SELECT ${GRANT_SUMMARY_COLUMNS} FROM grants ORDER BY account`).raw(),
    listGrantsPage: db
      .prepare<[string, number], unknown[]>(`SELECT ${GRANT_SUMMARY_COLUMNS} FROM grants WHERE account > ? ORDER BY account LIMIT ?`)
      .raw(),
    listAccessTokens: db.prepare<[string, number], Row>(
      `SELECT ${GRANT_SUMMARY_COLUMNS}, access_token FROM grants WHERE account > ? AND access_token IS NOT NULL AND status = 'active' ORDER BY account LIMIT ?`,
    ),
    upsertGrant: db.prepare<Record<string, unknown>, Row>(`
      INSERT INTO grants (account, refresh_token, access_token, token_type, expires_at, obtained_at, scope,
                          generation, status, in_flight_since, last_error, updated_at, bound_to, refresh_expires_at,
                          granted_at, refreshed_at)
      VALUES (@account, @refresh_token, @access_token, @token_type, @expires_at, @obtained_at, @scope,
              1, 'active', NULL, NULL, @updated_at, @bound_to, @refresh_expires_at, @updated_at, NULL)
      ON CONFLICT (account) DO UPDATE SET
        refresh_token = excluded.refresh_token, access_token = excluded.access_token,
        token_type = excluded.token_type, expires_at = excluded.expires_at,
        obtained_at = excluded.obtained_at, scope = excluded.scope,
        generation = grants.generation + 1, status = 'active',
        in_flight_since = NULL, in_flight_for = NULL, last_error = NULL, updated_at = excluded.updated_at, bound_to = excluded.bound_to,
        refresh_expires_at = excluded.refresh_expires_at, granted_at = excluded.granted_at, refreshed_at = NULL
      RETURNING *`),
    setBinding: db.prepare<[string, number, string]>('UPDATE grants SET bound_to = ?, updated_at = ? WHERE account = ?'),
    // A NULL @refresh_token keeps the stored one (rows.ts, commitColumns).
    commitRefresh: db.prepare<Record<string, unknown>, Row>(`
      UPDATE grants SET
        refresh_token = coalesce(@refresh_token, refresh_token), access_token = @access_token,
        refresh_expires_at = CASE WHEN @refresh_token IS NULL THEN coalesce(@refresh_expires_at, refresh_expires_at) ELSE @refresh_expires_at END,
        token_type = @token_type, expires_at = @expires_at, obtained_at = @obtained_at, scope = @scope,
        generation = generation + 1, status = 'active', in_flight_since = NULL, in_flight_for = NULL, last_error = NULL,
        updated_at = @updated_at, refreshed_at = @updated_at
      WHERE account = @account AND generation = @expected
      RETURNING *`),
    generationOf: db.prepare<[string], number>('SELECT generation FROM grants WHERE account = ?').pluck(),
    syncNormal: db.prepare('PRAGMA synchronous = NORMAL'),
    syncFull: db.prepare('PRAGMA synchronous = FULL'),
    markInFlight: db.prepare<[number, number, string]>(
      'UPDATE grants SET in_flight_since = ?, in_flight_for = NULL, updated_at = ? WHERE account = ?',
    ),
    // An import's mark on the grant, or a placeholder grant (generation 0, no token) to hold it.
    markImport: db.prepare<Record<string, unknown>>(`
      INSERT INTO grants (account, generation, status, in_flight_since, in_flight_for, last_error, updated_at, bound_to)
      VALUES (@account, 0, 'reauth_required', @at, 'import', @last_error, @updated_at, @bound_to)
      ON CONFLICT (account) DO UPDATE SET in_flight_since = @at, in_flight_for = 'import', updated_at = @updated_at`),
    dropImportPlaceholder: db.prepare<[string]>("DELETE FROM grants WHERE account = ? AND generation = 0 AND in_flight_for = 'import'"),
    clearImportMark: db.prepare<[string]>(
      "UPDATE grants SET in_flight_since = NULL, in_flight_for = NULL WHERE account = ? AND in_flight_for = 'import'",
    ),
    clearInFlight: db.prepare<[number, string]>(
      'UPDATE grants SET in_flight_since = NULL, in_flight_for = NULL, updated_at = ? WHERE account = ?',
    ),
    setStatus: db.prepare<[string, string | null, number, string]>(
      'UPDATE grants SET status = ?, last_error = ?, in_flight_since = NULL, in_flight_for = NULL, updated_at = ? WHERE account = ?',
    ),
    deleteGrant: db.prepare<[string]>('DELETE FROM grants WHERE account = ?'),
    getSecret: db.prepare<[string, string], Buffer>('SELECT value FROM secrets WHERE account = ? AND name = ?').pluck(),
    getSecrets: db.prepare<[string], { name: string; value: Buffer }>('SELECT name, value FROM secrets WHERE account = ?'),
    putSecret: db.prepare<[string, string, Buffer, number]>(`
      INSERT INTO secrets (account, name, value, updated_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (account, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`),
    putSecretIfAbsent: db.prepare<[string, string, Buffer, number]>(
      'INSERT INTO secrets (account, name, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (account, name) DO NOTHING',
    ),
    deleteSecrets: db.prepare<[string]>('DELETE FROM secrets WHERE account = ?'),
    putLogin: db.prepare<Record<string, unknown>>(`
      INSERT INTO logins (id, account, flow, status, data, created_at, updated_at, state_hash)
      VALUES (@id, @account, @flow, @status, @data, @created_at, @updated_at, @state_hash)
      ON CONFLICT (id) DO UPDATE SET
        account = excluded.account, flow = excluded.flow, status = excluded.status,
        data = excluded.data, updated_at = excluded.updated_at, state_hash = COALESCE(excluded.state_hash, logins.state_hash)`),
    putLoginSecrets: db.prepare<[string, Buffer, number]>(`
      INSERT INTO login_secrets (login_id, secrets, updated_at) VALUES (?, ?, ?)
      ON CONFLICT (login_id) DO UPDATE SET secrets = excluded.secrets, updated_at = excluded.updated_at`),
    deleteLoginSecrets: db.prepare<[string]>('DELETE FROM login_secrets WHERE login_id = ?'),
    getLogin: db.prepare<[string], Row>(`${LOGIN_WITH_SECRETS('logins', 'login_secrets')} WHERE l.id = ?`),
    findLoginByState: db.prepare<[string], Row>(`${LOGIN_WITH_SECRETS('logins', 'login_secrets')} WHERE l.state_hash = ?`),
    listLogins: db.prepare<[], Row>(`${LOGIN_WITH_SECRETS('logins', 'login_secrets')} ORDER BY l.created_at DESC, l.id`),
    listLoginsWith: db.prepare<[string], Row>(
      `${LOGIN_WITH_SECRETS('logins', 'login_secrets')} WHERE l.status = ? ORDER BY l.created_at DESC, l.id`,
    ),
    lastFinishedLogin: db.prepare<[string], Row>(
      "SELECT * FROM logins WHERE account = ? AND status <> 'pending' ORDER BY updated_at DESC, id LIMIT 1",
    ),
    pruneLogins: db.prepare<[number]>("DELETE FROM logins WHERE status <> 'pending' AND updated_at < ?"),
  };

  // IMMEDIATE takes the write lock at BEGIN, where busy_timeout applies; a deferred
  // transaction that reads first can fail with SQLITE_BUSY_SNAPSHOT without waiting.
  const setBindingsTx = db.transaction((bindings: ReadonlyArray<{ account: string; boundTo: string }>) => {
    const at = now();
    for (const b of bindings) sql.setBinding.run(b.boundTo, at, b.account);
  });
  const commitRefreshTx = db.transaction((account: string, expected: number, tokens: TokenUpdate): Row => {
    const row = sql.commitRefresh.get({ account, expected, ...commitColumns(key, account, tokens), updated_at: now() });
    // Read in the same transaction: the generation that refused this commit.
    if (!row) throw new GenerationMismatchError(account, expected, sql.generationOf.get(account) ?? null);
    return row;
  });
  /** One login and its secrets in one commit; true when a finished login's secrets were removed. */
  const putLoginTx = db.transaction((login: LoginRecord): boolean => {
    const { secrets, ...rec } = login;
    sql.putLogin.run({ ...rec, data: JSON.stringify(rec.data), state_hash: stateHashOf(key, login) });
    if (rec.status !== 'pending') return sql.deleteLoginSecrets.run(rec.id).changes > 0;
    if (secrets) sql.putLoginSecrets.run(rec.id, sealLoginSecrets(key, rec.id, secrets), now());
    return false;
  });
  const replaceGrantTx = db.transaction((account: string, tokens: GrantWrite, secrets: Readonly<Record<string, string>>): Row => {
    const at = now();
    const row = sql.upsertGrant.get({ account, ...grantColumns(key, account, tokens), updated_at: at })!;
    for (const [name, value] of Object.entries(secrets)) sql.putSecret.run(account, name, sealSecret(key, account, name, value), at);
    return row;
  });
  const endImportTx = db.transaction((account: string) => {
    sql.dropImportPlaceholder.run(account);
    sql.clearImportMark.run(account);
  });

  const toGrant = (row: Row): GrantRecord => decodeGrant(row, key, file);
  /** Run `fn` with synchronous=NORMAL, then back to FULL (the store's own), whatever happens. */
  const underSyncNormal = <T>(fn: () => T): T => {
    sql.syncNormal.run();
    try {
      return fn();
    } finally {
      sql.syncFull.run();
    }
  };

  // Every method goes through guard(), so SQLite errors are translated in one place. The
  // calls are synchronous (better-sqlite3): the promise is settled when the method returns.
  // The file this store opened: if it is deleted or replaced while the daemon runs, every
  // write would go to a file nobody opens again (a rotated refresh token lost at the next
  // start), so the store refuses to write, which stops refreshes before they are sent.
  const opened = fs.statSync(file);
  const stillOurs = () => {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(file);
    } catch {
      st = undefined;
    }
    if (!st || st.ino !== opened.ino || st.dev !== opened.dev) {
      throw new StoreError(
        'replaced',
        `the database ${file} was ${st ? 'replaced' : 'deleted'} while tokend runs; nothing is written until tokend restarts`,
      );
    }
  };
  const audit = sqliteAudit(db, file, { syncNormal: underSyncNormal, writable: stillOurs });
  const guard =
    <A extends unknown[], R>(fn: (...args: A) => R, opts: { writes?: boolean } = { writes: true }) =>
    async (...args: A): Promise<R> => {
      try {
        if (opts.writes) stillOurs();
        return fn(...args);
      } catch (err) {
        return storeError(err, file);
      }
    };

  return {
    getGrant: guard(
      (account: string) => {
        const row = sql.getGrant.get(account);
        return row ? toGrant(row) : undefined;
      },
      { writes: false },
    ),

    listGrants: guard(
      (page?: GrantPage) => {
        const shared = new Map<string, string>();
        const rows = page ? sql.listGrantsPage.all(page.after ?? '', page.limit) : sql.listGrants.all();
        return rows.map((values) => decodeGrantSummary(summaryRow(values), file, shared));
      },
      { writes: false },
    ),

    listAccessTokens: guard(
      (after: string | undefined, limit: number) =>
        sql.listAccessTokens.all(after ?? '', limit).map((row) => decodeAccessToken(row, key, file)),
      { writes: false },
    ),

    getAccessToken: guard(
      (account: string) => {
        const row = sql.getGrant.get(account);
        return row ? decodeAccessToken(row, key, file) : undefined;
      },
      { writes: false },
    ),

    replaceGrant: guard((account: string, tokens: GrantWrite, secrets: Readonly<Record<string, string>> = {}) =>
      toGrant(replaceGrantTx.immediate(account, tokens, secrets)),
    ),

    setBindings: guard((bindings: ReadonlyArray<{ account: string; boundTo: string }>) => {
      setBindingsTx(bindings);
    }),

    commitRefresh: guard((account: string, expectedGeneration: number, tokens: TokenUpdate) =>
      decodeWrittenGrant(commitRefreshTx.immediate(account, expectedGeneration, tokens), key, file, tokens),
    ),

    markInFlight: guard((account: string, at: number) => {
      // The mark is written with synchronous=NORMAL: in WAL mode the commit is in the WAL
      // file (the kernel's page cache) when run() returns, so it survives the daemon's death
      // (SIGKILL, a crash, an OOM kill), the case it is for; only a power cut or a kernel
      // crash in the refresh's few milliseconds can lose it. What it guards is the account's
      // explanation after such a crash ("a refresh interrupted at … may have spent it"), not
      // a token: the rotated refresh token is committed under FULL (commitRefresh), whose
      // fsync also makes this mark durable. One fsync fewer per refresh, what a refresh costs most on a
      // disk that syncs slowly.
      const { changes } = underSyncNormal(() => sql.markInFlight.run(at, now(), account));
      // Refusing here stops a refresh whose safety mark could not be recorded.
      if (changes === 0) throw new StoreError('no_grant', `cannot mark a refresh in flight: account "${account}" has no grant`);
    }),

    // Written like the refresh's mark (synchronous=NORMAL, see markInFlight): it explains, it holds no token.
    markImport: guard((account: string, at: number, placeholder: { boundTo: string; lastError: string }) => {
      underSyncNormal(() =>
        sql.markImport.run({ account, at, last_error: placeholder.lastError, updated_at: now(), bound_to: placeholder.boundTo }),
      );
    }),

    endImport: guard((account: string) => {
      endImportTx.immediate(account);
    }),

    // Nothing to clear, or no grant to hold the status: both are no-ops.
    clearInFlight: guard((account: string) => {
      sql.clearInFlight.run(now(), account);
    }),

    // One daemon owns this file: its mark stays as the witness, and names nobody to wait for.
    abandonInFlight: guard((_account: string) => undefined, { writes: false }),

    setStatus: guard((account: string, status: GrantRecord['status'], lastError: string | null) => {
      sql.setStatus.run(status, lastError, now(), account);
    }),

    deleteGrant: guard((account: string) => {
      sql.deleteGrant.run(account);
    }),

    getSecret: guard(
      (account: string, name: string) => {
        const blob = sql.getSecret.get(account, name);
        return blob === undefined ? undefined : openSecret(key, account, name, blob, file);
      },
      { writes: false },
    ),

    getSecrets: guard(
      (account: string) => {
        const out = new Map<string, string>();
        for (const { name, value } of sql.getSecrets.all(account)) out.set(name, openSecret(key, account, name, value, file));
        return out;
      },
      { writes: false },
    ),

    putSecret: guard((account: string, name: string, value: string) => {
      sql.putSecret.run(account, name, sealSecret(key, account, name, value), now());
    }),

    putSecretIfAbsent: guard((account: string, name: string, value: string) => {
      sql.putSecretIfAbsent.run(account, name, sealSecret(key, account, name, value), now());
      const stored = sql.getSecret.get(account, name);
      return stored === undefined ? value : openSecret(key, account, name, stored, file);
    }),

    deleteSecrets: guard((account: string) => {
      sql.deleteSecrets.run(account);
    }),

    putLogin: guard((login: LoginRecord) => {
      if (putLoginTx.immediate(login)) removeFromWal(db);
    }),

    getLogin: guard(
      (id: string) => {
        const row = sql.getLogin.get(id);
        return row ? decodeLogin(row, file, key) : undefined;
      },
      { writes: false },
    ),

    findLoginByState: guard(
      (state: string) => {
        const row = sql.findLoginByState.get(loginStateHash(key, state));
        return row ? decodeLogin(row, file, key) : undefined;
      },
      { writes: false },
    ),

    listLogins: guard(
      (opts: { status?: LoginStatusValue } = {}) =>
        (opts.status === undefined ? sql.listLogins.all() : sql.listLoginsWith.all(opts.status)).map((row) => decodeLogin(row, file, key)),
      { writes: false },
    ),

    lastFinishedLogin: guard(
      (account: string) => {
        const row = sql.lastFinishedLogin.get(account);
        return row ? decodeLogin(row, file) : undefined;
      },
      { writes: false },
    ),

    pruneLogins: guard((before: number) => sql.pruneLogins.run(before).changes),

    // One daemon per data folder: its lease is never contested.
    holdLogin: async () => soleLease(),

    appendAudit: guard((entries: AuditEntry[]) => {
      if (entries.length === 0) return;
      // synchronous=NORMAL, as for the in-flight mark: the rows are in the WAL when this
      // returns and survive the daemon's death; a power cut may lose the last second of
      // them. An fsync a second under load is not worth that second of a record.
      underSyncNormal(() => audit.append(entries));
    }),

    listAudit: guard((query: AuditQuery = {}) => audit.list(query), { writes: false }),

    pruneAudit: guard((opts: { before: number; keep: number }) => {
      checkAuditPrune(opts);
      return audit.prune(opts.before, opts.keep);
    }),

    // One daemon per data folder (lock.ts): no one else can refresh this file's grants.
    withGrantLock: <T>(_account: string, fn: () => Promise<T>): Promise<T> => fn(),

    close: guard(
      () => {
        audit.close();
        if (db.open) db.close();
      },
      { writes: false },
    ),
  };
}

/**
 * The one place SQLite errors become store errors: a message a person can act on, naming
 * the file and never a bound value. Anything that is not a SqliteError passes through.
 */
export function storeError(err: unknown, file: string): never {
  if (!(err instanceof Database.SqliteError)) throw err;
  const sqliteCode = err.code;
  // Extended codes (SQLITE_IOERR_FSYNC, SQLITE_BUSY_SNAPSHOT, …) share their primary's meaning.
  const primary = /^SQLITE_[A-Z]+/.exec(sqliteCode)?.[0] ?? sqliteCode;
  const [code, text] = ((): [StoreErrorCode, string] => {
    switch (primary) {
      case 'SQLITE_BUSY':
      case 'SQLITE_LOCKED':
        return ['busy', `the database ${file} stayed locked by another process for over ${BUSY_TIMEOUT_MS / 1000} s`];
      case 'SQLITE_CORRUPT':
      case 'SQLITE_NOTADB':
        return ['corrupt', `the database ${file} is damaged or is not a tokend database; move it aside and log in again`];
      case 'SQLITE_READONLY':
        return ['readonly', `the database ${file} is read-only; check the permissions of the file and its folder`];
      case 'SQLITE_FULL':
        return ['full', `the disk holding the database ${file} is full`];
      case 'SQLITE_IOERR':
        return ['io', `an I/O error occurred on the database ${file}`];
      case 'SQLITE_CANTOPEN':
        return ['cannot_open', `cannot open the database ${file}; does its folder exist and is it writable?`];
      case 'SQLITE_PERM':
      case 'SQLITE_AUTH':
        return ['permission', `permission denied on the database ${file}`];
      case 'SQLITE_CONSTRAINT':
        return ['constraint', `a write to the database ${file} broke a constraint (a bug in tokend)`];
      default:
        return ['sqlite', `SQLite failed on the database ${file}`];
    }
  })();
  throw new StoreError(code, `${text} (${sqliteCode})`, sqliteCode);
}
