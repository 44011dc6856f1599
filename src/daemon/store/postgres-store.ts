/**
 * A fleet's store: the grants, secrets, logins and audit log of several daemons in one
 * PostgreSQL database (docs/fleet.md), sealed exactly as the SQLite store seals them (the
 * same key on every daemon, the row and column as associated data), so the database never
 * holds a token or secret in clear.
 *
 * - One refresh per grant in the whole fleet: `withGrantLock` holds a transaction-scoped
 *   advisory lock on a connection of its own while the broker re-reads, marks, calls the
 *   provider and commits (each of those an autocommit statement on the pool, so the
 *   in-flight mark is durable before the request leaves). The lock goes when the holder
 *   commits, or when its connection drops: a daemon killed mid-refresh frees it at once.
 * - Every write that changes a grant announces it in the same statement
 *   (`pg_notify('tokend_grants', '<account>:<generation>')`, delivered on commit); the
 *   listener hands other daemons' announcements to the broker.
 * - Logins are the fleet's: any daemon lists them and completes a browser login's callback;
 *   each row names the daemon that started it (`node`, what a restart takes up). A login's
 *   lease (`holdLogin`, a session advisory lock) lets one daemon at a time poll or exchange
 *   its code, and each login write is announced (`pg_notify('tokend_logins', …)`) so every
 *   daemon tells its event subscribers. The audit log is the fleet's.
 */
import { randomBytes } from 'node:crypto';
import type { Notification, PoolClient, PoolConfig } from 'pg';
import { describeDatabase, FLEET_CHANNEL, FLEET_LOGIN_CHANNEL, FLEET_SCHEMA as S } from '../../protocol/fleet.js';
import type { Logger } from '../log.js';
import { GenerationMismatchError, StoreError } from './errors.js';
import { listenForGrants, type GrantListener } from './postgres-listener.js';
import { postgresError } from './postgres-errors.js';
import { prepareFleet } from './postgres-schema.js';
import {
  AUDIT_SELECT,
  GRANT_SUMMARY_COLUMNS,
  LOGIN_WITH_SECRETS,
  commitColumns,
  decodeAccessToken,
  auditColumns,
  auditListing,
  checkAuditPrune,
  decodeAudit,
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
  type Row,
} from './rows.js';
import type {
  AuditEntry,
  AuditQuery,
  FleetLink,
  GrantRecord,
  LoginLease,
  LoginRecord,
  LoginStatusValue,
  Store,
  TokenUpdate,
} from './types.js';

export interface PostgresStoreOptions {
  url: string;
  keyFile: string;
  /** This daemon's lasting name in the fleet (host and data folder): its logins and audit rows are filed under it. */
  node: string;
  log: Logger;
  /**
   * How long to wait for another daemon's grant lock, and how long a holder may sit on it
   * without a word to the database before the server ends its session (ms); read at each lock.
   */
  lockTimeouts: () => { waitMs: number; holdMs: number };
  now?: () => number;
  /** After this daemon (re)connects, another daemon's in-flight mark counts as live this long (it may be reconnecting too). */
  reconnectGraceMs?: number;
}

const GRANT_COLUMNS = `account, refresh_token, access_token, token_type, expires_at, obtained_at, scope, generation, status,
  in_flight_since, in_flight_by, last_error, updated_at, bound_to, refresh_expires_at, in_flight_for`;
/** Appended to a grant write: the announcement, sent only if the statement commits. */
const NOTIFY = `pg_notify('${FLEET_CHANNEL}', account || ':' || generation)`;

