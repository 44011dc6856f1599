/**
 * Rows as both stores hold them (SQLite and a fleet's PostgreSQL share the columns and the
 * sealing): the associated data that binds a sealed value to its row and column, and the
 * decoders that check each row on its way out. `file` names the database in messages.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import { open as unseal, seal } from './crypto.js';
import { StoreError } from './errors.js';
import type {
  AuditDetail,
  AuditEntry,
  AuditOutcome,
  AuditQuery,
  AuditRow,
  GrantRecord,
  GrantSummary,
  GrantWrite,
  LoginRecord,
  LoginSecrets,
  LoginStatusValue,
  StoredAccessToken,
  TokenUpdate,
} from './types.js';

export interface Row {
  [column: string]: unknown;
}

/** Longest `client` string kept in the audit log: it is self-declared and untrusted. */
export const AUDIT_CLIENT_MAX = 200;
export const AUDIT_DEFAULT_LIMIT = 1000;

export const grantAad = (account: string, column: 'refresh_token' | 'access_token') => `grant:${account}:${column}`;
export const secretAad = (account: string, name: string) => `secret:${account}:${name}`;
export const loginSecretsAad = (id: string) => `login:${id}:secrets`;

// What both stores write, sealed here once: they differ only in the SQL that binds it.

function sealOrNull(key: Buffer, value: string | null | undefined, aad: string): Buffer | null {
  return value == null ? null : seal(key, value, aad);
}

/** The columns replaceGrant writes, tokens sealed (a login's or an import's whole grant). */
export function grantColumns(key: Buffer, account: string, t: GrantWrite) {
  return {
    refresh_token: sealOrNull(key, t.refresh_token, grantAad(account, 'refresh_token')),
    access_token: sealOrNull(key, t.access_token, grantAad(account, 'access_token')),
    token_type: t.token_type ?? null,
    expires_at: t.expires_at ?? null,
    obtained_at: t.obtained_at ?? null,
    scope: t.scope ?? null,
    bound_to: t.bound_to,
    refresh_expires_at: t.refresh_expires_at ?? null,
  };
}

/**
 * The columns commitRefresh writes, tokens sealed. A null `refresh_token` keeps the stored
 * one (the provider did not rotate it, RFC 6749 §6): its sealed value names the row and
 * column, which do not change, so it stays valid; its `refresh_expires_at` is kept too unless
 * the provider gave a new one. Both stores' UPDATE say so with the same coalesce.
 */
export function commitColumns(key: Buffer, account: string, t: TokenUpdate) {
  return {
    refresh_token: sealOrNull(key, t.refresh_token, grantAad(account, 'refresh_token')),
    access_token: seal(key, t.access_token, grantAad(account, 'access_token')),
    token_type: t.token_type,
    expires_at: t.expires_at,
    obtained_at: t.obtained_at,
    scope: t.scope,
    refresh_expires_at: t.refresh_expires_at ?? null,
  };
}

/** A client credential or password of an account, sealed to its account and name. */
export function sealSecret(key: Buffer, account: string, name: string, value: string): Buffer {
  return seal(key, value, secretAad(account, name));
}

/** A stored secret opened (the row's `value`, which must be a blob). */
export function openSecret(key: Buffer, account: string, name: string, blob: unknown, file: string): string {
  if (!Buffer.isBuffer(blob)) throw invalidRow(file, 'secrets', account, 'value');
  return decrypt(key, blob, secretAad(account, name), file);
}

/** A pending login's secrets as one sealed blob, bound to the login's id. */
export function sealLoginSecrets(key: Buffer, id: string, secrets: LoginSecrets): Buffer {
  return seal(key, JSON.stringify(secrets), loginSecretsAad(id));
}

/**
 * The keyed hash (HMAC-SHA256) a login is found by from the `state` of its callback
 * (`POST /v1/logins/callback`): the state itself is a secret and is stored only sealed. The
 * HMAC key is derived from the master key (HKDF, RFC 5869) so it is as protected as the
 * key and no second secret needs keeping.
 */
export function loginStateHash(key: Buffer, state: string): string {
  const hmacKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'tokend login state v1', 32));
  return createHmac('sha256', hmacKey).update(state, 'utf8').digest('base64url');
}

/** The state_hash column a login write sets: from the state among its secrets, when they are given. */
export function stateHashOf(key: Buffer, login: LoginRecord): string | null {
  const state = login.status === 'pending' ? login.secrets?.state : undefined;
  return state ? loginStateHash(key, state) : null;
}

/**
 * The login_secrets table's columns selected with a login row (`secrets`: the sealed blob
 * or NULL): both stores read logins with it joined.
 */
