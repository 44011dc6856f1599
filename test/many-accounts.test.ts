/**
 * A daemon with thousands of accounts (the many-accounts bench at a test's size). It answers
 * before it has read their grants (broker/grant-load.ts): token requests sent the moment it is
 * ready are answered exactly as they are later, rule 8 included; killed while it reads them,
 * it loses and marks nothing.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityKey } from '../src/daemon/grant-identity.js';
import { loadOrCreateKey } from '../src/daemon/store/crypto.js';
import { openStore } from '../src/daemon/store/sqlite-store.js';
import type { AccountConfig } from '../src/protocol/api.js';
import { DaemonProcess, tempHome, writeSettings } from './support/daemon.js';
import { waitFor } from './support/fake-as.js';

/** Several turns of the grants' read (GRANTS_PER_TURN). */
const COUNT = 5000;
/** Nothing listens there: no token here is ever refreshed (they are valid for a day). */
const A: AccountConfig = { driver: 'oauth2', issuer: 'http://127.0.0.1:9/a', client_id: 'cli', scopes: [], hosts: [] };
const names = Array.from({ length: COUNT }, (_, i) => `a${String(i).padStart(5, '0')}`);
/** Every 100th grant is from before bindings were recorded: it takes the account's identity. */
const unbound = (i: number) => i % 100 === 7;

/**
 * What a SIGKILL left in the database, read from a copy (with its WAL) so that the restarted
 * daemon finds the files as the kill left them: SQLite's own check, and the grants of `names`.
 */
function afterKill(dataDir: string) {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-kill-'));
  try {
    for (const f of ['tokend.db', 'tokend.db-wal', 'tokend.db-shm'])
      if (fs.existsSync(path.join(dataDir, f))) fs.copyFileSync(path.join(dataDir, f), path.join(copy, f));
    const db = new Database(path.join(copy, 'tokend.db'), { fileMustExist: true });
    try {
      const count = (where: string) =>
        db.prepare<[], number>(`SELECT count(*) FROM grants WHERE account GLOB 'a[0-9]*' AND ${where}`).pluck().get()!;
      return {
        integrity: db.prepare<[], string>('PRAGMA integrity_check').pluck().all(),
        grants: count('refresh_token IS NOT NULL AND access_token IS NOT NULL'),
        marked: count("(in_flight_since IS NOT NULL OR status != 'active' OR last_error IS NOT NULL)"),
        unbound: count('bound_to IS NULL'),
      };
    } finally {
      db.close();
    }
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
}

/**
 * `POST /v1/token` for each account, all sent at once on one connection (HTTP/1.1 pipelining,
 * RFC 9112 §9.3.2: answered in order): every account's answer for a few milliseconds of this
 * process's time, where a request each through node's client cost it half a second.
 */
function tokensOf(socket: string, accounts: string[]): Promise<Array<{ status: number; body: string }>> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    const chunks: Buffer[] = [];
    conn.on('data', (c: Buffer) => chunks.push(c));
    conn.on('error', reject);
    conn.on('close', () => {
      const all = Buffer.concat(chunks);
      const answers: Array<{ status: number; body: string }> = [];
      for (let at = 0; at < all.length; ) {
        const end = all.indexOf('\r\n\r\n', at);
        if (end < 0) break;
        const head = all.toString('latin1', at, end);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        answers.push({ status: Number(head.slice(9, 12)), body: all.toString('utf8', end + 4, end + 4 + length) });
        at = end + 4 + length;
      }
      resolve(answers);
    });
    const requests = accounts.map((account, i) => {
      const body = JSON.stringify({ account });
      const last = i === accounts.length - 1 ? 'connection: close\r\n' : '';
      return `POST /v1/token HTTP/1.1\r\nhost: tokend\r\ncontent-type: application/json\r\n${last}content-length: ${body.length}\r\n\r\n${body}`;
    });
    conn.write(requests.join(''));
  });
}

describe('a daemon with thousands of accounts', () => {
  const h = tempHome();
  const d = new DaemonProcess(h.home, h.env);
  const dataDir = path.join(h.home, 'data');

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

  it('SIGKILLed right after its first answer, while it reads the grants, loses and marks nothing: restarted, it serves every token', async () => {
    await d.stop('SIGKILL');
    const unbinding = names.filter((_, i) => unbound(i));
    // The read writes the unbound grants' bindings in one transaction once it has the whole
    // list (GrantLoad.settle): found still unbound after the kill, they show it came while the
    // read went on (the first answer comes after its first page). A start that outran the
    // kill is tried again.
    let duringRead = 0;
    for (let attempt = 0; attempt < 3 && duringRead === 0; attempt++) {
      const db = new Database(path.join(dataDir, 'tokend.db'), { fileMustExist: true });
      const unbind = db.prepare('UPDATE grants SET bound_to = NULL WHERE account = ?');
      for (const account of unbinding) unbind.run(account);
      db.close();
      await d.start([], { pollMs: 2, timeoutMs: 60_000 });
      await d.stop('SIGKILL');
      const killed = afterKill(dataDir);
      expect(killed).toMatchObject({ integrity: ['ok'], grants: COUNT, marked: 0 });
      if (killed.unbound === unbinding.length) duringRead++;
    }
    expect(duringRead, 'no kill came before the daemon had read every grant').toBe(1);

    await d.start([], { timeoutMs: 60_000 });
    const served = await tokensOf(d.socket, names);
    expect(served).toHaveLength(COUNT);
    expect(served.filter((r, i) => r.status !== 200 || JSON.parse(r.body).access_token !== `at-${names[i]}`)).toEqual([]);
    // Its read goes to the end this time: every binding written (by the whole list, or by an account's own read).
    await waitFor(() => {
      const db = new Database(path.join(dataDir, 'tokend.db'), { readonly: true, fileMustExist: true });
      try {
        return db.prepare<[], number>('SELECT count(*) FROM grants WHERE bound_to IS NULL').pluck().get() === 0;
      } finally {
        db.close();
      }
    }, 'the bindings of the unbound grants');
    await d.stop('SIGKILL');
    expect(afterKill(dataDir)).toEqual({ integrity: ['ok'], grants: COUNT, marked: 0, unbound: 0 });
  });
});
