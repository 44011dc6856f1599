/** One account's grant as the daemon sees it: secrets decrypted, times in epoch ms. */
export interface GrantRecord {
  account: string;
  refresh_token: string | null;
  access_token: string | null;
  token_type: string | null;
  /** When the access token expires (epoch ms); null when the provider gave no expires_in and no default applies. */
  expires_at: number | null;
  /** When the access token was obtained (epoch ms). */
  obtained_at: number | null;
  scope: string | null;
  /** Bumped on every committed refresh or login: one generation per refresh token. */
  generation: number;
  status: 'active' | 'reauth_required';
  /** Set just before a refresh request leaves; cleared when its outcome is known (rule 5, docs/architecture.md). */
  in_flight_since: number | null;
  /**
   * In a fleet only: the daemon whose refresh is in flight ({@link FleetLink.instance}), while
   * it may still commit its result; null once that daemon gave the attempt up with its
   * outcome unknown. Absent from the SQLite store, which one daemon owns.
   */
  in_flight_by?: string | null;
  /**
   * What the in-flight mark is for: `import` while an import's proving refresh is out (the
   * grant's own refresh token was not sent; the imported one may be spent); null for a
   * refresh of the grant. Absent where a store predates it (the memory store of unit tests).
   */
  in_flight_for?: 'import' | null;
  last_error: string | null;
  updated_at: number;
  /**
   * The identity of the provider and client that issued the grant (grant-identity.ts), or
   * null for a grant stored before identities were recorded. Not a secret.
   */
  bound_to: string | null;
  /** When the refresh token itself stops working (epoch ms), where the provider said; else null. */
  refresh_expires_at: number | null;
  /**
   * When this grant was obtained (epoch ms): the login, import or recover step that wrote it
   * whole (Store.replaceGrant); refreshes keep it. Null for a grant stored before tokend
   * recorded it; absent where a store predates it (unit tests' hand-made records).
   */
  granted_at?: number | null;
  /** When the grant was last refreshed (Store.commitRefresh; epoch ms); null until its first refresh. */
  refreshed_at?: number | null;
}

/**
 * A grant as the broker's memory holds it: no token in it. Access tokens are served from the
 * broker's cache, and one still in the store is read on its first use; the refresh token is
 * read only to refresh or revoke. Memory knows whether each exists, and its times (to
 * schedule refreshes and answer status). 10 000 accounts' decrypted tokens and lazy
 * accessors were most of a big daemon's start-up and memory (the many-accounts benches).
 */
export type GrantSummary = Omit<GrantRecord, 'refresh_token' | 'access_token'> & {
  has_refresh_token: boolean;
  has_access_token: boolean;
};

/** A stored grant with its access token decrypted, without its refresh token. */
export type StoredAccessToken = Omit<GrantRecord, 'refresh_token'>;

/** What memory keeps of a grant read whole. */
/** A page of listGrants: the grants after `after` (in account order), at most `limit`. */
export interface GrantPage {
  after?: string;
  limit: number;
}

export function summarize(g: GrantRecord | GrantSummary): GrantSummary {
  if (!('refresh_token' in g)) return g;
  const { refresh_token, access_token, ...rest } = g;
  return { ...rest, has_refresh_token: refresh_token !== null, has_access_token: access_token !== null };
}

/** The tokens a successful refresh or login produced. */
export interface TokenUpdate {
  access_token: string;
  token_type: string;
  expires_at: number | null;
  obtained_at: number;
  scope: string | null;
  /** A new refresh token; undefined keeps the old one (RFC 6749 §6: servers may not rotate). */
  refresh_token?: string;
  /** The refresh token's own expiry (epoch ms), where the provider said; kept with the old token when there is no new one. */
  refresh_expires_at?: number | null;
}

/** A whole grant as a login or an import writes it (Store.replaceGrant): a refresh token, maybe an access token, and who issued it. */
export type GrantWrite = { refresh_token: string | null; bound_to: string } & Partial<Omit<TokenUpdate, 'refresh_token'>>;