export const LOGIN_WITH_SECRETS = (logins: string, secrets: string) =>
  `SELECT l.*, s.secrets FROM ${logins} l LEFT JOIN ${secrets} s ON s.login_id = l.id`;

/** Cut `s` to at most `max` UTF-16 units without splitting a surrogate pair. */
export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  const code = s.charCodeAt(max - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

// Rows are checked on the way out: STRICT tables and the CHECK on
// status already guard the types, so this catches a file edited by hand or by a bug.

/** A grant row, decrypted and checked. */
export function decodeGrant(row: Row, key: Buffer, file: string): GrantRecord {
  const grant = decodeAccessToken(row, key, file) as GrantRecord;
  grant.refresh_token = sealedColumn(row, 'refresh_token', key, file);
  return grant;
}

/**
 * A grant row just written with these tokens: what was sealed is not opened again (a
 * refresh's commit, which would decrypt what it just encrypted); only a refresh token the provider did not rotate is.
 */
export function decodeWrittenGrant(
  row: Row,
  key: Buffer,
  file: string,
  written: { access_token: string; refresh_token?: string },
): GrantRecord {
  return {
    ...grantFields(row, file),
    access_token: written.access_token,
    refresh_token: written.refresh_token ?? sealedColumn(row, 'refresh_token', key, file),
  };
}

/** A grant row without its refresh token (not even read): what serving a stored access token needs. */
export function decodeAccessToken(row: Row, key: Buffer, file: string): StoredAccessToken {
  return { ...grantFields(row, file), access_token: sealedColumn(row, 'access_token', key, file) };
}

/** A grant row's columns but its tokens. */
function grantFields(row: Row, file: string): Omit<GrantRecord, 'refresh_token' | 'access_token'> {
  const { has_access_token: _a, has_refresh_token: _r, ...fields } = decodeGrantFields(row, file);
  return fields;
}

/**
 * A grant row as memory holds it (GrantSummary): nothing decrypted. `has_refresh_token` and
 * `has_access_token` are selected as such (GRANT_SUMMARY_COLUMNS), so the sealed tokens are
 * not even read: at start-up, 10 000 grants cost 140 ms of decrypting access tokens most of
 * which nobody asks for soon (the many-accounts bench). `shared` makes rows with equal text share one
 * string (a scope, a token type): one list holds thousands of rows that differ in little.
 */
export function decodeGrantSummary(row: Row, file: string, shared?: Map<string, string>): GrantSummary {
  const g = decodeGrantFields(row, file);
  if (shared) {
    g.scope = g.scope === null ? null : share(shared, g.scope);
    g.token_type = g.token_type === null ? null : share(shared, g.token_type);
    g.bound_to = g.bound_to === null ? null : share(shared, g.bound_to);
  }
  return g;
}

function share(shared: Map<string, string>, s: string): string {
  const known = shared.get(s);
  if (known !== undefined) return known;
  shared.set(s, s);
  return s;
}

/** The columns of a grant row but its sealed tokens, and whether each token is there (for decodeGrantSummary). */
const SUMMARY_COLUMNS = [
  'account',
  'token_type',
  'expires_at',
  'obtained_at',
  'scope',
  'generation',
  'status',
  'in_flight_since',
  'in_flight_for',
  'last_error',
  'updated_at',
  'bound_to',
  'refresh_expires_at',
  'granted_at',
  'refreshed_at',
  'has_refresh_token',
  'has_access_token',
] as const;
export const GRANT_SUMMARY_COLUMNS = SUMMARY_COLUMNS.map((c) =>
  c === 'has_refresh_token'
    ? 'refresh_token IS NOT NULL AS has_refresh_token'
    : c === 'has_access_token'
      ? 'access_token IS NOT NULL AS has_access_token'
      : c,
).join(', ');

/**
 * A row of GRANT_SUMMARY_COLUMNS selected as an array (better-sqlite3's `raw()`: building
 * 10 000 row objects in C++ took as long again as reading them) as a Row.
 */
export function summaryRow(v: unknown[]): Row {
  const row: Row = {};
  for (let i = 0; i < SUMMARY_COLUMNS.length; i++) row[SUMMARY_COLUMNS[i]!] = v[i];
  return row;
}

function decodeGrantFields(row: Row, file: string): GrantSummary {
  const account = row.account;
  if (typeof account !== 'string') throw invalidRow(file, 'grants', '?', 'account');
  const bad = (column: string) => invalidRow(file, 'grants', account, column);
  // The literal, not the row's copy: one string for every grant.
  const status = row.status === 'active' ? 'active' : row.status === 'reauth_required' ? 'reauth_required' : undefined;
  if (!status) throw bad('status');
  const grant: GrantSummary = {
    account,
    token_type: textOrNull(row, 'token_type', bad),
    expires_at: intOrNull(row, 'expires_at', bad),
    obtained_at: intOrNull(row, 'obtained_at', bad),
    scope: textOrNull(row, 'scope', bad),
    generation: int(row, 'generation', bad),
    status,
    in_flight_since: intOrNull(row, 'in_flight_since', bad),
    in_flight_for: inFlightFor(row, bad),
    last_error: textOrNull(row, 'last_error', bad),
    updated_at: int(row, 'updated_at', bad),
    bound_to: textOrNull(row, 'bound_to', bad),
    refresh_expires_at: intOrNull(row, 'refresh_expires_at', bad),
    granted_at: intOrNull(row, 'granted_at', bad),
    refreshed_at: intOrNull(row, 'refreshed_at', bad),
    has_refresh_token: present(row, 'refresh_token', bad),
    has_access_token: present(row, 'access_token', bad),
  };
  // Only a fleet's rows say which daemon marked a refresh in flight.
  if ('in_flight_by' in row) grant.in_flight_by = textOrNull(row, 'in_flight_by', bad);
  return grant;
}

/** What an in-flight mark is for: `import`, or null (a refresh, or no mark). */
function inFlightFor(row: Row, bad: (column: string) => Error): 'import' | null {
  const v = row.in_flight_for;
  if (v === null || v === undefined) return null;
  if (v === 'import') return 'import';
  throw bad('in_flight_for');
}

/** Is the sealed column set? From the column itself, or from `has_<column>` where only that was selected. */
function present(row: Row, column: 'refresh_token' | 'access_token', bad: (column: string) => Error): boolean {
  if (column in row) return row[column] !== null;
  const v = row[`has_${column}`];
  if (v === true || v === 1) return true;
  if (v === false || v === 0) return false;
  throw bad(`has_${column}`);
}

function sealedColumn(row: Row, column: 'refresh_token' | 'access_token', key: Buffer, file: string): string | null {
  const v = row[column];
  if (v === null) return null;
  if (!Buffer.isBuffer(v)) throw invalidRow(file, 'grants', String(row.account), column);
  return decrypt(key, v, grantAad(String(row.account), column), file);
}

const LOGIN_STATUSES: readonly string[] = ['pending', 'active', 'failed', 'expired'] satisfies LoginStatusValue[];

/** A text column's reader for one row: a value that is not a string is an invalid row. */
function textReader(row: Row, bad: (column: string) => Error): (column: string) => string {
  return (column) => {
    const v = row[column];
    if (typeof v !== 'string') throw bad(column);
    return v;
  };
}

/** A login row (with its sealed `secrets`, when selected and still there), checked and opened. */
export function decodeLogin(row: Row, file: string, key?: Buffer): LoginRecord {
  const bad = (column: string) => invalidRow(file, 'logins', String(row.account), column);
  const text = textReader(row, bad);
  const status = text('status');
  if (!LOGIN_STATUSES.includes(status)) throw bad('status');
  let data: unknown;
  try {
    data = JSON.parse(text('data'));
  } catch {
    throw bad('data');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw bad('data');
  const rec: LoginRecord = {
    id: text('id'),
    account: text('account'),
    flow: text('flow'),
    status: status as LoginStatusValue,
    data: data as Record<string, unknown>,
    created_at: int(row, 'created_at', bad),
    updated_at: int(row, 'updated_at', bad),
  };
  const sealed = row.secrets;
  if (key && sealed !== undefined && sealed !== null) {
    if (!Buffer.isBuffer(sealed)) throw bad('secrets');
    const secrets = parseSecrets(decrypt(key, sealed, loginSecretsAad(rec.id), file));
    if (!secrets) throw bad('secrets');
    rec.secrets = secrets;
  }
  return rec;
}

function parseSecrets(text: string): LoginSecrets | undefined {
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    return Object.values(v).every((x) => typeof x === 'string') ? (v as LoginSecrets) : undefined;
  } catch {
    return undefined;
  }
}

const AUDIT_OUTCOMES: readonly string[] = ['ok', 'refused', 'failed'] satisfies AuditOutcome[];
/** Longest code, task or detail kept in an audit row (they come from callers or providers). */
const AUDIT_TEXT_MAX = 2000;

/** The columns an audit row is written with, in both stores' order: at, account, client, action, outcome, code, task, detail. */
export function auditColumns(e: AuditEntry): [number, string, string, string, string, string | null, string | null, string | null] {
  // A detail past the bound is left out whole: cut, it would not be JSON any more.
  const json = e.detail && Object.keys(e.detail).length > 0 ? JSON.stringify(e.detail) : null;
  const detail = json !== null && json.length <= AUDIT_TEXT_MAX ? json : null;
  const text = (v: string | null | undefined) => (v == null ? null : truncate(v, AUDIT_TEXT_MAX));
  return [e.at, e.account, truncate(e.client, AUDIT_CLIENT_MAX), e.action, e.outcome ?? 'ok', text(e.code), text(e.task), detail];
}

export const AUDIT_SELECT = 'SELECT id, at, account, client, action, outcome, code, task, detail FROM';

/** Which limit a listing asks for (AUDIT_DEFAULT_LIMIT when absent); a RangeError for one that is not a positive integer. */
export function auditLimit(query: AuditQuery): number {
  const limit = query.limit ?? AUDIT_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`listAudit: limit must be a positive integer, got ${limit}`);
  return limit;
}

