import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadOrCreateKey, open, seal } from '../src/daemon/store/crypto.js';
import { LOGIN_SECRETS_VERSION, MIGRATIONS, SCHEMA_VERSION } from '../src/daemon/store/migrations.js';
import { GenerationMismatchError, StoreError, openStore } from '../src/daemon/store/sqlite-store.js';
import type { LoginRecord, Store, TokenUpdate } from '../src/daemon/store/types.js';

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

describe('grants', () => {
  it('round-trips a grant with every field', async () => {
    const s = store();
    expect(await s.getGrant('work')).toBeUndefined();
    const boundTo = '{"driver":"oauth2","issuer":"https://idp.example","client_id":"cli"}';
    const written = await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: boundTo, ...tokens() });
    const expected = {
      account: 'work',
      refresh_token: 'rt-1',
      access_token: 'at-1',
      token_type: 'Bearer',
      expires_at: clock + 3_600_000,
      obtained_at: clock,
      scope: 'read write',
      generation: 1,
      status: 'active',
      in_flight_since: null,
      in_flight_for: null,
      last_error: null,
      updated_at: clock,
      bound_to: boundTo,
      refresh_expires_at: null,
    };
    expect(written).toEqual(expected);
    expect(await s.getGrant('work')).toEqual(expected);
    await s.close();
    expect(await store().getGrant('work')).toEqual(expected);
  });

  it('stores a grant that has only a refresh token (import)', async () => {
    const g = await store().replaceGrant('imp', { refresh_token: 'rt-imported' });
    expect(g).toMatchObject({ refresh_token: 'rt-imported', access_token: null, expires_at: null, scope: null, generation: 1 });
  });

  it('lists every grant without decrypting a token: whether each exists, and the times', async () => {
    const s = store();
    await s.replaceGrant('b', { refresh_token: 'rt-b' });
    await s.replaceGrant('a', { refresh_token: 'rt-a', ...tokens({ access_token: 'at-a' }) });
    const listed = await s.listGrants();
    expect(listed.map((g) => [g.account, g.has_refresh_token, g.has_access_token, g.generation])).toEqual([
      ['a', true, true, 1],
      ['b', true, false, 1],
    ]);
    expect(JSON.stringify(listed)).not.toMatch(/rt-|at-a/);
  });

  it("reads one grant's access token without its refresh token", async () => {
    const s = store();
    await s.replaceGrant('a', { refresh_token: 'rt-a', ...tokens({ access_token: 'at-a' }) });
    const t = await s.getAccessToken('a');
    expect(t).toMatchObject({ account: 'a', access_token: 'at-a', generation: 1, status: 'active' });
    expect(t).not.toHaveProperty('refresh_token');
    expect(await s.getAccessToken('nobody')).toBeUndefined();
  });

  it('lists the access tokens of active grants in pages, in account order, without their refresh tokens', async () => {
    const s = store();
    for (const a of ['d', 'b', 'a', 'c', 'e']) await s.replaceGrant(a, { refresh_token: `rt-${a}`, ...tokens({ access_token: `at-${a}` }) });
    await s.replaceGrant('f', { refresh_token: 'rt-f' }); // no access token
    await s.setStatus('c', 'reauth_required', 'refused'); // not servable
    const first = await s.listAccessTokens(undefined, 2);
    const rest = await s.listAccessTokens(first.at(-1)!.account, 10);
    expect([...first, ...rest].map((t) => [t.account, t.access_token])).toEqual([['a', 'at-a'], ['b', 'at-b'], ['d', 'at-d'], ['e', 'at-e']]);
    expect(JSON.stringify([...first, ...rest])).not.toContain('rt-');
  });

  it('bumps the generation on every login and every committed refresh', async () => {
    const s = store();
    expect((await s.replaceGrant('work', { refresh_token: 'rt-1' })).generation).toBe(1);
    expect((await s.commitRefresh('work', 1, tokens({ refresh_token: 'rt-2' }))).generation).toBe(2);
    expect((await s.commitRefresh('work', 2, tokens({ refresh_token: 'rt-3' }))).generation).toBe(3);
    // A new login replaces the grant but keeps counting, so an in-flight refresh from
    // before the login cannot commit over it.
    expect((await s.replaceGrant('work', { refresh_token: 'rt-login' })).generation).toBe(4);
    expect((await s.getGrant('work'))!.refresh_token).toBe('rt-login');
  });

  it('commits new tokens and clears in-flight, status and last error', async () => {
    const s = store();
    await s.replaceGrant('work', { refresh_token: 'rt-1', ...tokens() });
    await s.markInFlight('work', clock);
    await s.setStatus('work', 'reauth_required', 'invalid_grant');
    // The refusal and the end of the mark are one commit: a kill between two writes must not
    // leave a spent refresh token neither marked nor refused.
    expect(await s.getGrant('work')).toMatchObject({ status: 'reauth_required', last_error: 'invalid_grant', in_flight_since: null });
    clock += 1000;
    const g = await s.commitRefresh('work', 1, tokens({ access_token: 'at-2', refresh_token: 'rt-2', scope: null, expires_at: null }));
    expect(g).toMatchObject({
      refresh_token: 'rt-2',
      access_token: 'at-2',
      scope: null,
      expires_at: null,
      status: 'active',
      in_flight_since: null,
      last_error: null,
      updated_at: clock,
    });
  });

  it('keeps the old refresh token when the response carries none', async () => {
    const s = store();
    await s.replaceGrant('work', { refresh_token: 'rt-keep', ...tokens() });
    const g = await s.commitRefresh('work', 1, tokens({ access_token: 'at-2' }));
    expect(g.refresh_token).toBe('rt-keep');
    expect(g.access_token).toBe('at-2');
    await s.close();
    expect((await store().getGrant('work'))!.refresh_token).toBe('rt-keep');
  });

  it('refuses a commit from a stale generation and leaves the grant alone', async () => {
    const s = store();
    await s.replaceGrant('work', { refresh_token: 'rt-1', ...tokens() });
    await s.commitRefresh('work', 1, tokens({ refresh_token: 'rt-2', access_token: 'at-2' }));
    let err: unknown;
    try {
      await s.commitRefresh('work', 1, tokens({ refresh_token: 'rt-stale', access_token: 'at-stale' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GenerationMismatchError);
    expect(err).toMatchObject({ message: 'generation mismatch', code: 'generation_mismatch', expected: 1, stored: 2 });
    expect(await s.getGrant('work')).toMatchObject({ refresh_token: 'rt-2', access_token: 'at-2', generation: 2 });
  });

  it('refuses a commit for a grant deleted meanwhile', async () => {
    const s = store();
    await s.replaceGrant('work', { refresh_token: 'rt-1' });
    await s.deleteGrant('work');
    await expect(s.commitRefresh('work', 1, tokens())).rejects.toThrow(/^generation mismatch$/);
    expect(await s.getGrant('work')).toBeUndefined();
  });

  it('keeps an in-flight mark across close and reopen', async () => {
    const s = store();
    await s.replaceGrant('work', { refresh_token: 'rt-1' });
    await s.markInFlight('work', clock + 5);
    await s.close();
    const s2 = store();
    expect((await s2.getGrant('work'))!.in_flight_since).toBe(clock + 5);
    await s2.clearInFlight('work');
    expect((await s2.getGrant('work'))!.in_flight_since).toBeNull();
  });

  it('refuses to mark a refresh in flight for an account without a grant', async () => {
    await expect(store().markInFlight('nobody', clock)).rejects.toThrow(StoreError);
  });

  it("marks an import in flight on the grant, which keeps its tokens; ending the import leaves the grant as it was", async () => {
    const s = store();
    const before = await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id', ...tokens() });
    await s.markImport('work', clock + 5, { boundTo: 'id', lastError: 'unused: there is a grant' });
    await s.close();
    const s2 = store();
    expect(await s2.getGrant('work')).toEqual({ ...before, in_flight_since: clock + 5, in_flight_for: 'import' });
    await s2.endImport('work');
    expect(await s2.getGrant('work')).toEqual(before);
  });

  it('holds an import mark on a placeholder where there is no grant, and ending the import leaves no grant', async () => {
    const s = store();
    await s.markImport('work', clock + 5, { boundTo: 'id', lastError: 'an import was interrupted' });
    expect(await s.getGrant('work')).toMatchObject({
      generation: 0,
      status: 'reauth_required',
      refresh_token: null,
      access_token: null,
      in_flight_since: clock + 5,
      in_flight_for: 'import',
      last_error: 'an import was interrupted',
    });
    await s.endImport('work');
    expect(await s.getGrant('work')).toBeUndefined();
    // A proven import replaces the placeholder: its first generation, the mark gone.
    await s.markImport('work', clock + 6, { boundTo: 'id', lastError: 'x' });
    expect(await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id', ...tokens() })).toMatchObject({
      generation: 1,
      status: 'active',
      in_flight_since: null,
      in_flight_for: null,
      last_error: null,
    });
  });

  it('replaces a grant and the secrets that came with it in one commit', async () => {
    const s = store();
    await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id' }, { rd_client_id: 'c1', rd_client_secret: 's1' });
    await s.markImport('work', clock, { boundTo: 'id', lastError: 'x' });
    const g = await s.replaceGrant('work', { refresh_token: 'rt-2', bound_to: 'id' }, { rd_client_id: 'c2', rd_client_secret: 's2' });
    expect(g).toMatchObject({ refresh_token: 'rt-2', generation: 2, in_flight_since: null, in_flight_for: null });
    expect(await s.getSecrets('work')).toEqual(new Map([['rd_client_id', 'c2'], ['rd_client_secret', 's2']]));
  });

  it('persists reauth_required and last_error, and keeps the secrets', async () => {
    const s = store();
    await s.replaceGrant('work', { refresh_token: 'rt-1' });
    await s.putSecret('work', 'client_secret', 'cs-1');
    await s.setStatus('work', 'reauth_required', 'the refresh token was revoked');
    await s.close();
    const s2 = store();
    expect(await s2.getGrant('work')).toMatchObject({
      status: 'reauth_required',
      last_error: 'the refresh token was revoked',
      refresh_token: 'rt-1',
    });
    expect(await s2.getSecret('work', 'client_secret')).toBe('cs-1');
  });

  it('deletes a grant without touching other accounts', async () => {
    const s = store();
    await s.replaceGrant('a', { refresh_token: 'rt-a' });
    await s.replaceGrant('b', { refresh_token: 'rt-b' });
    await s.deleteGrant('a');
    expect(await s.getGrant('a')).toBeUndefined();
    expect((await s.getGrant('b'))!.refresh_token).toBe('rt-b');
  });
});

