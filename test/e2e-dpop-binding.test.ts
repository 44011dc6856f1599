/**
 * A DPoP grant is bound to the key it was obtained with (RFC 9449 §6): its binding in the
 * store names the key's thumbprint (`jkt`), and a grant whose key was replaced or lost is
 * never sent anywhere with another key (not refreshed, no proxy or oracle proof): a clear
 * error, the grant kept until a login replaces it. Against the real oidc-provider with DPoP.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { resolvePaths } from '../src/protocol/paths.js';
import { loadKey } from '../src/daemon/store/crypto.js';
import { openStore } from '../src/daemon/store/sqlite-store.js';
import { generateDpopKey } from '../src/daemon/dpop/key.js';
import { startDaemon } from './support/fake-as.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';
import { startDpopApi } from './support/dpop-api.js';
import { deviceLogin, putDpopAccount } from './support/dpop-login.js';
import type { TestDaemon } from './support/daemon.js';

const dbFile = (t: TestDaemon) => path.join(resolvePaths(t.env).dataDir, 'tokend.db');

/** The grant's stored binding (`grants.bound_to`), parsed. */
function binding(t: TestDaemon, account: string): Record<string, unknown> {
  const db = new Database(dbFile(t), { readonly: true, fileMustExist: true });
  try {
    return JSON.parse(db.prepare<[string], string>('SELECT bound_to FROM grants WHERE account = ?').pluck().get(account)!);
  } finally {
    db.close();
  }
}

/** Rewrite the grant's binding by hand (the daemon stopped), as an older tokend wrote it. */
function setBinding(t: TestDaemon, account: string, boundTo: string): void {
  const db = new Database(dbFile(t), { fileMustExist: true });
  try {
    db.prepare('UPDATE grants SET bound_to = ? WHERE account = ?').run(boundTo, account);
  } finally {
    db.close();
  }
}

describe('a DPoP grant names its key, and is used with no other', () => {
  const idp = useIdp({ accessTokenTtl: 60 });
  const api = useServer(() => startDpopApi(idp), { what: 'the DPoP API' });
  const { t, start } = useDaemon({ lifetime: 'manual', launch: startDaemon });

  /** A public-client DPoP account (RFC 9449 §5: its refresh tokens are bound too) with a grant from a device login. */
  async function loggedIn(name: string): Promise<string> {
    await putDpopAccount(t.d, idp.issuer, name, { api_base: api.url });
    return deviceLogin(t.d, idp, name);
  }

  it('the binding names the key the tokens are bound to (cnf.jkt)', async () => {
    await start();
    const jkt = await loggedIn('work');
    expect(binding(t, 'work')).toMatchObject({ dpop: 'on', jkt });
    const tok = (await t.d.request('POST', '/v1/token', { account: 'work' })).json;
    expect((await idp.introspect(tok.access_token)).cnf).toEqual({ jkt: binding(t, 'work').jkt });
    // A refresh keeps the binding, and the proxy's proofs pass the resource server's checks.
    expect((await t.d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
    expect(binding(t, 'work').jkt).toBe(jkt);
    const proxied = await t.d.request('GET', '/v1/proxy/work/v1/things');
    expect(proxied.status, api.refused.join(', ')).toBe(200);
  });

  it('a replaced key: refresh, proxy and oracle refuse with a clear error, the IdP sees no request, the grant stays until a login', async () => {
    await start();
    const jkt = await loggedIn('work');
    const before = binding(t, 'work');
    // The key replaced behind the daemon's back, through the store (the daemon stopped: it owns the file).
    await t.d.stop();
    const store = openStore({ file: dbFile(t), key: loadKey(resolvePaths(t.env).keyFile) });
    await store.putSecret('work', 'dpop_key', await generateDpopKey());
    await store.close();
    await t.d.start();
    const now = (await t.d.request('GET', '/v1/accounts/work')).json;
    expect(now.dpop.jkt).not.toBe(jkt);
    expect(now.dpop.grant_jkt).toBe(jkt);
    expect(now.status).toBe('reauth_required');
    expect(now.last_error).toMatch(/bound to the DPoP key/);
    const status = await t.d.cli(['status', 'work']);
    expect(status.stdout).toMatch(/dpop: +key \S+; the grant is bound to another key/);

    idp.resetStats();
    api.accepted = 0;
    api.refused.length = 0;
    const refresh = await t.d.request('POST', '/v1/accounts/work/refresh');
    expect(refresh.status).toBe(409);
    expect(refresh.json.error.code).toBe('reauth_required');
    expect(refresh.json.error.message).toMatch(/account "work" holds a grant bound to the DPoP key .*tokend login work/);
    const cli = await t.d.cli(['refresh', 'work']);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/tokend login work/);
    const proxied = await t.d.request('GET', '/v1/proxy/work/v1/things');
    expect(proxied.status).toBe(409);
    expect(proxied.json.error.code).toBe('reauth_required');
    const oracle = await t.d.request('POST', '/v1/dpop/proof', { account: 'work', htm: 'GET', htu: `${api.url}/v1/things` });
    expect(oracle.status).toBe(409);
    expect(oracle.json.error.code).toBe('reauth_required');
    // Nothing went out with the wrong key: no token request at the IdP, no request at the API.
    expect(idp.stats.tokenRequests).toBe(0);
    expect(api.accepted + api.refused.length).toBe(0);
    expect(binding(t, 'work')).toEqual(before);
    for (const r of [refresh.text, proxied.text, oracle.text, cli.stderr]) expect(r).not.toMatch(/"d"|eyJ/);

    // A login replaces the grant with one bound to the account's key now.
    await deviceLogin(t.d, idp, 'work');
    expect(binding(t, 'work').jkt).toBe(now.dpop.jkt);
    expect((await t.d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
    expect((await t.d.request('GET', '/v1/proxy/work/v1/things')).status).toBe(200);
    expect((await t.d.request('GET', '/v1/accounts/work')).json.dpop).toEqual({ jkt: now.dpop.jkt });
  });

  it('a binding written before keys were named ("dpop":"on") is the account key’s: refresh and proxy work', async () => {
    await start();
    const jkt = await loggedIn('work');
    const { jkt: _named, ...old } = binding(t, 'work');
    await t.d.stop();
    setBinding(t, 'work', JSON.stringify(old));
    await t.d.start();
    expect((await t.d.request('GET', '/v1/accounts/work')).json.dpop).toEqual({ jkt });
    expect((await t.d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
    expect((await t.d.request('GET', '/v1/proxy/work/v1/things')).status).toBe(200);
    // Kept as it was (a refresh does not rebind); a login will name the key.
    expect(binding(t, 'work')).toEqual(old);
  });
});
