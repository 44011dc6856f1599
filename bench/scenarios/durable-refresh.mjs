// 9. Durable refresh: store.commitRefresh (two AES-GCM seals, the generation-checked
// UPDATE … RETURNING, decode) in this process, against a one-row UPDATE in a transaction on
// a plain better-sqlite3 database, WAL, synchronous=FULL, same disk. (A transaction that
// writes nothing commits nothing and never fsyncs, so the baseline writes one integer.)
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { tempDir } from '../lib/processes.mjs';
import { interleave, median, nowMs } from '../lib/stats.mjs';
import { row } from '../lib/table.mjs';
import { dist, randomGrant } from '../context.mjs';

export default {
  id: 9,
  title: 'durable refresh',
  async run(ctx) {
    const { store: S } = await dist();
    const dir = tempDir('tkb-d-'); // same disk as every TOKEND_HOME (os.tmpdir())
    const store = S.openStore({ file: path.join(dir, 'tokend.db'), key: randomBytes(32) });
    const db = new Database(path.join(dir, 'plain.db'));
    const runs = ctx.rounds.commitRuns;
    try {
      const hour = () => Date.now() + 3_600_000;
      let gen = (await store.replaceGrant('work', randomGrant({ expiresAt: hour() }))).generation;
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); INSERT INTO t VALUES (1, 0);');
      const bump = db.prepare('UPDATE t SET n = n + 1 WHERE id = 1');
      const tx = db.transaction(() => bump.run());
      const timed = async (fn) => {
        const s = nowMs();
        await fn();
        return nowMs() - s;
      };
      const t = await interleave(
        runs,
        {
          tokend: () => {
            const tokens = randomGrant({ expiresAt: hour() });
            return timed(async () => (gen = (await store.commitRefresh('work', gen, tokens)).generation));
          },
          plain: () => timed(() => tx.immediate()),
        },
        10,
      );
      return {
        rows: [
          row({
            scenario: '9. durable refresh (`store.commitRefresh`)',
            measure: `commit a rotated grant, median of ${runs}`,
            t: median(t.tokend),
            b: median(t.plain),
            unit: 'ms',
            kind: 'max',
            limit: 2,
            baselineLabel: 'one-row SQLite txn, WAL, synchronous=FULL',
          }),
        ],
        raw: { durable: t },
      };
    } finally {
      await store.close();
      db.close();
    }
  },
};
