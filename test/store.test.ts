import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadOrCreateKey, open, seal } from '../src/daemon/store/crypto.js';
import {
  AUDIT_BY_ACCOUNT_VERSION,
  AUDIT_OUTCOME_VERSION,
  LOGIN_SECRETS_VERSION,
  MIGRATIONS,
  SCHEMA_VERSION,
} from '../src/daemon/store/migrations.js';
import { StoreError, openStore } from '../src/daemon/store/sqlite-store.js';
import type { LoginRecord, Store, TokenUpdate } from '../src/daemon/store/types.js';

// What every store does (grants, marks, commits, secrets, logins, audit, sealed values bound
// to their row) is pinned for all three in store-contract.test.ts; this file keeps what only the SQLite store has: its
// files, their modes and what is in their bytes, the key file, and migrations.

let dir: string;
let dbFile: string;
let key: Buffer;
let clock: number;
const now = () => clock;
const open_: Store[] = [];

/** Open a store on this test's DB file; closed automatically after the test. */
function store(k: Buffer = key): Store {
  const s = openStore({ file: dbFile, key: k, now });
  open_.push(s);
  return s;
}

function tokens(over: Partial<TokenUpdate> = {}): TokenUpdate {
  return {
    access_token: 'at-1',
    token_type: 'Bearer',
    expires_at: clock + 3_600_000,
    obtained_at: clock,
    scope: 'read write',
    ...over,
  };
}

let oldUmask: number;
beforeAll(() => {
  // The daemon runs under umask 077; so do these tests.
  oldUmask = process.umask(0o077);
});
afterAll(() => {
  process.umask(oldUmask);
});

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokend-store-'));
  dbFile = path.join(dir, 'data', 'tokend.db');
  key = loadOrCreateKey(path.join(dir, 'config', 'key'));
  clock = 1_700_000_000_000;
});