/**
 * The conditions of an audit listing, with `p(value)` writing a placeholder for a value
 * (in the order they appear) and `col` naming a column (a table's alias in a join).
 */
export function auditConditions(query: AuditQuery, p: (v: unknown) => string, col: (c: string) => string = (c) => c): string[] {
  const where: string[] = [];
  if (query.account !== undefined) where.push(`${col('account')} = ${p(query.account)}`);
  if (query.action !== undefined) where.push(`${col('action')} = ${p(query.action)}`);
  if (query.since !== undefined) where.push(`${col('at')} >= ${p(query.since)}`);
  if (query.until !== undefined) where.push(`${col('at')} < ${p(query.until)}`);
  if (query.after) {
    const [at, id] = [col('at'), col('id')];
    where.push(`(${at} < ${p(query.after.at)} OR (${at} = ${p(query.after.at)} AND ${id} < ${p(query.after.id)}))`);
  }
  return where;
}

/**
 * The WHERE, ORDER and LIMIT of an audit listing, with `param(n)` writing the n-th (1-based)
 * placeholder (`?` for SQLite, `$n` for PostgreSQL); the values in order. Newest first, ties
 * by write order, so a page ends at a row (`after`) the next page starts below.
 */
export function auditListing(query: AuditQuery, param: (n: number) => string): { sql: string; values: unknown[] } {
  const limit = auditLimit(query);
  const values: unknown[] = [];
  const p = (v: unknown) => (values.push(v), param(values.length));
  const where = auditConditions(query, p);
  const sql = `${where.length > 0 ? `WHERE ${where.join(' AND ')} ` : ''}ORDER BY at DESC, id DESC LIMIT ${p(limit)}`;
  return { sql, values };
}

