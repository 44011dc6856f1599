/**
 * An in-memory Store for unit tests of the broker: the same contract as the SQLite store
 * (generations, in-flight marks, secrets), and a journal of every write in order, so a
 * test can check what was committed before what. Like the SQLite store, each method does
 * its work when called; the promise it returns is already settled.
 *
 * With `fleet`, it plays a fleet's shared database for one daemon: other daemons' writes are
 * the test's own calls on it, in-flight marks name this daemon, `holderAlive` answers what
 * the test says, and `down = true` makes every call fail as an unreachable database does.
 */
import { GenerationMismatchError, StoreError } from '../../src/daemon/store/errors.js';
import { AUDIT_DEFAULT_LIMIT, auditColumns, auditListing, checkAuditPrune } from '../../src/daemon/store/rows.js';
import {
  soleLease,
  summarize,
  type AuditEntry,
  type AuditOutcome,
  type AuditQuery,
  type AuditRow,
  type FleetLink,
  type GrantPage,
  type GrantRecord,
  type GrantSummary,
  type GrantWrite,
  type LoginLease,
  type LoginRecord,
  type LoginStatusValue,
  type Store,
  type StoredAccessToken,
  type TokenUpdate,
} from '../../src/daemon/store/types.js';

export type StoreOp =
  | { op: 'replaceGrant'; account: string; refresh_token: string | null }
  | { op: 'commitRefresh'; account: string; refresh_token?: string; access_token: string }
  | { op: 'markInFlight' | 'clearInFlight' | 'deleteGrant' | 'deleteSecrets' | 'markImport' | 'endImport'; account: string }
  | { op: 'setStatus'; account: string; status: string }
  | { op: 'setBinding'; account: string; bound_to: string };

export class MemoryStore implements Store {
  readonly grants = new Map<string, GrantRecord>();
  readonly secrets = new Map<string, string>();
  readonly logins = new Map<string, LoginRecord>();
  readonly audit: AuditRow[] = [];
  private auditIds = 0;
  /** Every write, in order. */
  readonly journal: StoreOp[] = [];
  /** Every call fails as an unreachable database does (a fleet's PostgreSQL down). */
  down = false;
  readonly fleet?: FleetLink & { alive: Set<string>; handlers?: Parameters<FleetLink['watch']>[0] };
  constructor(
    private readonly now: () => number = Date.now,
    opts: { fleet?: { instance: string } } = {},
  ) {
    if (opts.fleet) {
      const grants = this.grants;
      const fleet: NonNullable<MemoryStore['fleet']> = {
        instance: opts.fleet.instance,
        where: 'the test fleet',
        alive: new Set(),
        watch: (handlers) => void (fleet.handlers = handlers),
        watchLogins: () => undefined,
        generations: async () => new Map([...grants.values()].map((g) => [g.account, { generation: g.generation, status: g.status }])),
        holderAlive: async (instance) => fleet.alive.has(instance),
      };
      this.fleet = fleet;
    }
  }
  private reachable(): void {
    if (this.down) throw new StoreError('unavailable', 'cannot reach the test database');
  }

