/**
 * A login's secrets on disk, through a real daemon and real logins against the real
 * oidc-provider: the state, the PKCE verifier and the authorization URL (which carries the
 * state), or the device code, are never in clear in the SQLite files (database, -wal,
 * -shm), are stored only sealed while the login is pending, and their row is gone, with no
 * copy left in any of those files, once the login ends: signed in, failed, cancelled, or
 * expired (its time passed while the daemon was stopped). A daemon stop or a SIGKILL keeps
 * them sealed for the next start, which takes the login up.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { settled, sleep, startDaemon, startLogin } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';

const DB_FILES = ['tokend.db', 'tokend.db-wal', 'tokend.db-shm'];

/** The bytes of the store's files that exist now, by name. */
function storeFiles(home: string): Map<string, Buffer> {
  const dir = path.join(home, 'data');
  const out = new Map<string, Buffer>();
  for (const f of DB_FILES) if (fs.existsSync(path.join(dir, f))) out.set(f, fs.readFileSync(path.join(dir, f)));
  return out;
}

/** Every 43-character base64url string in `bytes` whose S256 hash is `challenge`: the PKCE verifier, in clear (RFC 7636 §4.2). */
function verifiersIn(bytes: Buffer, challenge: string): string[] {
  const found: string[] = [];
  for (const m of bytes.toString('latin1').matchAll(/[A-Za-z0-9_-]{43,}/g)) {
    for (let i = 0; i + 43 <= m[0].length; i++) {
      const candidate = m[0].slice(i, i + 43);
      if (createHash('sha256').update(candidate, 'ascii').digest('base64url') === challenge) found.push(candidate);
    }
  }
  return found;
}

/** What a login's browser flow must never leave in clear in the store's files; the names of the files that hold one. */
function clearSecrets(home: string, authorizationUrl: string): string[] {
  const q = new URL(authorizationUrl).searchParams;
  const state = q.get('state')!;
  const out: string[] = [];
  for (const [name, bytes] of storeFiles(home)) {
    if (bytes.includes(state)) out.push(`${name}: the state`);
    if (bytes.includes(encodeURIComponent(state))) out.push(`${name}: the state, URL-encoded`);
    if (bytes.includes(new URL(authorizationUrl).search.slice(1, 60))) out.push(`${name}: the authorization URL`);
    if (verifiersIn(bytes, q.get('code_challenge')!).length) out.push(`${name}: the PKCE verifier`);
  }
  return out;
}

