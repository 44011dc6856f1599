import type Database from 'better-sqlite3';

/** One schema step: runs inside a transaction that also sets `user_version` to its position. */
export type Migration = (db: Database.Database) => void;

/**
 * The step that keeps a pending login's secrets sealed, out of `data`; a constant of its
 * own, so the store knows from which version an upgrade must scrub (LOGIN_SECRETS_VERSION).
 */
function keepLoginSecretsSealed(db: Database.Database): void {
  // A pending login's secrets (state, PKCE verifier, authorization URL, device code), sealed
  // like every secret, in a row of their own that goes when the login ends. The
  // authorization URL carried the state in clear in `data`: out of every stored login.
  // The store scrubs the freed bytes after this step (scrubAfterUpgrade in sqlite-store.ts).
  db.exec(`
    CREATE TABLE login_secrets (
      login_id   TEXT PRIMARY KEY REFERENCES logins (id) ON DELETE CASCADE,
      secrets    BLOB NOT NULL,
      updated_at INTEGER NOT NULL
    ) STRICT;
    UPDATE logins SET data = json_remove(data, '$.authorization_url') WHERE json_type(data, '$.authorization_url') IS NOT NULL;
  `);
}

/** The step that gives audit rows their outcome, code, task and detail (AUDIT_OUTCOME_VERSION). */
function sayHowEachAuditedActionEnded(db: Database.Database): void {
  // The audit log reads back (GET /v1/audit): each row says how its action ended (`ok`,
  // `refused`, `failed`, with a code), the caller's task, and names (never values) of what
  // changed. Listings by time and the retention prune read `at` alone.
  db.exec(`
    ALTER TABLE audit ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok' CHECK (outcome IN ('ok', 'refused', 'failed'));
    ALTER TABLE audit ADD COLUMN code TEXT;
    ALTER TABLE audit ADD COLUMN task TEXT;
    ALTER TABLE audit ADD COLUMN detail TEXT;
    CREATE INDEX audit_at ON audit (at);
  `);
}

/**
 * The step that takes an account's audit rows out of the commit before a token's answer
 * (AUDIT_BY_ACCOUNT_VERSION): `audit` keeps only indexes its writes append to (its rowid and
 * `at`), and an account's rows are found through `audit_by_account`, filled off the answer
 * path in large batches (sqlite-audit.ts). The (account, at) index put every new row on a
 * random leaf: a program reading many accounts a minute dirtied one page per row in the
 * commit that precedes each answer.
 */
function findAccountsAuditRowsOffTheAnswerPath(db: Database.Database): void {
  db.exec(`
    DROP INDEX audit_account_at;
    CREATE TABLE audit_by_account (
      account TEXT NOT NULL,
      at      INTEGER NOT NULL,
      id      INTEGER NOT NULL,
      PRIMARY KEY (account, at, id)
    ) STRICT, WITHOUT ROWID;
    -- Rows up to upto (by id) are in audit_by_account; newer ones are found by a scan of the tail.
    CREATE TABLE audit_indexed (
      one  INTEGER PRIMARY KEY CHECK (one = 1),
      upto INTEGER NOT NULL
    ) STRICT;
    INSERT INTO audit_by_account (account, at, id) SELECT account, at, id FROM audit ORDER BY account, at, id;
    INSERT INTO audit_indexed (one, upto) SELECT 1, coalesce(max(id), 0) FROM audit;
    -- A pruned row leaves the index with it, whatever deletes it.
    CREATE TRIGGER audit_unindex AFTER DELETE ON audit BEGIN
      DELETE FROM audit_by_account WHERE account = old.account AND at = old.at AND id = old.id;
    END;
  `);
}

/**
 * The schema, one step per release that changed it. Append only: a shipped migration is
 * never edited, because databases in the field have already run it. `PRAGMA user_version`
 * holds how many have run.
 */