  async getGrant(account: string): Promise<GrantRecord | undefined> {
    this.reachable();
    const g = this.grants.get(account);
    return g && { ...g };
  }
  async listGrants(page?: GrantPage): Promise<GrantSummary[]> {
    this.reachable();
    const all = [...this.grants.values()].sort((a, b) => compare(a.account, b.account));
    const listed = page ? all.filter((g) => g.account > (page.after ?? '')).slice(0, page.limit) : all;
    return listed.map((g) => summarize(g));
  }
  async listAccessTokens(after: string | undefined, limit: number): Promise<StoredAccessToken[]> {
    this.reachable();
    return [...this.grants.keys()]
      .sort(compare)
      .filter((a) => a > (after ?? '') && this.grants.get(a)!.access_token !== null && this.grants.get(a)!.status === 'active')
      .slice(0, limit)
      .map((a) => this.getAccessTokenNow(a)!);
  }
  async getAccessToken(account: string): Promise<StoredAccessToken | undefined> {
    this.reachable();
    return this.getAccessTokenNow(account);
  }
  private getAccessTokenNow(account: string): StoredAccessToken | undefined {
    const g = this.grants.get(account);
    if (!g) return undefined;
    const { refresh_token: _, ...rest } = g;
    return rest;
  }
  async replaceGrant(account: string, t: GrantWrite, secrets: Readonly<Record<string, string>> = {}): Promise<GrantRecord> {
    this.reachable();
    for (const [name, value] of Object.entries(secrets)) this.secrets.set(`${account}/${name}`, value);
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
      in_flight_for: null,
      last_error: null,
      updated_at: this.now(),
      bound_to: t.bound_to,
      refresh_expires_at: t.refresh_expires_at ?? null,
      granted_at: this.now(),
      refreshed_at: null,
      ...(this.fleet ? { in_flight_by: null } : {}),
    };
    this.grants.set(account, g);
    this.journal.push({ op: 'replaceGrant', account, refresh_token: t.refresh_token });
    return { ...g };
  }
  async setBindings(bindings: ReadonlyArray<{ account: string; boundTo: string }>): Promise<void> {
    this.reachable();
    for (const { account, boundTo } of bindings) {
      const g = this.grants.get(account);
      if (g) Object.assign(g, { bound_to: boundTo, updated_at: this.now() });
      this.journal.push({ op: 'setBinding', account, bound_to: boundTo });
    }
  }
  async commitRefresh(account: string, expectedGeneration: number, t: TokenUpdate): Promise<GrantRecord> {
    this.reachable();
    const g = this.grants.get(account);
    if (!g || g.generation !== expectedGeneration) throw new GenerationMismatchError(account, expectedGeneration, g?.generation ?? null);
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
      in_flight_for: null,
      ...(this.fleet ? { in_flight_by: null } : {}),
      last_error: null,
      updated_at: this.now(),
      refreshed_at: this.now(),
    });
    this.journal.push({ op: 'commitRefresh', account, refresh_token: t.refresh_token, access_token: t.access_token });
    return { ...g };
  }
  async markInFlight(account: string, at: number): Promise<void> {
    this.reachable();
    const g = this.grants.get(account);
    if (!g) throw new StoreError('no_grant', `cannot mark a refresh in flight: account "${account}" has no grant`);
    Object.assign(g, { in_flight_since: at, in_flight_for: null, updated_at: this.now() });
    if (this.fleet) g.in_flight_by = this.fleet.instance;
    this.journal.push({ op: 'markInFlight', account });
  }
  async markImport(account: string, at: number, placeholder: { boundTo: string; lastError: string }): Promise<void> {
    this.reachable();
    const g: GrantRecord = this.grants.get(account) ?? {
      account,
      refresh_token: null,
      access_token: null,
      token_type: null,
      expires_at: null,
      obtained_at: null,
      scope: null,
      generation: 0,
      status: 'reauth_required',
      in_flight_since: null,
      last_error: placeholder.lastError,
      updated_at: this.now(),
      bound_to: placeholder.boundTo,
      refresh_expires_at: null,
    };
    Object.assign(
      g,
      { in_flight_since: at, in_flight_for: 'import', updated_at: this.now() },
      this.fleet ? { in_flight_by: this.fleet.instance } : {},
    );
    this.grants.set(account, g);
    this.journal.push({ op: 'markImport', account });
  }
  async endImport(account: string): Promise<void> {
    this.reachable();
    const g = this.grants.get(account);
    if (g?.in_flight_for === 'import') {
      if (g.generation === 0) this.grants.delete(account);
      else Object.assign(g, { in_flight_since: null, in_flight_for: null }, this.fleet ? { in_flight_by: null } : {});
    }
    this.journal.push({ op: 'endImport', account });
  }
  async clearInFlight(account: string): Promise<void> {
    this.reachable();
    const g = this.grants.get(account);
    if (g) Object.assign(g, { in_flight_since: null, in_flight_for: null, updated_at: this.now() });
    if (g && this.fleet) g.in_flight_by = null;
    this.journal.push({ op: 'clearInFlight', account });
  }
  async setStatus(account: string, status: GrantRecord['status'], lastError: string | null): Promise<void> {
    this.reachable();
    const g = this.grants.get(account);
    if (g)
      Object.assign(
        g,
        { status, last_error: lastError, in_flight_since: null, in_flight_for: null, updated_at: this.now() },
        this.fleet ? { in_flight_by: null } : {},
      );
    this.journal.push({ op: 'setStatus', account, status });
  }
  async deleteGrant(account: string): Promise<void> {
    this.reachable();
    this.grants.delete(account);
    this.journal.push({ op: 'deleteGrant', account });
  }
  async getSecret(account: string, name: string): Promise<string | undefined> {
    this.reachable();
    return this.secrets.get(`${account}/${name}`);
  }
  async putSecret(account: string, name: string, value: string): Promise<void> {
    this.reachable();
    this.secrets.set(`${account}/${name}`, value);
  }
  async putSecretIfAbsent(account: string, name: string, value: string): Promise<string> {
    this.reachable();
    const k = `${account}/${name}`;
    if (!this.secrets.has(k)) this.secrets.set(k, value);
    return this.secrets.get(k)!;
  }
  async deleteSecrets(account: string): Promise<void> {
    this.reachable();
    for (const k of [...this.secrets.keys()]) if (k.startsWith(`${account}/`)) this.secrets.delete(k);
    this.journal.push({ op: 'deleteSecrets', account });
  }
  /** login id → the state its secrets gave (the real stores keep only a keyed hash of it). */
  private readonly loginStates = new Map<string, string>();
  async putLogin(login: LoginRecord): Promise<void> {
    this.reachable();
    if (login.status === 'pending' && login.secrets?.state) this.loginStates.set(login.id, login.secrets.state);
    // As the real stores: a pending put without secrets keeps them; a finished login has none.
    const { secrets, ...rec } = login;
    const kept = login.status === 'pending' ? (secrets ?? this.logins.get(login.id)?.secrets) : undefined;
    this.logins.set(login.id, kept ? { ...rec, secrets: { ...kept } } : rec);
  }
  async getLogin(id: string): Promise<LoginRecord | undefined> {
    this.reachable();
    const l = this.logins.get(id);
    return l && { ...l };
  }
  async findLoginByState(state: string): Promise<LoginRecord | undefined> {
    this.reachable();
    for (const [id, st] of this.loginStates) if (st === state) return this.getLogin(id);
    return undefined;
  }
  /** One daemon's store: its lease is never contested (as the SQLite store's). */
  async holdLogin(_id: string): Promise<LoginLease | undefined> {
    this.reachable();
    return soleLease();
  }
  async listLogins(opts: { status?: LoginStatusValue; own?: boolean } = {}): Promise<LoginRecord[]> {
    this.reachable();
    return [...this.logins.values()]
      .filter((l) => !opts.status || l.status === opts.status)
      .sort((a, b) => b.created_at - a.created_at || compare(a.id, b.id));
  }
  async lastFinishedLogin(account: string): Promise<LoginRecord | undefined> {
    this.reachable();
    const last = [...this.logins.values()]
      .filter((l) => l.account === account && l.status !== 'pending')
      .sort((a, b) => b.updated_at - a.updated_at || compare(a.id, b.id))[0];
    return last && { ...last };
  }
  async pruneLogins(before: number): Promise<number> {
    this.reachable();
    let n = 0;
    for (const [id, l] of this.logins) {
      if (l.status !== 'pending' && l.updated_at < before && this.logins.delete(id)) {
        this.loginStates.delete(id);
        n++;
      }
    }
    return n;
  }
  async appendAudit(entries: AuditEntry[]): Promise<void> {
    this.reachable();
    for (const e of entries) {
      const [at, account, client, action, outcome, code, task, detail] = auditColumns(e);
      const row = { at, account, client, action, outcome: outcome as AuditOutcome, code, task, detail: detail && JSON.parse(detail) };
      this.audit.push({ id: ++this.auditIds, ...row });
    }
  }
  async listAudit(q: AuditQuery = {}): Promise<AuditRow[]> {
    this.reachable();
    auditListing(q, () => '?'); // the real stores' checks of the query
    const limit = q.limit ?? AUDIT_DEFAULT_LIMIT;
    const after = q.after;
    // Newest first; among equal times, the later append first (the real stores' `at DESC, id DESC`).
    return this.audit
      .filter((e) => q.account === undefined || e.account === q.account)
      .filter((e) => q.action === undefined || e.action === q.action)
      .filter((e) => (q.since === undefined || e.at >= q.since) && (q.until === undefined || e.at < q.until))
      .filter((e) => !after || e.at < after.at || (e.at === after.at && e.id < after.id))
      .sort((a, b) => b.at - a.at || b.id - a.id)
      .slice(0, limit)
      .map((e) => ({ ...e }));
  }
  async pruneAudit(o: { before: number; keep: number }): Promise<number> {
    this.reachable();
    checkAuditPrune(o);
    const before = this.audit.length;
    const kept = this.audit.filter((e) => e.at >= o.before);
    // Rows are in write order: past the newest `keep`, the oldest written go.
    this.audit.splice(0, this.audit.length, ...kept.slice(Math.max(0, kept.length - o.keep)));
    return before - this.audit.length;
  }
  async getSecrets(account: string): Promise<Map<string, string>> {
    this.reachable();
    const out = new Map<string, string>();
    for (const [k, v] of this.secrets) if (k.startsWith(`${account}/`)) out.set(k.slice(account.length + 1), v);
    return out;
  }
  async abandonInFlight(account: string): Promise<void> {
    this.reachable();
    const g = this.grants.get(account);
    if (g && this.fleet && g.in_flight_by === this.fleet.instance) g.in_flight_by = null;
  }
  async withGrantLock<T>(_account: string, fn: () => Promise<T>): Promise<T> {
    this.reachable();
    return fn();
  }
  async close(): Promise<void> {}
}

/** The order the real stores list accounts and ids in: by code point (SQLite's BINARY collation; the test cluster's "C"). */
function compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