/** Connect to the fleet's database, migrate it if this daemon is the first, check the key, and return the store. */
export async function openPostgresStore(opts: PostgresStoreOptions): Promise<Store> {
  // Loaded here, not at the top: a daemon of its own never pays for pg.
  const pg = (await import('pg')).default;
  const now = opts.now ?? Date.now;
  const where = describeDatabase(opts.url);
  const instance = `${opts.node}:${process.pid}:${randomBytes(2).toString('hex')}`;
  // int8 columns hold epoch ms and generations, well inside Number's exact range.
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as never,
  };
  const base: PoolConfig = {
    connectionString: opts.url,
    // How other daemons see whether the holder of an in-flight mark is still connected.
    application_name: applicationName(instance),
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    connectionTimeoutMillis: 5_000,
    types,
  };
  // One connection of each pool stays open once made (`min`): a reload after a notification,
  // or a refresh after a quiet hour, does not pay for a new connection and its authentication.
  const pool = new pg.Pool({ ...base, min: 1, max: 8, idleTimeoutMillis: 30_000, query_timeout: 15_000 });
  // Lock holders: one connection per grant being refreshed, held for the provider call.
  const lockPool = new pg.Pool({ ...base, min: 1, max: 16, idleTimeoutMillis: 30_000 });
  // An idle pooled connection the server ends (a restart) errors here; the pool replaces it.
  const onIdleError = (err: Error) =>
    opts.log.debug('a pooled connection to the fleet database ended', { database: where, error: err.message });
  pool.on('error', onIdleError);
  lockPool.on('error', onIdleError);
  // Our own pool's backends: a notification they sent is our own commit, already in memory.
  const ownBackends = new Set<number>();
  const backendOf = (c: PoolClient) => (c as unknown as { processID: number | null }).processID;
  pool.on('connect', (c) => {
    const pid = backendOf(c);
    if (pid !== null) ownBackends.add(pid);
  });
  pool.on('remove', (c) => {
    const pid = backendOf(c);
    if (pid !== null) ownBackends.delete(pid);
  });

  let key: Buffer;
  try {
    const client = await pool.connect().catch((err) => Promise.reject(postgresError(err, where)));
    try {
      key = await prepareFleet(client, { keyFile: opts.keyFile, where, now: now() });
    } finally {
      client.release();
    }
  } catch (err) {
    await Promise.allSettled([pool.end(), lockPool.end()]);
    throw err instanceof StoreError ? err : postgresError(err, where);
  }

  const q = async (text: string, values: unknown[] = []): Promise<Row[]> => {
    try {
      return (await pool.query(text, values)).rows as Row[];
    } catch (err) {
      throw postgresError(err, where);
    }
  };
  const toGrant = (row: Row): GrantRecord => decodeGrant(row, key, where);
  // Writes to logins keep their order (a login's pending → active may follow within a tick).
  let loginWrites: Promise<unknown> = Promise.resolve();

  let listener: GrantListener | undefined;
  const loginWatchers: Array<(id: string, status: LoginStatusValue) => void> = [];
  // The connections that hold login leases (one each, outside the pools: a device login
  // holds its lease for minutes), ended by close().
  const leases = new Set<LoginLease>();
  const graceMs = opts.reconnectGraceMs ?? 10_000;

  const fleet: FleetLink = {
    instance,
    where,
    watch(handlers) {
      listener = listenForGrants({
        // query_timeout: a heartbeat on a connection that died silently fails instead of hanging.
        newClient: () => new pg.Client({ ...base, query_timeout: 10_000 }),
        channels: [FLEET_CHANNEL, FLEET_LOGIN_CHANNEL],
        log: opts.log,
        where,
        onConnected: handlers.resync,
        onNotification: (n: Notification) => {
          if (ownBackends.has(n.processId) || !n.payload) return;
          if (n.channel === FLEET_LOGIN_CHANNEL) {
            // '<status>:<login id>'
            const at = n.payload.indexOf(':');
            if (at > 0) for (const fn of loginWatchers) fn(n.payload.slice(at + 1), n.payload.slice(0, at) as LoginStatusValue);
            return;
          }
          const at = n.payload.lastIndexOf(':');
          const generation = Number(n.payload.slice(at + 1));
          if (at > 0 && Number.isSafeInteger(generation)) handlers.grantChanged(n.payload.slice(0, at), generation);
        },
      });
    },
    watchLogins(fn) {
      loginWatchers.push(fn);
    },
    async generations() {
      const rows = await q(`SELECT account, generation, status FROM ${S}.grants`);
      return new Map(rows.map((r) => [String(r.account), { generation: Number(r.generation), status: r.status as GrantRecord['status'] }]));
    },
    async holderAlive(holder) {
      // Just back from an outage: the holder may not have reconnected yet. Without a listener
      // we cannot know either. Both count as alive: waiting costs a retry, a replay costs the grant.
      const back = listener?.reconnectedAt();
      if (!listener?.connected() || (back !== undefined && now() - back < graceMs)) return true;
      const rows = await q('SELECT 1 FROM pg_stat_activity WHERE application_name = $1 LIMIT 1', [applicationName(holder)]);
      return rows.length > 0;
    },
  };

  const store: Store = {
    fleet,

    async getGrant(account) {
      const [row] = await q(`SELECT * FROM ${S}.grants WHERE account = $1`, [account]);
      return row ? toGrant(row) : undefined;
    },

    async listGrants(page) {
      const shared = new Map<string, string>();
      // in_flight_by too: a starting daemon must tell another daemon's live mark from its own
      // interrupted one (GrantLoad), as getGrant does.
      const rows = page
        ? await q(`SELECT ${GRANT_SUMMARY_COLUMNS}, in_flight_by FROM ${S}.grants WHERE account > $1 ORDER BY account LIMIT $2`, [
            page.after ?? '',
            page.limit,
          ])
        : await q(`SELECT ${GRANT_SUMMARY_COLUMNS}, in_flight_by FROM ${S}.grants ORDER BY account`);
      return rows.map((row) => decodeGrantSummary(row, where, shared));
    },

    async listAccessTokens(after, limit) {
      const rows = await q(
        `SELECT ${GRANT_SUMMARY_COLUMNS}, in_flight_by, access_token FROM ${S}.grants WHERE account > $1 AND access_token IS NOT NULL AND status = 'active' ORDER BY account LIMIT $2`,
        [after ?? '', limit],
      );
      return rows.map((row) => decodeAccessToken(row, key, where));
    },

    async getAccessToken(account) {
      const [row] = await q(`SELECT * FROM ${S}.grants WHERE account = $1`, [account]);
      return row ? decodeAccessToken(row, key, where) : undefined;
    },

    async replaceGrant(account, t, secrets = {}) {
      const names = Object.keys(secrets);
      const c = grantColumns(key, account, t);
      // One statement: the grant and the secrets that came with it commit together.
      const [row] = await q(
        `WITH g AS (
           INSERT INTO ${S}.grants AS o (${GRANT_COLUMNS}, granted_at, refreshed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 'active', NULL, NULL, NULL, $8, $9, $10, NULL, $8, NULL)
           ON CONFLICT (account) DO UPDATE SET
             refresh_token = excluded.refresh_token, access_token = excluded.access_token,
             token_type = excluded.token_type, expires_at = excluded.expires_at,
             obtained_at = excluded.obtained_at, scope = excluded.scope,
             generation = o.generation + 1, status = 'active', in_flight_since = NULL, in_flight_by = NULL,
             in_flight_for = NULL, last_error = NULL, updated_at = excluded.updated_at, bound_to = excluded.bound_to,
             refresh_expires_at = excluded.refresh_expires_at, granted_at = excluded.granted_at, refreshed_at = NULL
           RETURNING *),
         s AS (
           INSERT INTO ${S}.secrets (account, name, value, updated_at)
           SELECT $1, n, v, $8 FROM unnest($11::text[], $12::bytea[]) AS x(n, v)
           ON CONFLICT (account, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at)
         SELECT g.*, ${NOTIFY} FROM g`,
        [
          account,
          c.refresh_token,
          c.access_token,
          c.token_type,
          c.expires_at,
          c.obtained_at,
          c.scope,
          now(),
          c.bound_to,
          c.refresh_expires_at,
          names,
          names.map((n) => sealSecret(key, account, n, secrets[n]!)),
        ],
      );
      return toGrant(row!);
    },

    async setBindings(bindings) {
      if (bindings.length === 0) return;
      await q(
        `UPDATE ${S}.grants AS g SET bound_to = b.bound_to, updated_at = $3 FROM unnest($1::text[], $2::text[]) AS b(account, bound_to) WHERE g.account = b.account`,
        [bindings.map((b) => b.account), bindings.map((b) => b.boundTo), now()],
      );
    },

    async commitRefresh(account, expected, t: TokenUpdate) {
      // A NULL refresh token keeps the stored one (rows.ts, commitColumns).
      const c = commitColumns(key, account, t);
      const rows = await q(
        `WITH g AS (
           UPDATE ${S}.grants SET
             refresh_token = coalesce($3, refresh_token), access_token = $4,
             refresh_expires_at = CASE WHEN $3::bytea IS NULL THEN coalesce($9, refresh_expires_at) ELSE $9 END,
             token_type = $5, expires_at = $6, obtained_at = $7, scope = $8,
             generation = generation + 1, status = 'active', in_flight_since = NULL, in_flight_by = NULL,
             in_flight_for = NULL, last_error = NULL, updated_at = $10, refreshed_at = $10
           WHERE account = $1 AND generation = $2
           RETURNING *)
         SELECT g.*, ${NOTIFY} FROM g`,
        [
          account,
          expected,
          c.refresh_token,
          c.access_token,
          c.token_type,
          c.expires_at,
          c.obtained_at,
          c.scope,
          c.refresh_expires_at,
          now(),
        ],
      );
      // As the SQLite store: what was just sealed is not opened again (rows.ts, decodeWrittenGrant).
      if (rows[0]) return decodeWrittenGrant(rows[0], key, where, t);
      // Read after the refused UPDATE, not in its statement (the SQLite store reads it in the
      // same transaction): another daemon may have moved it on since. It only names the
      // generation that won in the error; nothing is decided on it.
      const [g] = await q(`SELECT generation FROM ${S}.grants WHERE account = $1`, [account]);
      throw new GenerationMismatchError(account, expected, g ? Number(g.generation) : null);
    },

    async markInFlight(account, at) {
      const rows = await q(
        `UPDATE ${S}.grants SET in_flight_since = $1, in_flight_by = $2, in_flight_for = NULL, updated_at = $3 WHERE account = $4 RETURNING 1`,
        [at, instance, now(), account],
      );
      // Refusing here stops a refresh whose safety mark could not be recorded.
      if (rows.length === 0) throw new StoreError('no_grant', `cannot mark a refresh in flight: account "${account}" has no grant`);
    },

    async markImport(account, at, placeholder) {
      // A placeholder (generation 0, no token) holds the mark where the account has no grant.
      await q(
        `INSERT INTO ${S}.grants AS o (account, generation, status, in_flight_since, in_flight_by, in_flight_for, last_error, updated_at, bound_to)
         VALUES ($1, 0, 'reauth_required', $2, $3, 'import', $4, $5, $6)
         ON CONFLICT (account) DO UPDATE SET in_flight_since = $2, in_flight_by = $3, in_flight_for = 'import', updated_at = $5`,
        [account, at, instance, placeholder.lastError, now(), placeholder.boundTo],
      );
    },

    async endImport(account) {
      await q(
        `WITH d AS (DELETE FROM ${S}.grants WHERE account = $1 AND generation = 0 AND in_flight_for = 'import' RETURNING 1)
         UPDATE ${S}.grants SET in_flight_since = NULL, in_flight_by = NULL, in_flight_for = NULL WHERE account = $1 AND generation <> 0 AND in_flight_for = 'import'`,
        [account],
      );
    },

    async clearInFlight(account) {
      await q(
        `UPDATE ${S}.grants SET in_flight_since = NULL, in_flight_by = NULL, in_flight_for = NULL, updated_at = $1 WHERE account = $2`,
        [now(), account],
      );
    },

    async abandonInFlight(account) {
      await q(`UPDATE ${S}.grants SET in_flight_by = NULL WHERE account = $1 AND in_flight_by = $2`, [account, instance]);
    },

    async setStatus(account, status, lastError) {
      await q(
        `WITH g AS (UPDATE ${S}.grants SET status = $1, last_error = $2, in_flight_since = NULL, in_flight_by = NULL, in_flight_for = NULL, updated_at = $3 WHERE account = $4 RETURNING *) SELECT ${NOTIFY} FROM g`,
        [status, lastError, now(), account],
      );
    },

    async deleteGrant(account) {
      // Generation 0: the grant is gone (the other daemons forget it).
      await q(
        `WITH d AS (DELETE FROM ${S}.grants WHERE account = $1 RETURNING account) SELECT pg_notify('${FLEET_CHANNEL}', account || ':0') FROM d`,
        [account],
      );
    },

    async getSecret(account, name) {
      const [row] = await q(`SELECT value FROM ${S}.secrets WHERE account = $1 AND name = $2`, [account, name]);
      return row ? openSecret(key, account, name, row.value, where) : undefined;
    },

    async getSecrets(account) {
      const out = new Map<string, string>();
      for (const row of await q(`SELECT name, value FROM ${S}.secrets WHERE account = $1`, [account])) {
        const name = String(row.name);
        out.set(name, openSecret(key, account, name, row.value, where));
      }
      return out;
    },

    async putSecret(account, name, value) {
      await q(
        `INSERT INTO ${S}.secrets (account, name, value, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (account, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
        [account, name, sealSecret(key, account, name, value), now()],
      );
    },

    async putSecretIfAbsent(account, name, value) {
      // Whoever inserts first wins; the others read the winner's (one round trip either way).
      const [row] = await q(
        `WITH ins AS (
           INSERT INTO ${S}.secrets (account, name, value, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account, name) DO NOTHING RETURNING value)
         SELECT value FROM ins UNION ALL SELECT value FROM ${S}.secrets WHERE account = $1 AND name = $2 LIMIT 1`,
        [account, name, sealSecret(key, account, name, value), now()],
      );
      return row ? openSecret(key, account, name, row.value, where) : value;
    },

    async deleteSecrets(account) {
      await q(`DELETE FROM ${S}.secrets WHERE account = $1`, [account]);
    },

    putLogin(login: LoginRecord) {
      // One statement, so the login and its secrets commit together: a finished login's go.
      const secrets = login.status === 'pending' && login.secrets ? sealLoginSecrets(key, login.id, login.secrets) : null;
      const write = loginWrites.then(() =>
        q(
          `WITH l AS (
             INSERT INTO ${S}.logins (id, node, account, flow, status, data, created_at, updated_at, state_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $11)
             ON CONFLICT (id) DO UPDATE SET account = excluded.account, flow = excluded.flow, status = excluded.status,
               data = excluded.data, updated_at = excluded.updated_at,
               state_hash = COALESCE(excluded.state_hash, ${S}.logins.state_hash)
             RETURNING id),
           gone AS (DELETE FROM ${S}.login_secrets WHERE login_id = $1 AND $5 <> 'pending'),
           kept AS (
             INSERT INTO ${S}.login_secrets (login_id, secrets, updated_at)
             SELECT id, $9, $10 FROM l WHERE $9::bytea IS NOT NULL
             ON CONFLICT (login_id) DO UPDATE SET secrets = excluded.secrets, updated_at = excluded.updated_at)
           SELECT pg_notify('${FLEET_LOGIN_CHANNEL}', $5 || ':' || id) FROM l`,
          [
            login.id,
            opts.node,
            login.account,
            login.flow,
            login.status,
            JSON.stringify(login.data),
            login.created_at,
            login.updated_at,
            secrets,
            now(),
            stateHashOf(key, login),
          ],
        ),
      );
      loginWrites = write.catch(() => undefined);
      return write.then(() => undefined);
    },

    async getLogin(id) {
      await loginWrites;
      const [row] = await q(`${LOGIN_WITH_SECRETS(`${S}.logins`, `${S}.login_secrets`)} WHERE l.id = $1`, [id]);
      return row ? decodeLogin(row, where, key) : undefined;
    },

    async findLoginByState(state) {
      await loginWrites;
      // Any daemon's login: a callback that reaches another daemon than the one that started it completes it.
      const [row] = await q(`${LOGIN_WITH_SECRETS(`${S}.logins`, `${S}.login_secrets`)} WHERE l.state_hash = $1`, [
        loginStateHash(key, state),
      ]);
      return row ? decodeLogin(row, where, key) : undefined;
    },

    async listLogins(o: { status?: LoginStatusValue; own?: boolean } = {}) {
      await loginWrites;
      // NULL parameters select every status, every daemon's.
      const rows = await q(
        `${LOGIN_WITH_SECRETS(`${S}.logins`, `${S}.login_secrets`)}
         WHERE ($1::text IS NULL OR l.node = $1) AND ($2::text IS NULL OR l.status = $2) ORDER BY l.created_at DESC, l.id`,
        [o.own ? opts.node : null, o.status ?? null],
      );
      return rows.map((row) => decodeLogin(row, where, key));
    },

    async lastFinishedLogin(account) {
      await loginWrites;
      const [row] = await q(`SELECT * FROM ${S}.logins WHERE account = $1 AND status <> 'pending' ORDER BY updated_at DESC, id LIMIT 1`, [
        account,
      ]);
      return row ? decodeLogin(row, where) : undefined;
    },

    async pruneLogins(before) {
      // The fleet's table: any daemon prunes it, as the audit log.
      const rows = await q(`DELETE FROM ${S}.logins WHERE status <> 'pending' AND updated_at < $1 RETURNING 1`, [before]);
      return rows.length;
    },

    async holdLogin(id) {
      const lockKey = `${S}.login:${id}`;
      // A look on a pooled connection first (taken and given back in one statement): a
      // daemon looking for logins to take up every few seconds opens no connection for a
      // login another daemon holds.
      const [free] = await q(
        'SELECT CASE WHEN pg_try_advisory_lock(hashtextextended($1, 0)) THEN pg_advisory_unlock(hashtextextended($1, 0)) ELSE false END AS ok',
        [lockKey],
      );
      if (!free?.ok) return undefined;
      const client = new pg.Client({ ...base });
      const lost = new AbortController();
      let released = false;
      // The server ending the session ends the lease with it: an error event, never a crash.
      const end = () => released || lost.abort();
      client.on('error', end);
      client.on('end', end);
      try {
        await client.connect();
        const [row] = (await client.query('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok', [lockKey])).rows;
        if (!row?.ok) {
          await client.end().catch(() => undefined);
          return undefined;
        }
      } catch (err) {
        await client.end().catch(() => undefined);
        throw postgresError(err, where);
      }
      const lease: LoginLease = {
        lost: lost.signal,
        async release() {
          if (!leases.delete(lease)) return;
          released = true;
          // Ending the session releases its advisory locks.
          await client.end().catch(() => undefined);
        },
      };
      leases.add(lease);
      return lease;
    },

    async appendAudit(entries: AuditEntry[]) {
      if (entries.length === 0) return;
      // One statement for the batch: one array per column in, one row per entry out.
      const columns = entries.map(auditColumns);
      const column = (i: number) => columns.map((c) => c[i]);
      await q(
        `INSERT INTO ${S}.audit (at, account, client, action, outcome, code, task, detail, node)
         SELECT e.*, $9 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
           AS e(at, account, client, action, outcome, code, task, detail)`,
        [...[0, 1, 2, 3, 4, 5, 6, 7].map(column), opts.node],
      );
    },

    async listAudit(query: AuditQuery = {}) {
      const { sql: tail, values } = auditListing(query, (n) => `$${n}`);
      const rows = await q(`${AUDIT_SELECT} ${S}.audit ${tail}`, values);
      return rows.map((row) => decodeAudit(row, where));
    },

    async pruneAudit(o: { before: number; keep: number }) {
      checkAuditPrune(o);
      // The fleet's one table: whichever daemon prunes, the same rows go (ids follow the writes).
      const old = await q(`DELETE FROM ${S}.audit WHERE at < $1 RETURNING 1`, [o.before]);
      const beyond = await q(
        `DELETE FROM ${S}.audit WHERE id <= (SELECT id FROM ${S}.audit ORDER BY id DESC LIMIT 1 OFFSET $1) RETURNING 1`,
        [o.keep],
      );
      return old.length + beyond.length;
    },

    async withGrantLock<T>(account: string, fn: () => Promise<T>): Promise<T> {
      const { waitMs, holdMs } = opts.lockTimeouts();
      let client: PoolClient;
      try {
        client = await lockPool.connect();
      } catch (err) {
        throw postgresError(err, where);
      }
      // The server may end the session while fn runs (a restart, or the hold limit): an
      // error event then, which must not crash the daemon; the lock is gone with it.
      let broken = false;
      const onError = () => (broken = true);
      client.on('error', onError);
      try {
        // Values are our own integers: SET takes no parameters.
        await client.query(
          `BEGIN; SET LOCAL lock_timeout = ${Math.round(waitMs)}; SET LOCAL idle_in_transaction_session_timeout = ${Math.round(holdMs)}`,
        );
        await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${S}.grant:${account}`]);
      } catch (err) {
        client.off('error', onError);
        client.release(true);
        throw postgresError(err, where);
      }
      try {
        return await fn();
      } finally {
        if (!broken) await client.query('COMMIT').catch(() => (broken = true));
        client.off('error', onError);
        client.release(broken);
      }
    },

    async close() {
      await listener?.close();
      await loginWrites;
      await Promise.allSettled([...leases].map((l) => l.release()));
      await Promise.allSettled([pool.end(), lockPool.end()]);
    },
  };
  return store;
}

/** What a daemon's connections call themselves (PostgreSQL keeps 63 bytes of it). */
function applicationName(instance: string): string {
  return `tokend ${instance}`.slice(0, 63);
}
