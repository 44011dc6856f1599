import type { Caller } from '../protocol/caller.js';
import type { CallerIdentity } from './caller/proc.js';
import { ApiError } from './errors.js';
import type { EventBus } from './events.js';
import type { Logger } from './log.js';
import { isStoreUnavailable } from './store/errors.js';
import type { AuditDetail, AuditEntry, AuditOutcome, Store } from './store/types.js';

/** Audit rows held while a fleet's database is down; past this, a batch is dropped (and logged). */
const MAX_WAITING = 100_000;
/** Rows written in one transaction; a bigger batch is written in turns, the event loop free between them. */
const ROWS_PER_WRITE = 1000;
/** The same (account, client, action) is recorded at most once in this long. */
const ONCE_PER_MS = 60_000;
/** How often old rows are pruned (and once this long after start). */
const PRUNE_EVERY_MS = 3_600_000;
const FIRST_PRUNE_MS = 60_000;
const DAY_MS = 86_400_000;

/** One lifecycle row (an account added, a login ended, a key moved): recorded every time, never aggregated. */
export interface AuditRecord {
  account: string;
  action: string;
  /** The caller's self-declared name (User-Agent); absent when the daemon acted by itself. */
  caller?: string;
  /** The caller as the daemon verified it (caller/connection.ts); absent without the addon or for the daemon's own. */
  by?: Caller;
  outcome?: AuditOutcome;
  code?: string | null;
  task?: string | null;
  detail?: AuditDetail;
}

/** Where lifecycle rows go: the AuditLog, or a test's list. */
export interface AuditSink {
  record(entry: AuditRecord): void;
}

/** How long audit rows are kept, and how many (config.json's settings, read at each prune). */
export interface AuditRetention {
  audit_retention_days: number;
  audit_max_rows: number;
}

/**
 * Who got which account's token, when. Entries are buffered and written in one
 * transaction a second (a token read's row on the next turn of the event loop), so the
 * token hot path never waits for an fsync. The same (account, client, program, action) is
 * recorded at most once a minute: a script asking in a loop leaves one row a minute, not
 * millions. The program is the verified caller without its pid (caller/proc.ts).
 */