/** The login's sealed secrets row as stored now (a reader of its own, closed at once). */
function sealedRow(home: string, id: string): Buffer | undefined {
  const db = new Database(path.join(home, 'data', 'tokend.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare<[string], Buffer>('SELECT secrets FROM login_secrets WHERE login_id = ?').pluck().get(id);
  } finally {
    db.close();
  }
}

/** The login's public row: what `tokend status` shows of it later. */
function loginRow(home: string, id: string): { status: string; data: Record<string, unknown> } | undefined {
  const db = new Database(path.join(home, 'data', 'tokend.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare<[string], { status: string; data: string }>('SELECT status, data FROM logins WHERE id = ?').get(id);
    return row && { status: row.status, data: JSON.parse(row.data) };
  } finally {
    db.close();
  }
}

/** Files that still hold `blob` (a 32-byte slice of it, to find it across page boundaries too). */
function holding(home: string, blob: Buffer): string[] {
  const probe = blob.subarray(12, 44);
  return [...storeFiles(home)].filter(([, bytes]) => bytes.includes(probe)).map(([name]) => name);
}

describe("a login's secrets at rest", () => {
  const idp = useIdp();
  const { t } = useDaemon({ lifetime: 'test', launch: startDaemon, account: { idp } });

  /** Start a browser login and check it while pending: secrets sealed, none in clear. */
  async function pendingLogin(): Promise<{ id: string; url: string; blob: Buffer }> {
    const login = await startLogin(t.d, 'work', 'browser');
    expect(login.status).toBe('pending');
    const blob = sealedRow(t.home, login.id);
    expect(blob, 'the pending login keeps its secrets, sealed').toBeInstanceOf(Buffer);
    expect(holding(t.home, blob!).length, 'the sealed row is in the files scanned').toBeGreaterThan(0);
    expect(clearSecrets(t.home, login.authorization_url)).toEqual([]);
    expect(loginRow(t.home, login.id)!.data).not.toHaveProperty('authorization_url');
    return { id: login.id, url: login.authorization_url, blob: blob! };
  }

  /** After the end: no secrets row, no copy of the sealed blob, nothing in clear; the public row says how it ended. */
  function expectGone(p: { id: string; url: string; blob: Buffer }, status: string): void {
    expect(sealedRow(t.home, p.id)).toBeUndefined();
    expect(holding(t.home, p.blob)).toEqual([]);
    expect(clearSecrets(t.home, p.url)).toEqual([]);
    expect(loginRow(t.home, p.id)).toMatchObject({ status });
  }

  it('keeps state, verifier and authorization URL sealed while pending, and leaves no trace once signed in', async () => {
    const p = await pendingLogin();
    // Read back from the store (not only memory): the pending login still shows its URL.
    expect((await t.d.request('GET', `/v1/logins/${p.id}`)).json.authorization_url).toBe(p.url);
    const page = await fetch(await idp.authorize(p.url));
    expect(page.status).toBe(200);
    expect((await settled(t.d, p.id)).status).toBe('active');
    expectGone(p, 'active');
    expect((await t.d.cli(['token', 'work'])).code).toBe(0);
  });

  it('removes them when the provider says no (access_denied)', async () => {
    const p = await pendingLogin();
    const back = new URL(new URL(p.url).searchParams.get('redirect_uri')!);
    back.search = new URLSearchParams({
      error: 'access_denied',
      state: new URL(p.url).searchParams.get('state')!,
      iss: idp.issuer,
    }).toString();
    expect((await fetch(back)).status).toBe(400);
    expect((await settled(t.d, p.id)).error.code).toBe('access_denied');
    expectGone(p, 'failed');
  });

  it('removes them when the login is cancelled', async () => {
    const p = await pendingLogin();
    const r = await t.d.request('POST', `/v1/logins/${p.id}/cancel`);
    expect(r.json).toMatchObject({ status: 'failed', authorization_url: null });
    expect((await settled(t.d, p.id)).error.code).toBe('cancelled');
    expectGone(p, 'failed');
    // The finished login, read from the store, shows no authorization URL.
    expect((await t.d.request('GET', `/v1/logins/${p.id}`)).json.authorization_url).toBeNull();
  });

  it('keeps them sealed when the daemon stops during the login, for the next start, and removes them once signed in', async () => {
    const p = await pendingLogin();
    await t.d.stop('SIGTERM');
    expect(sealedRow(t.home, p.id)).toEqual(p.blob);
    expect(clearSecrets(t.home, p.url)).toEqual([]);
    expect(loginRow(t.home, p.id)).toMatchObject({ status: 'pending' });
    await t.d.start();
    expect((await fetch(await idp.authorize(p.url))).status).toBe(200);
    expect((await settled(t.d, p.id)).status).toBe('active');
    expectGone(p, 'active');
  });

  it("keeps a device login's device code sealed while pending, and removes it once signed in", async () => {
    const login = await startLogin(t.d, 'work', 'device');
    const blob = sealedRow(t.home, login.id);
    expect(blob).toBeInstanceOf(Buffer);
    await idp.approveDevice(login.user_code);
    expect((await settled(t.d, login.id)).status).toBe('active');
    expect(sealedRow(t.home, login.id)).toBeUndefined();
    expect(holding(t.home, blob!)).toEqual([]);
    // What status shows of it stays: the user code, how it ended.
    expect(loginRow(t.home, login.id)).toMatchObject({ status: 'active', data: { user_code: login.user_code } });
  });

  it('removes them at the next start when the login expired while the daemon was killed', async () => {
    expect((await t.d.request('PATCH', '/v1/accounts/work', { login_ttl_s: 1 })).status).toBe(200);
    const p = await pendingLogin();
    await t.d.stop('SIGKILL');
    expect(sealedRow(t.home, p.id)).toBeInstanceOf(Buffer);
    await sleep(1100);
    await t.d.start();
    expect((await settled(t.d, p.id)).error.code).toBe('expired');
    expectGone(p, 'expired');
  });
});