import type { Caller, RecordedCaller } from '../../protocol/caller.js';

export interface AuditEntry {
  at: number;
  account: string;
  /** The client's self-declared name (User-Agent), truncated; never a token. Empty when the daemon acted by itself. */
  client: string;
  action: string;
  /** How it ended; `ok` when absent. */
  outcome?: AuditOutcome;
  /** The error code of a refused or failed action (src/protocol/errors.ts, or a login's code). */
  code?: string | null;
  /** The caller's label (a login's `task`). */
  task?: string | null;
  /** What else says what happened: field names, a login's id and flow. Never a value of a secret. */
  detail?: AuditDetail | null;
}

export type AuditOutcome = 'ok' | 'refused' | 'failed';

/** What an audit row may say besides its columns; names only, never a secret's value. */
export interface AuditDetail {
  /** The fields an account change set (names, not values). */
  fields?: string[];
  login_id?: string;
  flow?: string;
  /** Where a moved key went (`file` or `keyring`). */
  to?: string;
  /** An approval's decision (caller/approvals.ts). */
  approval_id?: string;
  via?: 'api' | 'notification' | 'timeout' | 'disconnected';
  decided_by?: RecordedCaller;
  for_s?: number;
  always?: boolean;
  /** Who asked, as the daemon verified it (src/protocol/caller.ts); kept here so every store holds it with no new column. */
  caller?: Caller;
}

/** An audit row as read back: every column, and its place for paging (`id`). */
export type AuditRow = Required<AuditEntry> & { id: number };

/** Which audit rows to read, newest first (Store.listAudit). */
export interface AuditQuery {
  account?: string;
  action?: string;
  /** Rows at or after this time (epoch ms). */
  since?: number;
  /** Rows before this time (epoch ms). */
  until?: number;
  /** At most this many (default 1000). */
  limit?: number;
  /** Rows after this one in the listing's order (the last row of the previous page). */
  after?: { at: number; id: number };
}

/** The states of an interactive login; `pending` is the only one that changes. */
export type LoginStatusValue = 'pending' | 'active' | 'failed' | 'expired';

/**
 * One interactive login as stored, so its status survives a restart. `data` is never a
 * secret; what is (the state, PKCE verifier and authorization URL of a browser login, the
 * device code) is in `secrets`, which the store seals and keeps only while the login is
 * pending. Authorization codes and tokens are never stored with a login.
 */
export interface LoginRecord {
  id: string;
  account: string;
  flow: string;
  status: LoginStatusValue;
  /** What the API shows besides the columns (user code, URLs, expiry, error), as a JSON object; no secret. */
  data: Record<string, unknown>;
  created_at: number;
  updated_at: number;
  /**
   * The login's secrets by name, sealed at rest (one blob, bound to the login's id). A put
   * of a pending login without them keeps the stored ones; any put of a finished login
   * removes them, in the same commit. Read back only while the login is pending.
   */
  secrets?: LoginSecrets;
}

/** A pending login's secrets by name (`state`, `code_verifier`, `authorization_url`, `device_code`). */
export type LoginSecrets = Record<string, string>;

/**
 * The persistent store: grants, client secrets, logins, audit log. Every method returns a
 * promise, because a fleet's store is a PostgreSQL database across the network; the embedded
 * SQLite store answers at once. Nothing on the token hot path calls it (rule 2): the broker
 * serves from memory and touches the store only to refresh, commit and reload, and to read
 * a stored access token once after start-up (ahead, or on its first use).
 */
