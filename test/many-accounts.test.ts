/**
 * A daemon with thousands of accounts (the many-accounts bench at a test's size). It answers
 * before it has read their grants (broker/grant-load.ts): token requests sent the moment it is
 * ready are answered exactly as they are later, rule 8 included.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityKey } from '../src/daemon/grant-identity.js';
import { loadOrCreateKey } from '../src/daemon/store/crypto.js';
import { openStore } from '../src/daemon/store/sqlite-store.js';
import type { AccountConfig } from '../src/protocol/api.js';
import { DaemonProcess, tempHome, writeSettings } from './support/daemon.js';

/** More than one turn of the grants' read (GRANTS_PER_TURN). */
const COUNT = 2500;
/** Nothing listens there: no token here is ever refreshed (they are valid for a day). */
const A: AccountConfig = { driver: 'oauth2', issuer: 'http://127.0.0.1:9/a', client_id: 'cli', scopes: [], hosts: [] };
const names = Array.from({ length: COUNT }, (_, i) => `a${String(i).padStart(5, '0')}`);
/** Every 100th grant is from before bindings were recorded: it takes the account's identity. */
const unbound = (i: number) => i % 100 === 7;

describe('a daemon with thousands of accounts', () => {
  const h = tempHome();
  const d = new DaemonProcess(h.home, h.env);

  beforeAll(async () => {
    const accounts: Record<string, AccountConfig> = Object.fromEntries(names.map((n) => [n, A]));
    // "moved" names another issuer than the one that issued its grant (rule 8): never served.
    accounts.moved = { ...A, issuer: 'http://127.0.0.1:9/b' };
    writeSettings(h.home, {}, accounts);
    const key = loadOrCreateKey(path.join(h.home, 'config', 'key'));
    // Built on tmpfs where there is one (no fsync per commit) and copied into place.
    const scratch = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'tkd-many-'));
    const store = openStore({ file: path.join(scratch, 'tokend.db'), key });
    const expiresAt = Date.now() + 86_400_000;
    for (const account of [...names, 'moved']) {
      await store.replaceGrant(account, {
        refresh_token: `rt-${account}`,
        access_token: `at-${account}`,
        token_type: 'Bearer',
        expires_at: expiresAt,
        obtained_at: Date.now(),
        bound_to: identityKey(A),
      });
    }
    await store.close();
    const db = new Database(path.join(scratch, 'tokend.db'));
    const unbind = db.prepare('UPDATE grants SET bound_to = NULL WHERE account = ?');
    for (const [i, account] of names.entries()) if (unbound(i)) unbind.run(account);
    db.close();
    fs.mkdirSync(path.join(h.home, 'data'), { recursive: true, mode: 0o700 });
    fs.copyFileSync(path.join(scratch, 'tokend.db'), path.join(h.home, 'data', 'tokend.db'));
    fs.chmodSync(path.join(h.home, 'data', 'tokend.db'), 0o600);
    fs.rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  afterAll(async () => {
    await d.stop('SIGKILL');
    h.cleanup();
  });

  it('answers token requests sent the moment it is ready with the stored tokens, and never the grant of a moved account', async () => {
    await d.start([], { pollMs: 2, timeoutMs: 60_000 });
    // At once, before the daemon has read the grants: the last ones come last in its read.
    const asked = [names.at(-1)!, names[COUNT - 2]!, names[1207]!, names[7]!, names[0]!];
    const [moved, ...answers] = await Promise.all(['moved', ...asked].map((account) => d.request('POST', '/v1/token', { account })));
    expect(answers.map((r) => [r.status, r.json?.access_token])).toEqual(asked.map((n) => [200, `at-${n}`]));
    expect(moved!.status).not.toBe(200);
    expect(moved!.text).not.toContain('at-moved');
    // Later, every account the same way; the unbound grants now carry the account's identity.
    const later = await Promise.all(
      names.filter((_, i) => i % 50 === 0 || unbound(i)).map((account) => d.request('POST', '/v1/token', { account })),
    );
    expect(later.every((r) => r.status === 200 && r.json.access_token === `at-${r.json.account}`)).toBe(true);
    expect((await d.request('POST', '/v1/token', { account: 'moved' })).status).not.toBe(200);
  });
});
