import type { Logger } from './log.js';
import { isStoreUnavailable } from './store/errors.js';
import type { AuditEntry, Store } from './store/types.js';

/** Audit rows held while a fleet's database is down; past this, a batch is dropped (and logged). */
const MAX_WAITING = 100_000;
/** Rows written in one transaction; a bigger batch is written in turns, the event loop free between them. */
const ROWS_PER_WRITE = 1000;
/** The same (account, client, action) is recorded at most once in this long. */
const ONCE_PER_MS = 60_000;

/**
 * Who got which account's token, when. Entries are buffered and written in one
 * transaction a second, so the token hot path never waits for an fsync. The same
 * (account, client, action) is recorded at most once a minute: a script asking in a
 * loop leaves one row a minute, not millions.
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
  private last = { who: '', action: '', by: '' };
  private readonly timer: NodeJS.Timeout;
  /** A fleet's database is down: batches wait (bounded) and the outage is logged once. */
  private waiting = false;
  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    flushMs = 1000,
  ) {
    this.timer = setInterval(() => void this.flush(), flushMs);
    this.timer.unref();
  }
  record(account: string, client: string | undefined, action: string): void {
    const now = Date.now();
    if (now - this.windowStart >= ONCE_PER_MS) {
      this.previous = this.recent;
      this.recent = new Map();
      this.windowStart = now;
    }
    const who = (client ?? 'unknown').slice(0, 200);
    if (who !== this.last.who || action !== this.last.action) {
      // One client and action; the length keeps "a"+"bc" apart from "ab"+"c".
      this.last = { who, action, by: `${who.length}:${who}${action}` };
    }
    const by = this.last.by;
    const second = Math.floor((now - this.epoch) / 1000);
    const last = this.recent.get(by)?.get(account) ?? this.previous.get(by)?.get(account);
    if (last !== undefined && second - last < ONCE_PER_MS / 1000) return;
    let inner = this.recent.get(by);
    if (!inner) this.recent.set(by, (inner = new Map()));
    inner.set(account, second);
    this.buffer.push({ at: now, account, client: who, action });
    // Never written from here: this runs on the token's hot path.
    if (this.buffer.length >= 10_000 && !this.waiting && !this.flushing) setImmediate(() => void this.flush());
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
    return this.flush();
  }
}
