import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/daemon/audit.js';
import { createLogger } from '../src/daemon/log.js';
import { openStore } from '../src/daemon/store/sqlite-store.js';
import { loadOrCreateKey } from '../src/daemon/store/crypto.js';

describe('audit log', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('records who asked for which account, once a minute per client and action, and never a token', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-audit-'));
    dirs.push(dir);
    const store = openStore({ file: path.join(dir, 'tokend.db'), key: loadOrCreateKey(path.join(dir, 'key')) });
    const audit = new AuditLog(
      store,
      createLogger('error', () => undefined),
      60_000,
    );
    for (let i = 0; i < 1000; i++) audit.record('work', 'curl/8.0', 'token');
    audit.record('work', 'git-credential-tokend', 'token');
    audit.record('work', 'curl/8.0', 'refresh');
    audit.record('home', 'curl/8.0', 'token');
    await audit.close();
    const rows = await store.listAudit();
    expect(rows.map((r) => [r.account, r.client, r.action]).sort()).toEqual([
      ['home', 'curl/8.0', 'token'],
      ['work', 'curl/8.0', 'refresh'],
      ['work', 'curl/8.0', 'token'],
      ['work', 'git-credential-tokend', 'token'],
    ]);
    await store.close();
  });

  it('with more accounts than fit in memory at once: still once a minute each, written in turns that leave the event loop free', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-audit-'));
    dirs.push(dir);
    const store = openStore({ file: path.join(dir, 'tokend.db'), key: loadOrCreateKey(path.join(dir, 'key')) });
    const audit = new AuditLog(
      store,
      createLogger('error', () => undefined),
      60_000,
    );
    const batches: number[] = [];
    let ticks = 0;
    const ticksAtWrite: number[] = [];
    const append = store.appendAudit.bind(store);
    store.appendAudit = (entries) => (batches.push(entries.length), ticksAtWrite.push(ticks), append(entries));
    const ticker = setInterval(() => ticks++, 0);
    const n = 120_000; // past the 100 000 distinct keys where the old log cleared its memory and recorded everything again
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < n; i++) audit.record(`acct${i}`, 'loadgen', 'token');
      await audit.flush();
    }
    clearInterval(ticker);
    await audit.close();
    expect(batches.reduce((a, b) => a + b, 0)).toBe(n);
    expect(Math.max(...batches)).toBeLessThanOrEqual(1000);
    // Other work ran between the writes of one flush: ticks moved on during it.
    expect(ticksAtWrite.at(-1)! - ticksAtWrite[0]!).toBeGreaterThan(5);
    expect((await store.listAudit({ limit: 200_000 })).length).toBe(n);
    await store.close();
  });
});