export const MIGRATIONS: readonly Migration[] = [
  function createInitialTables(db) {
    // STRICT tables make SQLite refuse a value of the wrong type instead of storing it,
    // so a bug cannot, say, write a token as TEXT where a sealed BLOB belongs.
    db.exec(`
      CREATE TABLE grants (
        account         TEXT PRIMARY KEY,
        refresh_token   BLOB,
        access_token    BLOB,
        token_type      TEXT,
        expires_at      INTEGER,
        obtained_at     INTEGER,
        scope           TEXT,
        generation      INTEGER NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('active', 'reauth_required')),
        in_flight_since INTEGER,
        last_error      TEXT,
        updated_at      INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE secrets (
        account    TEXT,
        name       TEXT,
        value      BLOB NOT NULL,
        updated_at INTEGER,
        PRIMARY KEY (account, name)
      ) STRICT;

      CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        account TEXT NOT NULL,
        client  TEXT NOT NULL,
        action  TEXT NOT NULL
      ) STRICT;
      CREATE INDEX audit_account_at ON audit (account, at);

      CREATE TABLE logins (
        id         TEXT PRIMARY KEY,
        account    TEXT NOT NULL,
        flow       TEXT NOT NULL,
        status     TEXT NOT NULL,
        data       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
    `);
  },

  function bindGrantsToTheirIssuer(db) {
    // Rule 8 (docs/architecture.md): a grant belongs to the provider and client that issued it. The
    // identity (driver, issuer, endpoints, client id) is recorded with the grant, so a
    // config edited while the daemon was stopped cannot send it to another provider.
    // Grants from before this step get the account's current identity at start-up.
    db.exec(`
      ALTER TABLE grants ADD COLUMN bound_to TEXT;
      -- When the refresh token itself stops working, where the provider says (epoch ms).
      ALTER TABLE grants ADD COLUMN refresh_expires_at INTEGER;
      CREATE INDEX logins_account_updated ON logins (account, updated_at);
    `);
  },

  function nameImportsInFlight(db) {
    // Rule 5: an import's proving refresh is marked in flight like a refresh, but the mark
    // must say it is an import's (the grant's own refresh token was not sent), so a restart
    // blames neither the grant nor waits for it (Store.markImport).
    db.exec(`ALTER TABLE grants ADD COLUMN in_flight_for TEXT CHECK (in_flight_for IN ('import'));`);
  },
  keepLoginSecretsSealed,

  function findLoginsByState(db) {
    // A browser login's callback finds its login by a keyed hash of its state (never the
    // state in clear): `POST /v1/logins/callback` (rows.ts loginStateHash).
    db.exec(`
      ALTER TABLE logins ADD COLUMN state_hash TEXT;
      CREATE UNIQUE INDEX logins_state_hash ON logins (state_hash) WHERE state_hash IS NOT NULL;
    `);
  },
  sayHowEachAuditedActionEnded,

  function recordWhenGrantsWereObtainedAndRefreshed(db) {
    // What an app's `info` reports (GET /v1/accounts/:name): when the grant was obtained (a
    // login, an import, the recover step) and when it was last refreshed. Unknown (NULL) for
    // the grants already stored.
    db.exec(`
      ALTER TABLE grants ADD COLUMN granted_at INTEGER;
      ALTER TABLE grants ADD COLUMN refreshed_at INTEGER;
    `);
  },
  findAccountsAuditRowsOffTheAnswerPath,
];

/** The schema version from which logins keep their secrets sealed (the step keepLoginSecretsSealed). */
export const LOGIN_SECRETS_VERSION = MIGRATIONS.indexOf(keepLoginSecretsSealed) + 1;

/** The schema version from which audit rows say how their action ended (the step sayHowEachAuditedActionEnded). */
export const AUDIT_OUTCOME_VERSION = MIGRATIONS.indexOf(sayHowEachAuditedActionEnded) + 1;

/** The schema version from which an account's audit rows are indexed off the answer path (findAccountsAuditRowsOffTheAnswerPath). */
export const AUDIT_BY_ACCOUNT_VERSION = MIGRATIONS.indexOf(findAccountsAuditRowsOffTheAnswerPath) + 1;

/** The schema version this code writes: the number of migrations. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Bring `db` up to `SCHEMA_VERSION`, one transaction per step; refuse a database written by a newer tokend. */
export function migrate(db: Database.Database, file: string): void {
  for (;;) {
    // BEGIN IMMEDIATE takes the write lock before user_version is read, so two
    // processes opening a fresh file cannot both run the same step.
    const ranOne = db
      .transaction((): boolean => {
        const version = userVersion(db);
        if (version > SCHEMA_VERSION) {
          throw new Error(
            `the database ${file} has schema version ${version}, but this tokend knows only up to ${SCHEMA_VERSION}: it was written by a newer tokend; upgrade tokend`,
          );
        }
        if (version === SCHEMA_VERSION) return false;
        MIGRATIONS[version]!(db);
        // PRAGMA cannot take a bound parameter; the value is our own integer.
        db.pragma(`user_version = ${version + 1}`);
        return true;
      })
      .immediate();
    if (!ranOne) return;
  }
}

/** The schema version recorded in the file (0 for a new, empty one). */
export function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}