/** Audit rows to keep (Store.pruneAudit): `keep` must be a whole number, `before` a time. */
export function checkAuditPrune(opts: { before: number; keep: number }): void {
  if (!Number.isInteger(opts.keep) || opts.keep < 0) throw new RangeError(`pruneAudit: keep must be a whole number, got ${opts.keep}`);
  if (!Number.isFinite(opts.before)) throw new RangeError(`pruneAudit: before must be a time, got ${opts.before}`);
}

export function decodeAudit(row: Row, file: string): AuditRow {
  const bad = (column: string) => invalidRow(file, 'audit', String(row.account), column);
  const text = textReader(row, bad);
  const outcome = text('outcome');
  if (!AUDIT_OUTCOMES.includes(outcome)) throw bad('outcome');
  return {
    id: int(row, 'id', bad),
    at: int(row, 'at', bad),
    account: text('account'),
    client: text('client'),
    action: text('action'),
    outcome: outcome as AuditOutcome,
    code: textOrNull(row, 'code', bad),
    task: textOrNull(row, 'task', bad),
    detail: auditDetail(textOrNull(row, 'detail', bad), () => bad('detail')),
  };
}

function auditDetail(text: string | null, bad: () => Error): AuditDetail | null {
  if (text === null) return null;
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as AuditDetail;
  } catch {
    // not JSON: reported below as an invalid row
  }
  throw bad();
}

function int(row: Row, column: string, bad: (column: string) => Error): number {
  const v = row[column];
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(column);
  return v;
}

function intOrNull(row: Row, column: string, bad: (column: string) => Error): number | null {
  return row[column] === null ? null : int(row, column, bad);
}

function textOrNull(row: Row, column: string, bad: (column: string) => Error): string | null {
  const v = row[column];
  if (v !== null && typeof v !== 'string') throw bad(column);
  return v;
}

function invalidRow(file: string, table: string, account: string, column: string): StoreError {
  return new StoreError('invalid_row', `the database ${file} holds an invalid ${table}.${column} for account "${account}"`);
}

export function decrypt(key: Buffer, blob: Buffer, aad: string, file: string): string {
  try {
    return unseal(key, blob, aad);
  } catch (err) {
    // crypto's message names the row and column and holds no plaintext.
    throw new StoreError('decrypt_failed', `${(err as Error).message} (in ${file})`);
  }
}
