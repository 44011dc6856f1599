import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog, audited, auditRefreshEpisodes } from '../src/daemon/audit.js';
import { E } from '../src/daemon/errors.js';
import { EventBus } from '../src/daemon/events.js';
import { createLogger } from '../src/daemon/log.js';
import { openStore } from '../src/daemon/store/sqlite-store.js';
import { loadOrCreateKey } from '../src/daemon/store/crypto.js';
import { rejectionOf } from './support/rejection.js';

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
  const quiet = createLogger('error', () => undefined);
  function sqlite() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-audit-'));
    dirs.push(dir);
    return openStore({ file: path.join(dir, 'tokend.db'), key: loadOrCreateKey(path.join(dir, 'key')) });
  }

  it('a burst of first token reads in one turn: each is in the store once what record() gave for its answer has settled', async () => {
    const store = sqlite();
    const audit = new AuditLog(store, quiet, 60_000);
    // One turn of the event loop: 40 programs' first reads, as 40 requests of one turn.
    const held = Array.from({ length: 40 }, (_, i) => audit.record(`acct${i}`, 'loadgen', 'token'));
    expect(held[0]).toBeUndefined(); // the first of the turn is written at once
    for (let i = 0; i < held.length; i++) {
      await held[i];
      // What the token route does before it answers: the row is on disk by now.
      const rows = await store.listAudit({ account: `acct${i}` });
      expect(
        rows.map((r) => r.client),
        `acct${i}`,
      ).toEqual(['loadgen']);
    }
    await audit.close();
    await store.close();
  });

  it('records every lifecycle row (never folded into the once-a-minute rows of token reads), in the order recorded', async () => {
    const store = sqlite();
    const audit = new AuditLog(store, quiet, 60_000);
    audit.record({ account: 'work', action: 'account_changed', caller: 'vault/1', detail: { fields: ['scopes'] } });
    audit.record({ account: 'work', action: 'account_changed', caller: 'vault/1', detail: { fields: ['scopes'] } });
    audit.record({ account: 'work', action: 'logout', outcome: 'failed', code: 'upstream_unavailable' });
    await audit.close();
    expect((await store.listAudit()).map((r) => [r.action, r.client, r.outcome, r.code]).reverse()).toEqual([
      ['account_changed', 'vault/1', 'ok', null],
      ['account_changed', 'vault/1', 'ok', null],
      ['logout', '', 'failed', 'upstream_unavailable'],
    ]);
    await store.close();
  });

  it('prunes rows past the retention and past the row bound, by the clock it is given', async () => {
    const store = sqlite();
    const day = 86_400_000;
    const now = Date.now();
    const settings = { audit_retention_days: 90, audit_max_rows: 3 };
    const audit = new AuditLog(store, quiet, 60_000, () => settings);
    await store.appendAudit(
      [200, 91, 89, 10, 2, 1].map((age) => ({ at: now - age * day, account: `aged-${age}`, client: 'c', action: 'token' })),
    );
    // Buffered rows are written before the prune, and count toward the bound.
    audit.record({ account: 'new', action: 'account_added' });
    // 200 and 91 days old go (90 days kept); of the other five, the two oldest written go (3 kept).
    expect(await audit.prune(now)).toBe(4);
    expect((await store.listAudit()).map((r) => r.account)).toEqual(['new', 'aged-1', 'aged-2']);
    // A setting changed (SIGHUP) applies at the next prune.
    settings.audit_retention_days = 1;
    expect(await audit.prune(now)).toBe(1);
    await audit.close();
    await store.close();
  });

  it('a prune that fails is logged and tried again later, never thrown', async () => {
    const store = sqlite();
    const lines: string[] = [];
    const audit = new AuditLog(
      store,
      createLogger('warn', (l) => void lines.push(l)),
      60_000,
      () => ({ audit_retention_days: 90, audit_max_rows: 1000 }),
    );
    store.pruneAudit = () => Promise.reject(new Error('disk I/O error'));
    expect(await audit.prune()).toBe(0);
    expect(lines.join('\n')).toContain('could not prune the audit log');
    await audit.close();
    await store.close();
  });

  it('records a refused or failed action with its code, and passes the error on', async () => {
    const rows: unknown[] = [];
    const sink = { record: (r: unknown) => void rows.push(r) };
    const conflict = E.conflict('no');
    expect(
      await rejectionOf(
        audited(sink, { account: 'w', action: 'import' }, () => Promise.reject(conflict)),
        Error,
      ),
    ).toBe(conflict);
    const boom = new Error('boom');
    expect(
      await rejectionOf(
        audited(sink, { account: 'w', action: 'logout' }, () => Promise.reject(boom)),
        Error,
      ),
    ).toBe(boom);
    expect(await audited(sink, { account: 'w', action: 'logout' }, async () => 7)).toBe(7);
    expect(rows).toEqual([
      { account: 'w', action: 'import', outcome: 'refused', code: 'conflict' },
      { account: 'w', action: 'logout', outcome: 'failed', code: 'internal' },
      { account: 'w', action: 'logout' },
    ]);
  });

  it('records one row per refresh failure episode, however many retries, and one when it ends', () => {
    const events = new EventBus();
    const rows: Array<{ account: string; action: string; outcome?: string; code?: string | null }> = [];
    auditRefreshEpisodes(events, { record: (r) => void rows.push(r) });
    for (let i = 0; i < 3; i++) events.emit('token.refresh_failed', 'work', { error: 'transient', message: 'm' });
    events.emit('token.refresh_failed', 'home', { error: 'invalid_grant', message: 'm' });
    events.emit('token.refreshed', 'work', { expires_at: null });
    events.emit('token.refreshed', 'work', { expires_at: null }); // a healthy refresh: no row
    events.emit('token.refresh_failed', 'work', { error: 'transient', message: 'm' }); // a new episode
    events.emit('login.succeeded', 'home', { login_id: 'l', flow: 'device', task: null, status: 'active' }); // a new grant: its login's own row says so
    events.emit('token.refreshed', 'home', { expires_at: null });
    expect(rows).toEqual([
      { account: 'work', action: 'refresh_failed', outcome: 'failed', code: 'transient' },
      { account: 'home', action: 'refresh_failed', outcome: 'refused', code: 'invalid_grant' },
      { account: 'work', action: 'refresh_recovered' },
      { account: 'work', action: 'refresh_failed', outcome: 'failed', code: 'transient' },
    ]);
  });
});