export class AuditLog {
  private buffer: AuditEntry[] = [];
  /**
   * What was recorded in this window of ONCE_PER_MS, and in the one before, by client and
   * action, then account: a key is recorded again once it is in neither. The windows turn
   * over, so memory holds two minutes of distinct keys however many accounts there are (a
   * flat map cleared past a size made 100 000 accounts record every request again, in the
   * many-accounts-100k bench). Nothing is allocated for a request already recorded: no key is built (the
   * accounts' names are the keys), and times are seconds since this log started, which V8
   * keeps unboxed (an epoch in ms is a heap number per entry).
   */
  private recent = new Map<string, Map<string, number>>();
  private previous = new Map<string, Map<string, number>>();
  private windowStart = Date.now();
  private readonly epoch = Date.now();
  /** The last client and action seen, and their key in the windows (built once, not per request). */
  private last = { who: '', action: '', program: '', by: '' };
  /** A token-read row was written in this turn of the event loop; others of the turn wait for the next (recordRead). */
  private flushSoon = false;
  /** Settles once the rows held back in this turn are written (recordRead). */
  private turnWritten?: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  /** A fleet's database is down: batches wait (bounded) and the outage is logged once. */
  private waiting = false;
  private readonly pruneTimers: NodeJS.Timeout[] = [];
  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    flushMs = 1000,
    /** Settings to prune by; without them nothing is pruned (unit tests). */
    private readonly retention?: () => AuditRetention,
  ) {
    this.timer = setInterval(() => void this.flush(), flushMs);
    this.timer.unref();
    if (retention) {
      const prune = () => void this.prune();
      this.pruneTimers.push(setTimeout(prune, FIRST_PRUNE_MS), setInterval(prune, PRUNE_EVERY_MS));
      for (const t of this.pruneTimers) t.unref();
    }
  }
  /**
   * A lifecycle row (`record({account, action, ...})`), written with the next flush; or a
   * token read (`record(account, client, action, caller)`), at most once a minute per account,
   * client, verified program and action, written at once. For a token read, a promise when
   * its row waits for the end of this turn's write: the answer waits for it too.
   */
  record(entry: AuditRecord): void;
  record(account: string, client: string | undefined, action: string, caller?: CallerIdentity): Promise<void> | undefined;
  record(account: string | AuditRecord, client?: string, action?: string, caller?: CallerIdentity): Promise<void> | undefined {
    if (typeof account !== 'string') {
      const { caller: declared, by, ...row } = account;
      const detail = by ? { ...row.detail, caller: by } : row.detail;
      this.buffer.push({ at: Date.now(), client: declared ?? '', ...row, ...(detail ? { detail } : {}) });
      return;
    }
    return this.recordRead(account, client, action!, caller);
  }
  /**
   * Forget rows past the retention (days) and the bound (rows); never rejects (a failure is
   * logged, the next prune tries again). `now` is the caller's clock.
   */
  async prune(now = Date.now()): Promise<number> {
    if (!this.retention) return 0;
    const { audit_retention_days: days, audit_max_rows: keep } = this.retention();
    try {
      await this.flush();
      const n = await this.store.pruneAudit({ before: now - days * DAY_MS, keep });
      if (n > 0) this.log.info('old audit rows pruned', { rows: n, retention_days: days, max_rows: keep });
      return n;
    } catch (err) {
      this.log.warn('could not prune the audit log', { error: (err as Error).message });
      return 0;
    }
  }
  private recordRead(
    account: string,
    client: string | undefined,
    action: string,
    caller: CallerIdentity | undefined,
  ): Promise<void> | undefined {
    const now = Date.now();
    if (now - this.windowStart >= ONCE_PER_MS) {
      this.previous = this.recent;
      this.recent = new Map();
      this.windowStart = now;
    }
    const who = (client ?? 'unknown').slice(0, 200);
    // By the program's text, not its object: the connections of one program (a pool of 16)
    // each have their own, and alternate; comparing texts allocates nothing.
    const program = caller?.program ?? '';
    if (who !== this.last.who || action !== this.last.action || program !== this.last.program) {
      // One client, program and action; the length keeps "a"+"bc" apart from "ab"+"c".
      this.last = { who, action, program, by: `${who.length}:${who}${program.length}:${program}${action}` };
    }
    const by = this.last.by;
    const second = Math.floor((now - this.epoch) / 1000);
    const last = this.recent.get(by)?.get(account) ?? this.previous.get(by)?.get(account);
    if (last !== undefined && second - last < ONCE_PER_MS / 1000) return undefined;
    let inner = this.recent.get(by);
    if (!inner) this.recent.set(by, (inner = new Map()));
    inner.set(account, second);
    this.buffer.push({ at: now, account, client: who, action, ...(caller ? { detail: { caller: caller.caller } } : {}) });
    // The first such row of this turn of the event loop is written now, before the answer
    // leaves (SQLite writes synchronously: the row is on disk even if the daemon is killed
    // the moment the caller has its token; a fleet's database gets it as soon as it answers).
    // Any others of the same turn (a burst of new programs or accounts) are written together
    // at the end of the turn, and their answers wait for that write (the promise): a burst
    // costs one transaction per turn, not one per row, and no answer leaves before its row.
    // A fleet's database that is down holds nobody's answer.
    if (this.waiting) return undefined;
    if (this.flushSoon) return this.turnWritten;
    this.flushSoon = true;
    void this.flush();
    this.turnWritten = new Promise((resolve) =>
      setImmediate(() => {
        this.flushSoon = false;
        if (this.buffer.length > 0) void this.flush().then(resolve);
        else resolve();
      }),
    );
    return undefined;
  }
  /** Write what is buffered; never rejects (a failed batch is logged and dropped). One flush at a time. */
  flush(): Promise<void> {
    this.flushing ??= this.writeAll().finally(() => (this.flushing = undefined));
    return this.flushing;
  }
  private flushing?: Promise<void>;
  private async writeAll(): Promise<void> {
    while (this.buffer.length > 0) {
      if (!(await this.writeSome())) return;
      // Requests are answered between two writes of a big batch (10 000 rows at once held
      // the event loop for tens of milliseconds).
      if (this.buffer.length > 0) await new Promise((r) => setImmediate(r));
    }
  }
  /** One transaction of up to ROWS_PER_WRITE rows; false when nothing more should be tried now. */
  private async writeSome(): Promise<boolean> {
    const batch = this.buffer.slice(0, ROWS_PER_WRITE);
    this.buffer = this.buffer.slice(ROWS_PER_WRITE);
    try {
      await this.store.appendAudit(batch);
      if (this.waiting) this.log.info('the audit log is written again');
      this.waiting = false;
    } catch (err) {
      if (isStoreUnavailable(err) && this.buffer.length + batch.length <= MAX_WAITING) {
        // The database comes back by itself: keep the rows for the next flush.
        this.buffer = [...batch, ...this.buffer];
        if (!this.waiting) this.log.warn('the audit log waits for the database', { error: err.message, entries: batch.length });
        this.waiting = true;
        return false;
      }
      this.log.error('could not write the audit log', { error: err as Error, entries: batch.length });
    }
    return true;
  }
  close(): Promise<void> {
    clearInterval(this.timer);
    for (const t of this.pruneTimers) clearTimeout(t);
    return this.flush();
  }
}

