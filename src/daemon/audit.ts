import type { Logger } from './log.js';
import { isStoreUnavailable } from './store/errors.js';
import type { AuditEntry, Store } from './store/types.js';

/** Audit rows held while a fleet's database is down; past this, a batch is dropped (and logged). */
const MAX_WAITING = 100_000;

/**
 * Who got which account's token, when. Entries are buffered and written in one
 * transaction a second, so the token hot path never waits for an fsync. The same
 * (account, client, action) is recorded at most once a minute: a script asking in a
 * loop leaves one row a minute, not millions.
 */
export class AuditLog {
  private buffer: AuditEntry[] = [];
  private readonly lastRecorded = new Map<string, number>();
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
    const who = (client ?? 'unknown').slice(0, 200);
    const key = `${account}\u0000${who}\u0000${action}`;
    const last = this.lastRecorded.get(key);
    if (last !== undefined && now - last < 60_000) return;
    this.lastRecorded.set(key, now);
    this.buffer.push({ at: now, account, client: who, action });
    if (this.buffer.length >= 10_000 && !this.waiting) void this.flush();
  }
  /** Write what is buffered; never rejects (a failed batch is logged and dropped). */
  async flush(): Promise<void> {
    if (this.lastRecorded.size > 100_000) this.lastRecorded.clear(); // bounded memory; worst case a few extra rows
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
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
        return;
      }
      this.log.error('could not write the audit log', { error: err as Error, entries: batch.length });
    }
  }
  close(): Promise<void> {
    clearInterval(this.timer);
    return this.flush();
  }
}
