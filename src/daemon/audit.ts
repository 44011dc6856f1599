import type { Logger } from './log.js';
import type { AuditEntry, Store } from './store/types.js';

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
    if (this.buffer.length >= 10_000) void this.flush();
  }
  /** Write what is buffered; never rejects (a failed batch is logged and dropped). */
  async flush(): Promise<void> {
    if (this.lastRecorded.size > 100_000) this.lastRecorded.clear(); // bounded memory; worst case a few extra rows
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    try {
      await this.store.appendAudit(batch);
    } catch (err) {
      this.log.error('could not write the audit log', { error: err as Error, entries: batch.length });
    }
  }
  close(): Promise<void> {
    clearInterval(this.timer);
    return this.flush();
  }
}
