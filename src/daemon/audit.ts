import type { Logger } from './log.js';
import type { AuditEntry, Store } from './store/types.js';

/**
 * Who got which account's token, when. Entries are buffered and written in one
 * transaction a second, so the token hot path never waits for an fsync.
 */
export class AuditLog {
  private buffer: AuditEntry[] = [];
  private readonly timer: NodeJS.Timeout;
  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    flushMs = 1000,
  ) {
    this.timer = setInterval(() => this.flush(), flushMs);
    this.timer.unref();
  }
  record(account: string, client: string | undefined, action: string): void {
    this.buffer.push({ at: Date.now(), account, client: (client ?? 'unknown').slice(0, 200), action });
    if (this.buffer.length >= 10_000) this.flush();
  }
  flush(): void {
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    try {
      this.store.appendAudit(batch);
    } catch (err) {
      this.log.error('could not write the audit log', { error: err as Error, entries: batch.length });
    }
  }
  close(): void {
    clearInterval(this.timer);
    this.flush();
  }
}