export interface Store {
  /** One grant, decrypted, or undefined. */
  getGrant(account: string): Promise<GrantRecord | undefined>;
  /**
   * Every grant, nothing decrypted (start-up; see GrantSummary), in account order; with `page`,
   * those after `page.after` (all when absent), at most `page.limit`: the broker reads them in
   * turns after start-up.
   */
  listGrants(page?: GrantPage): Promise<GrantSummary[]>;
  /** One grant's access token, decrypted, without its refresh token (a stored token's first use). */
  getAccessToken(account: string): Promise<StoredAccessToken | undefined>;
  /**
   * The access tokens of active grants, decrypted (not their refresh tokens), in account
   * order after `after`, at most `limit`: the broker reads them in turns after start-up.
   */
  listAccessTokens(after: string | undefined, limit: number): Promise<StoredAccessToken[]>;
  /**
   * Replace the whole grant of an account (login, import); generation becomes previous+1 (or
   * 1); any in-flight mark goes. `secrets` that came with the grant are written in the same
   * commit, so a grant is never stored with another grant's client credentials.
   */
  replaceGrant(account: string, tokens: GrantWrite, secrets?: Readonly<Record<string, string>>): Promise<GrantRecord>;
  /** Record which provider and client issued these grants (one commit for all: a start-up binds every old grant at once). */
  setBindings(bindings: ReadonlyArray<{ account: string; boundTo: string }>): Promise<void>;
  /**
   * Commit a refresh's result atomically and durably: new tokens, generation+1, in-flight
   * cleared, status active. Rejects if the stored generation is not `expectedGeneration`.
   */
  commitRefresh(account: string, expectedGeneration: number, tokens: TokenUpdate): Promise<GrantRecord>;
  /** Mark a refresh as in flight, durably, before the request leaves. */
  markInFlight(account: string, at: number): Promise<void>;
  /**
   * Mark an import in flight before its proving refresh leaves (rule 5), naming it an import
   * (`in_flight_for`): on the account's grant, which keeps its tokens and status, or, where
   * there is no grant, on a placeholder (generation 0, no token, `reauth_required` with
   * `placeholder.lastError`), so a daemon killed before the import's outcome is known says
   * so after its restart instead of nothing.
   */
  markImport(account: string, at: number, placeholder: { boundTo: string; lastError: string }): Promise<void>;
  /** An import's outcome is known and nothing of it is kept: its mark goes, or its placeholder with it. */
  endImport(account: string): Promise<void>;
  /** Clear the in-flight mark when a refresh failed with a definite answer that did not spend the token. */
  clearInFlight(account: string): Promise<void>;
  /**
   * A refresh whose outcome is unknown (timeout, reset) was given up: the in-flight mark stays
   * as the witness that its refresh token may be spent, but no daemon will commit it any more.
   * The SQLite store has nothing to record (its marks name no daemon).
   */
  abandonInFlight(account: string): Promise<void>;
  /**
   * Set status and last error (e.g. reauth_required) and clear the in-flight mark, in one
   * commit: a status is set when the provider's answer is known, and a daemon killed between
   * two writes must not leave a spent refresh token that is neither marked nor refused.
   * Secrets stay.
   */
  setStatus(account: string, status: GrantRecord['status'], lastError: string | null): Promise<void>;
  deleteGrant(account: string): Promise<void>;
  getSecret(account: string, name: string): Promise<string | undefined>;
  /** Every secret of an account, by name (what a provider call may ask for, read once). */
  getSecrets(account: string): Promise<Map<string, string>>;
  putSecret(account: string, name: string, value: string): Promise<void>;
  /**
   * Store `value` only when the account holds no secret of that name, in one statement;
   * answers the secret stored after it (the one given, or the one already there). Two
   * daemons of a fleet making the same secret at once end with one (a DPoP key).
   */
  putSecretIfAbsent(account: string, name: string, value: string): Promise<string>;
  deleteSecrets(account: string): Promise<void>;
  /**
   * Insert or replace a login (by id); writes to one login land in the order they were made.
   * A finished login's secrets are removed in the same commit, and leave no copy in the
   * store's files (see LoginRecord.secrets).
   */
  putLogin(login: LoginRecord): Promise<void>;
  getLogin(id: string): Promise<LoginRecord | undefined>;
  /**
   * The login whose callback carries `state` (a browser login's), pending or finished
   * (secrets only while pending). The store keeps only a keyed hash of the state
   * (rows.ts loginStateHash), set by the put that gives the login's secrets and kept after.
   */
  findLoginByState(state: string): Promise<LoginRecord | undefined>;
  /**
   * Logins, newest first; only those with `status` when given. In a fleet every daemon's
   * (any daemon lists, finds and completes them); `own`: only those this daemon started
   * (what a restart takes up). A store of one daemon has only its own.
   */
  listLogins(opts?: { status?: LoginStatusValue; own?: boolean }): Promise<LoginRecord[]>;
  /**
   * Take the login's lease: at most one daemon of the fleet polls a device login or
   * exchanges a browser login's code at a time. Undefined when another live daemon holds
   * it. A fleet's lease is a session advisory lock on a connection of its own, so it ends
   * with the holder's connection (a daemon killed frees it at once); `lost` aborts then. A
   * store of one daemon always grants it (one daemon per data folder).
   */
  holdLogin(id: string): Promise<LoginLease | undefined>;
  /** The account's most recent login that is no longer pending. */
  lastFinishedLogin(account: string): Promise<LoginRecord | undefined>;
  /** Forget finished (not pending) logins last updated before `before` (epoch ms); returns how many. */
  pruneLogins(before: number): Promise<number>;
  /** Append audit entries in one transaction. */
  appendAudit(entries: AuditEntry[]): Promise<void>;
  /** Audit rows matching `query`, newest first (by `at`, then by write order). */
  listAudit(query?: AuditQuery): Promise<AuditRow[]>;
  /**
   * Forget audit rows older than `before` (epoch ms), then the oldest written beyond the
   * newest `keep`; returns how many went. In a fleet the table is the fleet's: any daemon prunes it.
   */
  pruneAudit(opts: { before: number; keep: number }): Promise<number>;
  /**
   * Run `fn` holding the account's grant lock, so one refresh of a grant runs at a time in
   * every daemon that shares this store (rule 3). The SQLite store just calls `fn`: one daemon
   * per data folder is guaranteed already. A fleet's lock is released when `fn` settles, or
   * when the holder's connection drops (it died).
   */
  withGrantLock<T>(account: string, fn: () => Promise<T>): Promise<T>;
  /** The other daemons sharing this store, when it is a fleet's; undefined for SQLite. */
  readonly fleet?: FleetLink;
  close(): Promise<void>;
}