describe('secrets', () => {
  it('round-trips, overwrites and deletes secrets per account', async () => {
    const s = store();
    expect(await s.getSecret('work', 'client_secret')).toBeUndefined();
    await s.putSecret('work', 'client_secret', 'cs-1');
    await s.putSecret('work', 'password', 'pw-1');
    await s.putSecret('home', 'client_secret', 'cs-home');
    await s.putSecret('work', 'client_secret', 'cs-2');
    expect(await s.getSecret('work', 'client_secret')).toBe('cs-2');
    expect(await s.getSecret('work', 'password')).toBe('pw-1');
    await s.deleteSecrets('work');
    expect(await s.getSecret('work', 'client_secret')).toBeUndefined();
    expect(await s.getSecret('work', 'password')).toBeUndefined();
    expect(await s.getSecret('home', 'client_secret')).toBe('cs-home');
  });

  it('round-trips non-ASCII and empty values', async () => {
    const s = store();
    await s.putSecret('work', 'password', 'pässwörd 🔑');
    await s.putSecret('work', 'empty', '');
    expect(await s.getSecret('work', 'password')).toBe('pässwörd 🔑');
    expect(await s.getSecret('work', 'empty')).toBe('');
  });
});

describe('audit', () => {
  it('appends a batch and lists it newest first, per account and limited', async () => {
    const s = store();
    await s.appendAudit([
      { at: 1, account: 'a', client: 'git/2.39', action: 'token' },
      { at: 3, account: 'b', client: 'curl', action: 'token' },
      { at: 2, account: 'a', client: 'x'.repeat(500), action: 'refresh' },
    ]);
    await s.appendAudit([]);
    expect((await s.listAudit()).map((e) => e.at)).toEqual([3, 2, 1]);
    expect((await s.listAudit({ account: 'a' })).map((e) => e.at)).toEqual([2, 1]);
    expect(await s.listAudit({ limit: 1 })).toEqual([{ at: 3, account: 'b', client: 'curl', action: 'token' }]);
    expect((await s.listAudit({ account: 'a', limit: 1 }))[0]!.client).toBe('x'.repeat(200));
  });
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
    await s.replaceGrant('work', { refresh_token: secrets.rt, ...tokens({ access_token: secrets.at, scope: 'plain-scope-marker' }) });
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

  it('refuses a ciphertext moved to another account, column or secret name', async () => {
    const s = store();
    await s.replaceGrant('alice', { refresh_token: 'rt-alice', ...tokens({ access_token: 'at-alice' }) });
    await s.replaceGrant('bob', { refresh_token: 'rt-bob', ...tokens({ access_token: 'at-bob' }) });
    await s.putSecret('alice', 'client_secret', 'cs-alice');
    await s.putSecret('bob', 'client_secret', 'cs-bob');

    const raw = new Database(dbFile);
    try {
      raw
        .prepare("UPDATE grants SET refresh_token = (SELECT refresh_token FROM grants WHERE account = 'alice') WHERE account = 'bob'")
        .run();
      raw.prepare("UPDATE grants SET access_token = refresh_token WHERE account = 'alice'").run();
      raw
        .prepare(
          "UPDATE secrets SET value = (SELECT value FROM secrets WHERE account = 'alice') WHERE account = 'bob' AND name = 'client_secret'",
        )
        .run();
      raw
        .prepare("INSERT INTO secrets (account, name, value) SELECT account, 'password', value FROM secrets WHERE account = 'alice'")
        .run();
    } finally {
      raw.close();
    }

    const failure = async (fn: () => Promise<unknown>): Promise<StoreError> => {
      try {
        await fn();
      } catch (e) {
        return e as StoreError;
      }
      throw new Error('expected a decrypt failure');
    };
    const e1 = await failure(() => s.getGrant('bob'));
    expect(e1).toBeInstanceOf(StoreError);
    expect(e1.code).toBe('decrypt_failed');
    expect(e1.message).toContain('grant:bob:refresh_token');
    expect(e1.message).toContain(dbFile);
    expect(e1.message).not.toMatch(/rt-alice|rt-bob/);

    const e2 = await failure(() => s.getGrant('alice'));
    expect(e2.message).toContain('grant:alice:access_token');
    expect(e2.message).not.toMatch(/rt-alice|at-alice/);

    expect((await failure(() => s.getSecret('bob', 'client_secret'))).message).toContain('secret:bob:client_secret');
    expect((await failure(() => s.getSecret('alice', 'password'))).message).toContain('secret:alice:password');
    // The rows nobody touched still read fine.
    expect(await s.getSecret('alice', 'client_secret')).toBe('cs-alice');
  });

  it('refuses to decrypt with another master key', async () => {
    await store().replaceGrant('work', { refresh_token: 'rt-1' });
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
    fs
      .readdirSync(path.dirname(dbFile))
      .filter((f) => fs.readFileSync(path.join(path.dirname(dbFile), f)).includes(needle));

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

  it('are bound to their login: a sealed row moved to another login does not open', async () => {
    const s = store();
    await s.putLogin(login({ id: 'a', secrets }));
    await s.putLogin(login({ id: 'b', secrets: { state: 'other' } }));
    await s.close();
    const raw = new Database(dbFile);
    raw.prepare("UPDATE login_secrets SET secrets = (SELECT secrets FROM login_secrets WHERE login_id = 'a') WHERE login_id = 'b'").run();
    raw.close();
    await expect(store().getLogin('b')).rejects.toMatchObject({ code: 'decrypt_failed' });
  });

  it('an older database loses every authorization URL (its state) in clear, pruned rows included, when upgraded', async () => {
    fs.mkdirSync(path.dirname(dbFile), { recursive: true, mode: 0o700 });
    const raw = new Database(dbFile);
    raw.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.slice(0, LOGIN_SECRETS_VERSION - 1)) m(raw);
    raw.pragma(`user_version = ${LOGIN_SECRETS_VERSION - 1}`);
    const put = raw.prepare("INSERT INTO logins (id, account, flow, status, data, created_at, updated_at) VALUES (?, 'work', 'browser', 'active', ?, 1, 1)");
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
    await s.replaceGrant('work', { refresh_token: 'rt-1' });
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
      expect(tables).toEqual(['audit', 'grants', 'login_secrets', 'logins', 'secrets']);
    } finally {
      raw.close();
    }
    // Reopening an up-to-date file runs nothing and keeps the data.
    await store().close();
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
