/**
 * Rows as both stores hold them (SQLite and a fleet's PostgreSQL share the columns and the
 * sealing): the associated data that binds a sealed value to its row and column, and the
 * decoders that check each row on its way out. `file` names the database in messages.
 */
import { open as unseal } from './crypto.js';
import { StoreError } from './errors.js';
import type { AuditEntry, GrantRecord, LoginRecord, LoginStatusValue } from './types.js';

export interface Row {
  [column: string]: unknown;
}

/** Longest `client` string kept in the audit log: it is self-declared and untrusted. */
export const AUDIT_CLIENT_MAX = 200;
export const AUDIT_DEFAULT_LIMIT = 1000;

export const grantAad = (account: string, column: 'refresh_token' | 'access_token') => `grant:${account}:${column}`;
export const secretAad = (account: string, name: string) => `secret:${account}:${name}`;

/** Cut `s` to at most `max` UTF-16 units without splitting a surrogate pair. */
export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  const code = s.charCodeAt(max - 1);
  return s.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

// Rows are checked on the way out: STRICT tables and the CHECK on
// status already guard the types, so this catches a file edited by hand or by a bug.

/** A grant row, decrypted and checked; `lazyRefreshToken` decrypts the refresh token on first read. */
export function decodeGrant(row: Row, key: Buffer, file: string, lazyRefreshToken = false): GrantRecord {
  const account = row.account;
  if (typeof account !== 'string') throw invalidRow(file, 'grants', '?', 'account');
  const bad = (column: string) => invalidRow(file, 'grants', account, column);
  const status = row.status;
  if (status !== 'active' && status !== 'reauth_required') throw bad('status');
  const blob = (column: 'refresh_token' | 'access_token'): string | null => {
    const v = row[column];
    if (v === null) return null;
    if (!Buffer.isBuffer(v)) throw bad(column);
    return decrypt(key, v, grantAad(account, column), file);
  };
  const grant: GrantRecord = {
    account,
    refresh_token: null,
    access_token: blob('access_token'),
    token_type: textOrNull(row, 'token_type', bad),
    expires_at: intOrNull(row, 'expires_at', bad),
    obtained_at: intOrNull(row, 'obtained_at', bad),
    scope: textOrNull(row, 'scope', bad),
    generation: int(row, 'generation', bad),
    status,
    in_flight_since: intOrNull(row, 'in_flight_since', bad),
    last_error: textOrNull(row, 'last_error', bad),
    updated_at: int(row, 'updated_at', bad),
    bound_to: textOrNull(row, 'bound_to', bad),
    refresh_expires_at: intOrNull(row, 'refresh_expires_at', bad),
  };
  // Only a fleet's rows say which daemon marked a refresh in flight.
  if ('in_flight_by' in row) grant.in_flight_by = textOrNull(row, 'in_flight_by', bad);
  if (!lazyRefreshToken) {
    grant.refresh_token = blob('refresh_token');
    return grant;
  }
  // listGrants (start-up) decrypts refresh tokens on first use: serving needs only access
  // tokens, and 10 000 grants would otherwise cost ~0.3 s of decrypting refresh tokens
  // nobody may touch for an hour (bench/, row 7). Spreading the record reads it.
  const sealed = row.refresh_token;
  if (sealed !== null && !Buffer.isBuffer(sealed)) throw bad('refresh_token');
  lazyRefreshTokenOf(grant, sealed, key, file);
  return grant;
}

/**
 * The refresh token as a property decrypted on first read. Built outside decodeGrant so the
 * getter keeps only the sealed bytes alive, not the whole row (10 000 rows at start-up).
 */
function lazyRefreshTokenOf(grant: GrantRecord, sealed: Buffer | null, key: Buffer, file: string): void {
  let refresh: string | null | undefined = sealed === null ? null : undefined;
  Object.defineProperty(grant, 'refresh_token', {
    enumerable: true,
    configurable: true,
    get: () => (refresh === undefined ? (refresh = decrypt(key, sealed!, grantAad(grant.account, 'refresh_token'), file)) : refresh),
    set: (v: string | null) => (refresh = v),
  });
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

export function decodeLogin(row: Row, file: string): LoginRecord {
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
  return {
    id: text('id'),
    account: text('account'),
    flow: text('flow'),
    status: status as LoginStatusValue,
    data: data as Record<string, unknown>,
    created_at: int(row, 'created_at', bad),
    updated_at: int(row, 'updated_at', bad),
  };
}

export function decodeAudit(row: Row, file: string): AuditEntry {
  const bad = (column: string) => invalidRow(file, 'audit', String(row.account), column);
  const text = textReader(row, bad);
  return { at: int(row, 'at', bad), account: text('account'), client: text('client'), action: text('action') };
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
