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
  last_error: string | null;
  updated_at: number;
  /**
   * The identity of the provider and client that issued the grant (grant-identity.ts), or
   * null for a grant stored before identities were recorded. Not a secret.
   */
  bound_to: string | null;
  /** When the refresh token itself stops working (epoch ms), where the provider said; else null. */
  refresh_expires_at: number | null;
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

export interface AuditEntry {
  at: number;
  account: string;
  /** The client's self-declared name (User-Agent), truncated; never a token. */
  client: string;
  action: string;
}

/** The states of an interactive login; `pending` is the only one that changes. */
export type LoginStatusValue = 'pending' | 'active' | 'failed' | 'expired';

/**
 * One interactive login as stored, so its status survives a restart. Never a secret: the
 * device_code, PKCE verifier, authorization code and tokens live in the daemon's memory only.
 */
export interface LoginRecord {
  id: string;
  account: string;
  flow: string;
  status: LoginStatusValue;
  /** What the API shows besides the columns (user code, URLs, expiry, error), as a JSON object. */
  data: Record<string, unknown>;
  created_at: number;
  updated_at: number;
}

/** The persistent store: grants, client secrets, logins, audit log. Synchronous (better-sqlite3). */
export interface Store {
  /** One grant, decrypted, or undefined. */
  getGrant(account: string): GrantRecord | undefined;
  /** Every grant, decrypted (used once at start-up to fill the memory cache). */
  listGrants(): GrantRecord[];
  /** Replace the whole grant of an account (login, import); generation becomes previous+1 (or 1). */
  replaceGrant(
    account: string,
    tokens: { refresh_token: string | null; bound_to: string } & Partial<Omit<TokenUpdate, 'refresh_token'>>,
  ): GrantRecord;
  /** Record the identity a grant belongs to (adopting a grant stored before identities were). */
  setBinding(account: string, boundTo: string): void;
  /**
   * Commit a refresh's result atomically (synchronous=FULL): new tokens, generation+1,
   * in-flight cleared, status active. Throws if the stored generation is not `expectedGeneration`.
   */
  commitRefresh(account: string, expectedGeneration: number, tokens: TokenUpdate): GrantRecord;
  /** Mark a refresh as in flight, durably, before the request leaves. */
  markInFlight(account: string, at: number): void;
  /** Clear the in-flight mark when a refresh failed with a definite answer that did not spend the token. */
  clearInFlight(account: string): void;
  /** Set status and last error (e.g. reauth_required); secrets stay. */
  setStatus(account: string, status: GrantRecord['status'], lastError: string | null): void;
  deleteGrant(account: string): void;
  getSecret(account: string, name: string): string | undefined;
  putSecret(account: string, name: string, value: string): void;
  deleteSecrets(account: string): void;
  /** Insert or replace a login (by id). */
  putLogin(login: LoginRecord): void;
  getLogin(id: string): LoginRecord | undefined;
  /** Logins, newest first; only those with `status` when given. */
  listLogins(opts?: { status?: LoginStatusValue }): LoginRecord[];
  /** The account's most recent login that is no longer pending. */
  lastFinishedLogin(account: string): LoginRecord | undefined;
  /** Forget finished (not pending) logins last updated before `before` (epoch ms); returns how many. */
  pruneLogins(before: number): number;
  /** Append audit entries in one transaction. */
  appendAudit(entries: AuditEntry[]): void;
  listAudit(opts?: { account?: string; limit?: number }): AuditEntry[];
  close(): void;
}