afterEach(async () => {
  for (const s of open_.splice(0)) await s.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('encryption at rest', () => {
  it('leaves no token or secret in clear in the DB, -wal or -shm file', async () => {
    const secrets = {
      rt: 'RT-9f1c2e7a-distinctive-refresh',
      at: 'AT-4b8d0c3f-distinctive-access',
      rt2: 'RT2-77aa31e0-distinctive-rotated',
      cs: 'CS-c0ffee42-distinctive-client-secret',
    };
    const s = store();
    await s.replaceGrant('work', {
      bound_to: 'id',
      refresh_token: secrets.rt,
      ...tokens({ access_token: secrets.at, scope: 'plain-scope-marker' }),
    });
    await s.commitRefresh('work', 1, tokens({ refresh_token: secrets.rt2, access_token: secrets.at }));
    await s.putSecret('work', 'client_secret', secrets.cs);

    const scan = () => {
      const files = fs.readdirSync(path.dirname(dbFile)).map((f) => path.join(path.dirname(dbFile), f));
      let all = Buffer.alloc(0);
      for (const f of files) {
        const bytes = fs.readFileSync(f);
        all = Buffer.concat([all, bytes]);
        for (const [what, value] of Object.entries(secrets)) {
          for (const enc of ['utf8', 'utf16le'] as const) {
            expect(bytes.includes(Buffer.from(value, enc)), `${what} (${enc}) in ${path.basename(f)}`).toBe(false);
          }
        }
      }
      return { files: files.map((f) => path.basename(f)), all };
    };

    // While open, the writes sit in the WAL: make sure it is really there and scanned.
    const whileOpen = scan();
    expect(whileOpen.files).toEqual(expect.arrayContaining(['tokend.db', 'tokend.db-wal', 'tokend.db-shm']));
    expect(fs.statSync(`${dbFile}-wal`).size).toBeGreaterThan(0);
    // Non-secret columns are plain, which also proves the scan reads the data pages.
    expect(whileOpen.all.includes(Buffer.from('plain-scope-marker'))).toBe(true);

    await s.close();
    scan();
  });

  it('refuses to decrypt with another master key', async () => {
    await store().replaceGrant('work', { bound_to: 'id', refresh_token: 'rt-1' });
    const other = loadOrCreateKey(path.join(dir, 'other-key'));
    await expect(store(other).getGrant('work')).rejects.toThrow(/cannot decrypt grant:work:refresh_token/);
  });

  it('seals with a fresh IV per write and the documented layout', async () => {
    const a = seal(key, 'same', 'grant:x:refresh_token');
    const b = seal(key, 'same', 'grant:x:refresh_token');
    expect(a.equals(b)).toBe(false);
    expect(a[0]).toBe(1);
    expect(a.length).toBe(1 + 12 + 16 + 4);
    expect(open(key, a, 'grant:x:refresh_token')).toBe('same');
    expect(() => open(key, a, 'grant:y:refresh_token')).toThrow(/grant:y:refresh_token/);
    const tampered = Buffer.from(a);
    tampered[tampered.length - 1]! ^= 1;
    expect(() => open(key, tampered, 'grant:x:refresh_token')).toThrow(/cannot decrypt/);
  });
});

describe("logins' secrets", () => {
  const login = (over: Partial<LoginRecord> = {}): LoginRecord => ({
    id: 'login-1',
    account: 'work',
    flow: 'browser',
    status: 'pending',
    data: { expires_at: clock + 600_000, error: null },
    created_at: clock,
    updated_at: clock,
    ...over,
  });
  const STATE = 'STATE-5e1f-distinctive-oauth-state-value';
  const VERIFIER = 'VERIFIER-77c2-distinctive-pkce-verifier-xyz';
  const secrets = { state: STATE, code_verifier: VERIFIER, authorization_url: `https://id.example/auth?state=${STATE}` };

  /** The store's files (database, -wal, -shm) that hold `needle`. */
  const filesHolding = (needle: string | Buffer): string[] =>
    fs.readdirSync(path.dirname(dbFile)).filter((f) => fs.readFileSync(path.join(path.dirname(dbFile), f)).includes(needle));

  it('are sealed while the login is pending, kept by a put without them, and removed with no copy once it ends', async () => {
    const s = store();
    await s.putLogin(login({ secrets }));
    expect((await s.getLogin('login-1'))!.secrets).toEqual(secrets);
    expect(filesHolding(STATE)).toEqual([]);
    expect(filesHolding(VERIFIER)).toEqual([]);
    await s.putLogin(login({ updated_at: clock + 1 }));
    expect((await s.listLogins({ status: 'pending' }))[0]!.secrets).toEqual(secrets);

    const raw = new Database(dbFile, { readonly: true });
    const blob = raw.prepare('SELECT secrets FROM login_secrets').pluck().get() as Buffer;
    raw.close();
    expect(filesHolding(blob.subarray(12, 44)).length).toBeGreaterThan(0);

    await s.putLogin(login({ status: 'active', updated_at: clock + 2, secrets }));
    const done = (await s.getLogin('login-1'))!;
    expect(done.status).toBe('active');
    expect(done.secrets).toBeUndefined();
    // secure_delete zeroed the row in its page; the WAL that held the old page was emptied.
    expect(filesHolding(blob.subarray(12, 44))).toEqual([]);
  });

  it('an older database loses every authorization URL (its state) in clear, pruned rows included, when upgraded', async () => {
    fs.mkdirSync(path.dirname(dbFile), { recursive: true, mode: 0o700 });
    const raw = new Database(dbFile);
    raw.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.slice(0, LOGIN_SECRETS_VERSION - 1)) m(raw);
    raw.pragma(`user_version = ${LOGIN_SECRETS_VERSION - 1}`);
    const put = raw.prepare(
      "INSERT INTO logins (id, account, flow, status, data, created_at, updated_at) VALUES (?, 'work', 'browser', 'active', ?, 1, 1)",
    );
    put.run('kept', JSON.stringify({ authorization_url: `https://id.example/auth?state=${STATE}`, error: null }));
    put.run('pruned', JSON.stringify({ authorization_url: `https://id.example/auth?state=${VERIFIER}`, error: null }));
    raw.prepare("DELETE FROM logins WHERE id = 'pruned'").run();
    raw.close();
    // Both are in the file: the pruned one as freed bytes.
    expect(filesHolding(STATE)).toEqual(['tokend.db']);
    expect(filesHolding(VERIFIER)).toEqual(['tokend.db']);

    const s = store();
    expect(filesHolding(STATE)).toEqual([]);
    expect(filesHolding(VERIFIER)).toEqual([]);
    expect((await s.getLogin('kept'))!.data).toEqual({ error: null });
  });
});

describe('master key', () => {
  it('is created with mode 0600 and 32 bytes, and reused afterwards', async () => {
    const file = path.join(dir, 'fresh', 'key');
    const k1 = loadOrCreateKey(file);
    const st = fs.statSync(file);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(32);
    expect(k1.length).toBe(32);
    expect(fs.readFileSync(file).equals(k1)).toBe(true);
    expect(loadOrCreateKey(file).equals(k1)).toBe(true);
    // No temp file is left behind.
    expect(fs.readdirSync(path.dirname(file))).toEqual(['key']);
  });

  it('refuses a key readable by group or others', async () => {
    const file = path.join(dir, 'config', 'key');
    fs.chmodSync(file, 0o644);
    expect(() => loadOrCreateKey(file)).toThrow(new RegExp(`key file ${file} .*mode 0644`));
  });

  it('refuses a key of the wrong length', async () => {
    const file = path.join(dir, 'short-key');
    fs.writeFileSync(file, Buffer.alloc(31), { mode: 0o600 });
    expect(() => loadOrCreateKey(file)).toThrow(new RegExp(`key file ${file} is 31 bytes, expected 32`));
    fs.writeFileSync(file, Buffer.alloc(0), { mode: 0o600 });
    expect(() => loadOrCreateKey(file)).toThrow(/is 0 bytes/);
  });
});

describe('database file', () => {
  it('is created 0600, and so are its -wal and -shm', async () => {
    const s = store();
    await s.replaceGrant('work', { bound_to: 'id', refresh_token: 'rt-1' });
    for (const f of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) {
      expect((fs.statSync(f).mode & 0o777).toString(8), f).toBe('600');
    }
    expect((fs.statSync(path.dirname(dbFile)).mode & 0o777).toString(8)).toBe('700');
  });

  it('is migrated to the current schema version', async () => {
    await store().close();
    const raw = new Database(dbFile, { readonly: true });
    try {
      expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      const tables = raw.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
      expect(tables).toEqual(['audit', 'audit_by_account', 'audit_indexed', 'grants', 'login_secrets', 'logins', 'secrets']);
    } finally {
      raw.close();
    }
    // Reopening an up-to-date file runs nothing and keeps the data.
    await store().close();
  });

  it('keeps the audit rows of an older database when upgraded: each reads back as an ok action, with no code, task or detail', async () => {
    fs.mkdirSync(path.dirname(dbFile), { recursive: true, mode: 0o700 });
    const raw = new Database(dbFile);
    raw.pragma('journal_mode = WAL');
    const before = AUDIT_OUTCOME_VERSION - 1;
    for (const m of MIGRATIONS.slice(0, before)) m(raw);
    raw.pragma(`user_version = ${before}`);
    raw.prepare("INSERT INTO audit (at, account, client, action) VALUES (5, 'work', 'git/2.39', 'token')").run();
    raw.close();
    const s = store();
    expect(await s.listAudit()).toEqual([
      { id: 1, at: 5, account: 'work', client: 'git/2.39', action: 'token', outcome: 'ok', code: null, task: null, detail: null },
    ]);
    await s.close();
  });

  it("indexes an older database's audit rows by account when upgraded, and finds them and the rows written after", async () => {
    // The file as the tokend before this step left it: its (account, at) index, rows of many accounts.
    fs.mkdirSync(path.dirname(dbFile), { recursive: true, mode: 0o700 });
    const raw = new Database(dbFile);
    raw.pragma('journal_mode = WAL');
    const before = AUDIT_BY_ACCOUNT_VERSION - 1;
    for (const m of MIGRATIONS.slice(0, before)) m(raw);
    raw.pragma(`user_version = ${before}`);
    const insert = raw.prepare('INSERT INTO audit (at, account, client, action, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)');
    raw.transaction(() => {
      for (let i = 0; i < 5000; i++) insert.run(1000 + i, `acct${i % 50}`, 'git/2.39', 'token', 'ok', '{"caller":{"exe":"/usr/bin/git"}}');
    })();
    expect(raw.prepare("SELECT name FROM sqlite_master WHERE name = 'audit_account_at'").pluck().get()).toBe('audit_account_at');
    raw.close();

    const s = store();
    const mine = await s.listAudit({ account: 'acct7', limit: 10_000 });
    expect(mine.map((r) => r.at)).toEqual(Array.from({ length: 100 }, (_, k) => 1000 + 4957 - 50 * k));
    expect(mine[0]).toMatchObject({ account: 'acct7', client: 'git/2.39', detail: { caller: { exe: '/usr/bin/git' } } });
    // Rows written after the upgrade are found too, before and after they are indexed.
    await s.appendAudit([{ at: 9000, account: 'acct7', client: 'curl', action: 'token' }]);
    expect((await s.listAudit({ account: 'acct7', limit: 2 })).map((r) => r.at)).toEqual([9000, 5957]);
    await s.appendAudit(Array.from({ length: 5000 }, (_, i) => ({ at: 9001 + i, account: `acct${i % 50}`, client: 'c', action: 'token' })));
    await new Promise((r) => setTimeout(r, 20));
    expect((await s.listAudit({ account: 'acct7', limit: 1000 })).length).toBe(201);
    await s.close();

    const after = new Database(dbFile, { readonly: true });
    try {
      expect(after.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      // No index left that a token read's commit would put on a random page.
      const indexes = after.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit'").pluck().all();
      expect(indexes).toEqual(['audit_at']);
      expect(after.prepare('SELECT count(*) FROM audit_by_account').pluck().get()).toBe(10_001);
      expect(after.prepare('SELECT upto FROM audit_indexed').pluck().get()).toBe(10_001);
    } finally {
      after.close();
    }
  });

  it('refuses a database written by a newer tokend', async () => {
    await store().close();
    const raw = new Database(dbFile);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => store()).toThrow(new RegExp(`${dbFile} has schema version ${SCHEMA_VERSION + 1}.*newer tokend`));
  });

  it('refuses an existing database readable by others', async () => {
    await store().close();
    fs.chmodSync(dbFile, 0o644);
    expect(() => store()).toThrow(/accessible by group or others \(mode 0644\)/);
  });

  it('names the file when it is not a database', async () => {
    fs.mkdirSync(path.dirname(dbFile), { recursive: true });
    fs.writeFileSync(dbFile, Buffer.alloc(8192, 'this is not sqlite '), { mode: 0o600 });
    let err: unknown;
    try {
      store();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StoreError);
    expect(err).toMatchObject({ code: 'corrupt', sqliteCode: 'SQLITE_NOTADB' });
    expect((err as Error).message).toContain(dbFile);
  });
});