/** How a refused or failed action shows in its row: 4xx is refused, anything else failed, with our code. */
export function outcomeOf(err: unknown): Pick<AuditRecord, 'outcome' | 'code'> {
  if (err instanceof ApiError) return { outcome: err.status < 500 ? 'refused' : 'failed', code: err.code };
  return { outcome: 'failed', code: isStoreUnavailable(err) ? 'upstream_unavailable' : 'internal' };
}

/** Run an action and record its row once its outcome is known (ok, or refused/failed with the code); rethrows. */
export async function audited<T>(audit: AuditSink, row: AuditRecord, work: () => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await work();
  } catch (err) {
    audit.record({ ...row, ...outcomeOf(err) });
    throw err;
  }
  audit.record(row);
  return result;
}

/** What a login is, as its rows say it (logins.ts). */
interface LoginFacts {
  id: string;
  account: string;
  flow: string;
  task: string | null;
  status: string;
}

/** The row of a login that began. */
export function loginStarted(l: LoginFacts, caller: string | undefined): AuditRecord {
  return { account: l.account, action: 'login_started', caller, task: l.task, detail: { login_id: l.id, flow: l.flow } };
}

/** The row of a login that ended: its action says how (succeeded, cancelled, expired, failed), its code why. */
export function loginEnded(l: LoginFacts, error: { code: string } | null): AuditRecord {
  const action =
    l.status === 'active'
      ? 'login_succeeded'
      : error?.code === 'cancelled'
        ? 'login_cancelled'
        : l.status === 'expired'
          ? 'login_expired'
          : 'login_failed';
  return {
    account: l.account,
    action,
    outcome: l.status === 'active' ? 'ok' : 'failed',
    code: error?.code ?? null,
    task: l.task,
    detail: { login_id: l.id, flow: l.flow },
  };
}

/**
 * Refresh failures and recoveries, one row per episode (not per retry): the first failure
 * of a healthy account is `refresh_failed`, its next refreshed token `refresh_recovered`.
 * Read from the daemon's own events, where every refresh path already reports.
 */
export function auditRefreshEpisodes(events: Pick<EventBus, 'subscribe'>, audit: AuditSink): () => void {
  const failing = new Set<string>();
  return events.subscribe((ev) => {
    if (ev.type === 'token.refresh_failed' && !failing.has(ev.account)) {
      failing.add(ev.account);
      const code = ev.error;
      audit.record({ account: ev.account, action: 'refresh_failed', outcome: code === 'invalid_grant' ? 'refused' : 'failed', code });
    } else if ((ev.type === 'token.refreshed' || ev.type === 'token.recovered') && failing.delete(ev.account)) {
      audit.record({ account: ev.account, action: 'refresh_recovered' });
    } else if (ev.type === 'login.succeeded') {
      // A new grant: a new episode may begin (the login's own row says how this one ended).
      failing.delete(ev.account);
    }
  });
}