/** One daemon's hold on a login (Store.holdLogin). */
export interface LoginLease {
  /** Aborted when the lease ended without release() (its connection dropped): stop working on the login. */
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

/** The lease of a store one daemon owns: there is nobody to share the login with. */
export function soleLease(): LoginLease {
  return { lost: new AbortController().signal, release: async () => undefined };
}

/** What a daemon of a fleet learns from, and tells, the others through the shared database. */
export interface FleetLink {
  /** This daemon process in the fleet (host, data folder, pid): what its in-flight marks name. */
  readonly instance: string;
  /** The database as messages show it (no password). */
  readonly where: string;
  /**
   * Be told of grants other daemons change (`grantChanged`, once per notification), and when
   * notifications may have been missed (`resync`: after each (re)connection of the listener).
   */
  watch(handlers: { grantChanged(account: string, generation: number): void; resync(): void }): void;
  /**
   * Be told when another daemon writes a login (its status, once per write), on the same
   * listening connection as grants (it runs once `watch` started it).
   */
  watchLogins(fn: (id: string, status: LoginStatusValue) => void): void;
  /** The generation and status of every stored grant, without decrypting anything (to reconcile after a resync). */
  generations(): Promise<Map<string, { generation: number; status: GrantRecord['status'] }>>;
  /**
   * Could the daemon that marked a refresh in flight still commit it? True while any of its
   * connections is open, and for a grace period after this daemon reconnected (the other may
   * not have reconnected yet).
   */
  holderAlive(instance: string): Promise<boolean>;
}
