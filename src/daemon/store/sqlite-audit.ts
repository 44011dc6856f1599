import type Database from 'better-sqlite3';
import { AUDIT_SELECT, auditColumns, auditConditions, auditLimit, auditListing, decodeAudit, type Row } from './rows.js';
import type { AuditEntry, AuditQuery, AuditRow } from './types.js';

/**
 * Rows written since the last catch-up before the next one is due; so also about the
 * longest tail a listing by account scans (a rowid range, a few milliseconds).
 */
const INDEX_AFTER = 4096;
/** Rows indexed in one transaction of a catch-up; the event loop runs between two. */
const INDEX_CHUNK = 16_384;

/** The SQLite store's audit log (sqlite-store.ts delegates its three audit methods here). */
export interface SqliteAudit {
  append(entries: AuditEntry[]): void;
  list(query: AuditQuery): AuditRow[];
  prune(before: number, keep: number): number;
  /** Stop a catch-up that is due (the store closes). */
  close(): void;
}

/**
 * The audit table as the daemon writes it: every write appends (its rowid and its `at`
 * index grow at the end), so the commit a token's answer waits for (AuditLog.recordRead)
 * dirties a page or two however many accounts it names. An account's rows are found
 * through `audit_by_account` (migrations.ts), which a catch-up fills after the answers,
 * INDEX_AFTER rows at a time and in key order, so one page of it takes many rows per
 * commit; rows past the catch-up (`audit_indexed.upto`) are found by scanning that tail.
 */
export function sqliteAudit(
  db: Database.Database,
  file: string,
  store: {
    /** Run a write with synchronous=NORMAL (the store's own setting comes back after). */
    syncNormal: <T>(fn: () => T) => T;
    /** Throws when the file is no longer this store's (sqlite-store.ts, stillOurs). */
    writable: () => void;
  },
): SqliteAudit {
  const sql = {
    insert: db.prepare<ReturnType<typeof auditColumns>>(
      'INSERT INTO audit (at, account, client, action, outcome, code, task, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    upto: db.prepare<[], number>('SELECT upto FROM audit_indexed').pluck(),
    tailLength: db.prepare<[number], number>('SELECT count(*) FROM audit WHERE id > ?').pluck(),
    chunkEnd: db
      .prepare<[number, number], number | null>('SELECT max(id) FROM (SELECT id FROM audit WHERE id > ? ORDER BY id LIMIT ?)')
      .pluck(),
    // In key order: consecutive rows go to the same page of the index.
    index: db.prepare<[number, number]>(
      'INSERT OR IGNORE INTO audit_by_account (account, at, id) SELECT account, at, id FROM audit WHERE id > ? AND id <= ? ORDER BY account, at, id',
    ),
    setUpto: db.prepare<[number]>('UPDATE audit_indexed SET upto = ?'),
    // New rows take the next id after the largest left: once the newest are pruned, ids
    // at or below `upto` would come back unindexed.
    lowerUpto: db.prepare('UPDATE audit_indexed SET upto = min(upto, coalesce((SELECT max(id) FROM audit), 0))'),
    pruneBefore: db.prepare<[number]>('DELETE FROM audit WHERE at < ?'),
    // Rows are numbered as written: past the newest `keep`, the oldest written go.
    pruneBeyond: db.prepare<[number]>('DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)'),
  };
  const appendTx = db.transaction((entries: AuditEntry[]) => {
    for (const e of entries) sql.insert.run(...auditColumns(e));
  });
  const indexTx = db.transaction((): number => {
    const upto = sql.upto.get()!;
    const to = sql.chunkEnd.get(upto, INDEX_CHUNK);
    if (to == null) return 0;
    sql.index.run(upto, to);
    sql.setUpto.run(to);
    return sql.tailLength.get(to)!;
  });
  const pruneTx = db.transaction((before: number, keep: number): number => {
    // The audit_unindex trigger takes each row out of audit_by_account.
    const n = sql.pruneBefore.run(before).changes + sql.pruneBeyond.run(keep).changes;
    sql.lowerUpto.run();
    return n;
  });

  /** Rows written since the last catch-up (at open, the tail left unindexed). */
  let unindexed = sql.tailLength.get(sql.upto.get()!)!;
  let due: NodeJS.Timeout | undefined;
  const catchUp = () => {
    due = undefined;
    if (!db.open) return;
    try {
      store.writable();
      unindexed = store.syncNormal(() => indexTx.immediate());
    } catch {
      // Nothing is lost: listings scan the longer tail, and the next catch-up (after
      // INDEX_AFTER more rows) starts from the same place.
      unindexed = 0;
    }
    if (unindexed >= INDEX_AFTER) (due = setTimeout(catchUp, 0)).unref();
  };

  return {
    append(entries) {
      appendTx.immediate(entries);
      unindexed += entries.length;
      // On the next turn, after this one's answers and the write some of them wait for at
      // its end (AuditLog.recordRead's setImmediate): never before an answer.
      if (unindexed >= INDEX_AFTER && !due) (due = setTimeout(catchUp, 0)).unref();
    },

    list(query) {
      if (query.account === undefined) {
        const { sql: tail, values } = auditListing(query, () => '?');
        // A query of the caller's choosing: prepared per listing (an operator's read, not a hot path).
        return db
          .prepare<unknown[], Row>(`${AUDIT_SELECT} audit ${tail}`)
          .all(...values)
          .map((row) => decodeAudit(row, file));
      }
      const limit = auditLimit(query);
      const values: unknown[] = [];
      const p = (v: unknown) => (values.push(v), '?');
      // The indexed rows in the index's order, the tail's sorted (it is short); the merge
      // of the two stops at the limit. `+at` (no index can give it) keeps the tail a rowid
      // range, neither a walk of the whole `at` index for its order nor for `since`.
      const indexed = auditConditions(query, p, (c) => (c === 'action' ? 'a.action' : `b.${c}`));
      const tail = auditConditions(query, p, (c) => (c === 'at' ? '+at' : c));
      const text = `
        SELECT b.id AS id, b.at AS at, a.account, a.client, a.action, a.outcome, a.code, a.task, a.detail
          FROM audit_by_account AS b JOIN audit AS a ON a.id = b.id WHERE ${indexed.join(' AND ')}
        UNION ALL
        SELECT id, +at, account, client, action, outcome, code, task, detail
          FROM audit WHERE id > (SELECT upto FROM audit_indexed) AND ${tail.join(' AND ')}
        ORDER BY at DESC, id DESC LIMIT ${p(limit)}`;
      return db
        .prepare<unknown[], Row>(text)
        .all(...values)
        .map((row) => decodeAudit(row, file));
    },

    prune: (before, keep) => pruneTx.immediate(before, keep),

    close() {
      if (due) clearTimeout(due);
      due = undefined;
    },
  };
}
