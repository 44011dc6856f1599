/**
 * An in-memory Store for unit tests of the broker: the same contract as the SQLite store
 * (generations, in-flight marks, secrets), and a journal of every write in order, so a
 * test can check what was committed before what. Like the SQLite store, each method does
 * its work when called; the promise it returns is already settled.
 */
import type { AuditEntry, GrantRecord, LoginRecord, LoginStatusValue, Store, TokenUpdate } from '../../src/daemon/store/types.js';

export type StoreOp =
  | { op: 'replaceGrant'; account: string; refresh_token: string | null }
  | { op: 'commitRefresh'; account: string; refresh_token?: string; access_token: string }
  | { op: 'markInFlight' | 'clearInFlight' | 'deleteGrant' | 'deleteSecrets'; account: string }
  | { op: 'setStatus'; account: string; status: string }
  | { op: 'setBinding'; account: string; bound_to: string };

export class MemoryStore implements Store {
  readonly grants = new Map<string, GrantRecord>();
  readonly secrets = new Map<string, string>();
  readonly logins = new Map<string, LoginRecord>();
  readonly audit: AuditEntry[] = [];
  /** Every write, in order. */
  readonly journal: StoreOp[] = [];
  constructor(private readonly now: () => number = Date.now) {}

  async getGrant(account: string): Promise<GrantRecord | undefined> {
    const g = this.grants.get(account);
    return g && { ...g };
  }
  async listGrants(): Promise<GrantRecord[]> {
    return [...this.grants.values()].map((g) => ({ ...g }));
  }
  async replaceGrant(account: string, t: { refresh_token: string | null; bound_to: string } & Partial<Omit<TokenUpdate, 'refresh_token'>>): Promise<GrantRecord> {
    const old = this.grants.get(account);
    const g: GrantRecord = {
      account,
      refresh_token: t.refresh_token,
      access_token: t.access_token ?? null,
      token_type: t.token_type ?? null,
      expires_at: t.expires_at ?? null,
      obtained_at: t.obtained_at ?? null,
      scope: t.scope ?? null,
      generation: (old?.generation ?? 0) + 1,
      status: 'active',
      in_flight_since: null,
      last_error: null,
      updated_at: this.now(),
      bound_to: t.bound_to,
      refresh_expires_at: t.refresh_expires_at ?? null,
    };
    this.grants.set(account, g);
    this.journal.push({ op: 'replaceGrant', account, refresh_token: t.refresh_token });
    return { ...g };
  }
  async setBinding(account: string, boundTo: string): Promise<void> {
    const g = this.grants.get(account);
    if (g) g.bound_to = boundTo;
    this.journal.push({ op: 'setBinding', account, bound_to: boundTo });
  }
  async commitRefresh(account: string, expectedGeneration: number, t: TokenUpdate): Promise<GrantRecord> {
    const g = this.grants.get(account);
    if (!g || g.generation !== expectedGeneration) throw new Error('generation mismatch');
    Object.assign(g, {
      refresh_expires_at: t.refresh_token === undefined ? (t.refresh_expires_at ?? g.refresh_expires_at) : (t.refresh_expires_at ?? null),
      refresh_token: t.refresh_token ?? g.refresh_token,
      access_token: t.access_token,
      token_type: t.token_type,
      expires_at: t.expires_at,
      obtained_at: t.obtained_at,
      scope: t.scope,
      generation: g.generation + 1,
      status: 'active',
      in_flight_since: null,
      last_error: null,
      updated_at: this.now(),
    });
    this.journal.push({ op: 'commitRefresh', account, refresh_token: t.refresh_token, access_token: t.access_token });
    return { ...g };
  }
  async markInFlight(account: string, at: number): Promise<void> {
    const g = this.grants.get(account);
    if (!g) throw new Error('no grant');
    g.in_flight_since = at;
    this.journal.push({ op: 'markInFlight', account });
  }
  async clearInFlight(account: string): Promise<void> {
    const g = this.grants.get(account);
    if (g) g.in_flight_since = null;
    this.journal.push({ op: 'clearInFlight', account });
  }
  async setStatus(account: string, status: GrantRecord['status'], lastError: string | null): Promise<void> {
    const g = this.grants.get(account);
    if (g) Object.assign(g, { status, last_error: lastError });
    this.journal.push({ op: 'setStatus', account, status });
  }
  async deleteGrant(account: string): Promise<void> {
    this.grants.delete(account);
    this.journal.push({ op: 'deleteGrant', account });
  }
  async getSecret(account: string, name: string): Promise<string | undefined> {
    return this.secrets.get(`${account}/${name}`);
  }
  async putSecret(account: string, name: string, value: string): Promise<void> {
    this.secrets.set(`${account}/${name}`, value);
  }
  async deleteSecrets(account: string): Promise<void> {
    for (const k of [...this.secrets.keys()]) if (k.startsWith(`${account}/`)) this.secrets.delete(k);
    this.journal.push({ op: 'deleteSecrets', account });
  }
  async putLogin(login: LoginRecord): Promise<void> {
    this.logins.set(login.id, { ...login });
  }
  async getLogin(id: string): Promise<LoginRecord | undefined> {
    return this.logins.get(id);
  }
  async listLogins(opts: { status?: LoginStatusValue } = {}): Promise<LoginRecord[]> {
    return [...this.logins.values()].filter((l) => !opts.status || l.status === opts.status).sort((a, b) => b.created_at - a.created_at);
  }
  async lastFinishedLogin(account: string): Promise<LoginRecord | undefined> {
    return [...this.logins.values()].filter((l) => l.account === account && l.status !== 'pending').sort((a, b) => b.updated_at - a.updated_at)[0];
  }
  async pruneLogins(before: number): Promise<number> {
    let n = 0;
    for (const [id, l] of this.logins) if (l.status !== 'pending' && l.updated_at < before && this.logins.delete(id)) n++;
    return n;
  }
  async appendAudit(entries: AuditEntry[]): Promise<void> {
    this.audit.push(...entries);
  }
  async listAudit(): Promise<AuditEntry[]> {
    return [...this.audit].reverse();
  }
  async getSecrets(account: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const [k, v] of this.secrets) if (k.startsWith(`${account}/`)) out.set(k.slice(account.length + 1), v);
    return out;
  }
  async abandonInFlight(): Promise<void> {}
  withGrantLock<T>(_account: string, fn: () => Promise<T>): Promise<T> {
    return fn();
  }
  async close(): Promise<void> {}
}
