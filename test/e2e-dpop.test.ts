/**
 * DPoP-bound grants (RFC 9449) against the real oidc-provider with `features.dPoP`: the
 * daemon holds one key per account, every token request carries a proof, the provider binds
 * the tokens to that key (`cnf.jkt`), and a refresh token taken out of the database is
 * useless without the daemon.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resolvePaths } from '../src/protocol/paths.js';
import { loadKey, open as unseal } from '../src/daemon/store/crypto.js';
import { settled, startDaemon, startLogin } from './support/fake-as.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';
import { startDpopApi } from './support/dpop-api.js';
import { Tokend } from '../src/sdk/index.js';
import { ROOT, runCli, type CliResult, type TestDaemon } from './support/daemon.js';
import { run } from './support/run.js';

/** A stored grant's refresh token, read out of the SQLite file and decrypted with the master key, as a thief with both would. */
function stolenRefreshToken(t: TestDaemon, account: string): string {
  const paths = resolvePaths(t.env);
  const db = new Database(path.join(paths.dataDir, 'tokend.db'), { readonly: true, fileMustExist: true });
  try {
    const blob = db.prepare<[string], Buffer>('SELECT refresh_token FROM grants WHERE account = ?').pluck().get(account)!;
    return unseal(loadKey(paths.keyFile), blob, `grant:${account}:refresh_token`);
  } finally {
    db.close();
  }
}

/** Every column of every table, as text: the DPoP key's private part must be in none. */
function databaseText(t: TestDaemon): string {
  const db = new Database(path.join(resolvePaths(t.env).dataDir, 'tokend.db'), { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
    return tables
      .map((n) => JSON.stringify(db.prepare(`SELECT * FROM "${n}"`).all(), (_k, v) => (Buffer.isBuffer(v) ? v.toString('latin1') : v)))
      .join('\n');
  } finally {
    db.close();
  }
}

/** A DPoP account of client `conf` (confidential), or with `public` of client `cli`: RFC 9449 §5 binds a public client's refresh tokens to the key too. */
async function addDpopAccount(
  t: TestDaemon,
  issuer: string,
  name: string,
  extra: string[],
  client: 'conf' | 'public' = 'conf',
): Promise<CliResult> {
  const base = ['add', name, '--issuer', issuer, '--scope', 'openid offline_access api', '--dpop', '--json', ...extra];
  if (client === 'public') return t.d.cli([...base, '--client-id', 'cli']);
  return t.d.cli([...base, '--client-id', 'conf', '--client-secret-stdin'], 'conf-secret\n');
}

async function tokenOf(t: TestDaemon, account: string): Promise<any> {
  const r = await t.d.request('POST', '/v1/token', { account });
  expect(r.status, r.text).toBe(200);
  return r.json;
}

describe('DPoP-bound grants at the token endpoint', () => {
  const idp = useIdp({ accessTokenTtl: 60 });
  const { t, start } = useDaemon({ lifetime: 'manual', launch: startDaemon });

  it('tokend add says when the provider advertises DPoP, and an account is Bearer unless --dpop', async () => {
    await start();
    const r = await t.d.cli(
      ['add', 'plain', '--issuer', idp.issuer, '--client-id', 'conf', '--client-secret-stdin', '--flow', 'client-credentials'],
      'conf-secret\n',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/supports DPoP-bound tokens \(.*ES256.*\): --dpop turns them on/);
    // Said when the account is added, not at every later change.
    const changed = await t.d.cli(['set', 'plain', '--scope', 'openid api']);
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.stdout + changed.stderr).not.toMatch(/DPoP/);
    const tok = await tokenOf(t, 'plain');
    expect(tok.token_type).toBe('Bearer');
    expect((await idp.introspect(tok.access_token)).cnf).toBeUndefined();
  });

  it('a client-credentials token is bound to the account key: cnf.jkt is the thumbprint the account shows', async () => {
    await start();
    const r = await addDpopAccount(t, idp.issuer, 'svc', ['--flow', 'client-credentials']);
    expect(r.code, r.stderr).toBe(0);
    const jkt = JSON.parse(r.stdout).dpop.jkt;
    expect(jkt).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const tok = await tokenOf(t, 'svc');
    expect(tok.token_type).toBe('DPoP');
    const seen = await idp.introspect(tok.access_token);
    expect(seen.active).toBe(true);
    expect(seen.cnf).toEqual({ jkt });
    // The private key is sealed: its `d` is nowhere in the database in clear, nor in the view.
    expect(databaseText(t)).not.toMatch(/"d":"/);
    expect(JSON.stringify((await t.d.request('GET', '/v1/accounts/svc')).json)).not.toMatch(/"d"|"x"|"y"/);
  });

  it('a device login, its refreshes and a restart keep one key; the stored refresh token is useless without it', async () => {
    await start();
    expect((await addDpopAccount(t, idp.issuer, 'work', ['--flow', 'device'], 'public')).code).toBe(0);
    const jkt = (await t.d.request('GET', '/v1/accounts/work')).json.dpop.jkt;
    const login = await startLogin(t.d, 'work', 'device');
    await idp.approveDevice(login.user_code);
    expect((await settled(t.d, login.id)).status).toBe('active');
    const first = await tokenOf(t, 'work');
    expect(first.token_type).toBe('DPoP');
    expect((await idp.introspect(first.access_token)).cnf).toEqual({ jkt });

    // A refresh (RFC 6749 §6 with a proof, RFC 9449 §5): the new token is bound to the same key.
    const refreshed = await t.d.request('POST', '/v1/accounts/work/refresh');
    expect(refreshed.status, refreshed.text).toBe(200);
    // A restart reads the sealed key back: the next refresh still proves possession.
    await t.d.stop('SIGKILL');
    await t.d.start();
    expect((await t.d.request('GET', '/v1/accounts/work')).json.dpop.jkt).toBe(jkt);
    expect((await t.d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
    const after = await tokenOf(t, 'work');
    expect(after.access_token).not.toBe(first.access_token);
    expect((await idp.introspect(after.access_token)).cnf).toEqual({ jkt });

    // A thief with the database and the master key, but not the daemon: the IdP refuses the
    // refresh token without a proof by its key (RFC 9449 §5: a public client's refresh token is bound to it).
    const stolen = stolenRefreshToken(t, 'work');
    const res = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: stolen, client_id: 'cli' }),
    });
    expect(res.status).toBe(400);
    expect((await res.json()).error).toBe('invalid_grant');
    // …and the daemon's own grant still works afterwards.
    expect((await t.d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
  });
});

describe('turning DPoP on or off changes the grant identity (rule 8)', () => {
  const idp = useIdp({ accessTokenTtl: 60 });
  const { t } = useDaemon({ lifetime: 'test', launch: startDaemon, account: { idp, grant: true } });

  it('is refused with 409 while the account holds a grant, and done with --replace-grant (a new key, the old grant revoked)', async () => {
    const before = await tokenOf(t, 'work');
    expect(before.token_type).toBe('Bearer');
    const refused = await t.d.request('PATCH', '/v1/accounts/work', { dpop: true });
    expect(refused.status).toBe(409);
    expect(refused.json.error.message).toMatch(/\(dpop\)/);
    const cli = await t.d.cli(['set', 'work', '--dpop']);
    expect(cli.code).toBe(1);
    const done = await t.d.cli(['set', 'work', '--dpop', '--replace-grant', '--json']);
    expect(done.code, done.stderr).toBe(0);
    const view = JSON.parse(done.stdout);
    expect(view.dpop.jkt).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(view.has_refresh_token).toBe(false);
    expect((await idp.introspect(before.access_token)).active).toBe(false);
    // And off again: the key goes with the grant.
    expect((await t.d.cli(['set', 'work', '--no-dpop', '--json'])).code).toBe(0);
    expect((await t.d.request('GET', '/v1/accounts/work')).json.dpop).toBeUndefined();
  });
});

describe('a token endpoint that requires a DPoP nonce (RFC 9449 §8)', () => {
  const idp = useIdp({ accessTokenTtl: 60, dpop: { requireNonce: true } });
  const { t, start } = useDaemon({ lifetime: 'manual', launch: startDaemon });

  it('answers use_dpop_nonce once; the daemon retries with the nonce and remembers it for the next request', async () => {
    await start();
    idp.resetStats();
    const r = await addDpopAccount(t, idp.issuer, 'svc', ['--flow', 'client-credentials']);
    expect(r.code, r.stderr).toBe(0);
    // The add's check obtained the first token: refused for want of a nonce, then sent again with it.
    expect(idp.stats.tokenRequests).toBe(2);
    idp.resetStats();
    const tok = await tokenOf(t, 'svc');
    expect(tok.token_type).toBe('DPoP');
    expect((await idp.introspect(tok.access_token)).cnf).toEqual({ jkt: JSON.parse(r.stdout).dpop.jkt });
    // The add's check got the first token (nonce challenge, retry); this refresh reuses the remembered nonce: one request.
    const again = await t.d.request('POST', '/v1/accounts/svc/refresh');
    expect(again.status, again.text).toBe(200);
    expect(idp.stats.tokenRequests).toBe(1);
  });
});

describe('credential helpers and a DPoP account', () => {
  const idp = useIdp({ accessTokenTtl: 60 });
  const { t, start } = useDaemon({ lifetime: 'manual', launch: startDaemon });

  it('git, docker, kubectl and Bazel refuse it with one line naming DPoP, and serve no token', async () => {
    await start();
    expect((await addDpopAccount(t, idp.issuer, 'svc', ['--flow', 'client-credentials', '--host', '127.0.0.1'])).code).toBe(0);
    const token = (await tokenOf(t, 'svc')).access_token;
    const git = await run(path.join(ROOT, 'bin', 'git-credential-tokend'), ['get'], {
      env: t.env,
      stdin: 'protocol=https\nhost=127.0.0.1\n\n',
    });
    expect(git.code).toBe(0); // git tries its next helper
    expect(git.stdout).toBe('');
    expect(git.stderr.trim().split('\n')).toHaveLength(1);
    expect(git.stderr).toMatch(/account "svc" uses DPoP: its tokens need a proof/);
    const docker = await run(path.join(ROOT, 'bin', 'docker-credential-tokend'), ['get'], { env: t.env, stdin: 'https://127.0.0.1\n' });
    expect(docker.code).toBe(1);
    expect(docker.stdout).toMatch(/uses DPoP/);
    const info = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', spec: { interactive: false } });
    const kube = await runCli(['kubectl-credential', 'svc'], { env: { ...t.env, KUBERNETES_EXEC_INFO: info } });
    expect(kube.code).not.toBe(0);
    expect(kube.stderr).toMatch(/uses DPoP/);
    const bazel = await run(path.join(ROOT, 'bin', 'bazel-credential-tokend'), ['get'], {
      env: t.env,
      stdin: '{"uri":"https://127.0.0.1/x"}',
    });
    expect(bazel.code).not.toBe(0);
    expect(bazel.stderr).toMatch(/uses DPoP/);
    for (const r of [git, docker, kube, bazel]) expect(r.stdout + r.stderr).not.toContain(token);
  });
});

describe('proofs where the token is used: the proxy and the oracle, checked by a resource server', () => {
  const idp = useIdp({ accessTokenTtl: 60 });
  const api = useServer(() => startDpopApi(idp), { what: 'the DPoP API' });
  const { t } = useDaemon({ launch: startDaemon });

  beforeAll(async () => {
    const r = await addDpopAccount(t, idp.issuer, 'svc', ['--flow', 'client-credentials', '--api-base', api.url]);
    expect(r.code, r.stderr).toBe(0);
  });
  beforeEach(() => {
    api.refused.length = 0;
    api.accepted = 0;
    api.requireNonce = false;
  });

  it('the proxy sends Authorization: DPoP and a fresh proof per request (htu without the query)', async () => {
    for (const p of ['/v1/things?page=2#x', '/v1/things', '/other']) {
      const r = await t.d.request('GET', `/v1/proxy/svc${p.replace(/#.*/, '')}`);
      expect(r.status, `${p}: ${r.text} ${api.refused.join(', ')}`).toBe(200);
    }
    const post = await t.d.request('POST', '/v1/proxy/svc/v1/things', { a: 1 }, { dpop: 'caller-proof', authorization: 'Bearer caller' });
    expect(post.status, api.refused.join(', ')).toBe(200);
    expect(api.accepted).toBe(4);
    expect(api.refused).toEqual([]);
  });

  it('many concurrent requests to one URL (proofs signed ahead on the worker thread): the API takes every proof once', async () => {
    const seen = api.seenJti.size;
    for (let round = 0; round < 10; round++) {
      const answers = await Promise.all(Array.from({ length: 16 }, () => t.d.request('GET', '/v1/proxy/svc/v1/hot')));
      expect(
        answers.map((r) => r.status),
        api.refused.join(', '),
      ).toEqual(Array(16).fill(200));
    }
    expect(api.refused).toEqual([]);
    expect(api.accepted).toBe(160);
    expect(api.seenJti.size - seen).toBe(160);
  });

  it('an API that asks for a nonce (401 use_dpop_nonce) gets the request once more with it, and the nonce is kept for the host', async () => {
    api.requireNonce = true;
    api.nonce = `n-${Date.now()}`;
    const first = await t.d.request('POST', '/v1/proxy/svc/v1/things', { keep: 'this body' });
    expect(first.status).toBe(200);
    expect(api.refused).toEqual(['use_dpop_nonce']);
    expect((await t.d.request('GET', '/v1/proxy/svc/v1/things')).status).toBe(200);
    expect(api.refused).toEqual(['use_dpop_nonce']); // the second request carried the remembered nonce
    expect(api.accepted).toBe(2);
  });

  it('the oracle (API, CLI, SDK) gives a proof bound to the token; the API takes it once and refuses it replayed', async () => {
    const url = `${api.url}/v1/things?x=1`;
    const oracle = await t.d.request('POST', '/v1/dpop/proof', { account: 'svc', htm: 'GET', htu: url });
    expect(oracle.status, oracle.text).toBe(200);
    expect(oracle.json).toMatchObject({ account: 'svc', token_type: 'DPoP', proof: expect.any(String), expires_at: expect.any(String) });
    const headers = { authorization: `DPoP ${oracle.json.access_token}`, dpop: oracle.json.proof };
    expect((await fetch(url, { headers })).status).toBe(200);
    expect((await fetch(url, { headers })).status).toBe(401);
    expect(api.refused).toEqual(['jti replayed']);

    const cli = await t.d.cli(['token', 'svc', '--dpop-for', 'post', `${api.url}/v1/things`]);
    expect(cli.code, cli.stderr).toBe(0);
    const lines = cli.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    const cliHeaders = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
    expect(Object.keys(cliHeaders)).toEqual(['Authorization', 'DPoP']);
    expect((await fetch(`${api.url}/v1/things`, { method: 'POST', headers: cliHeaders })).status).toBe(200);

    const sdk = new Tokend({ env: t.env, userAgent: 'dpop-test' });
    const viaSdk = await sdk.dpopProof('svc', { method: 'delete', url: `${api.url}/v1/things/1` });
    const sdkHeaders = { authorization: `DPoP ${viaSdk.access_token}`, dpop: viaSdk.proof };
    expect((await fetch(`${api.url}/v1/things/1`, { method: 'DELETE', headers: sdkHeaders })).status).toBe(200);
    // A proof is for its own method and URL.
    expect(
      (
        await fetch(`${api.url}/v1/other`, {
          method: 'DELETE',
          headers: { ...sdkHeaders, dpop: (await sdk.dpopProof('svc', { method: 'DELETE', url: `${api.url}/v1/things/1` })).proof },
        })
      ).status,
    ).toBe(401);
    expect(api.refused.at(-1)).toMatch(/^htu/);
    // The key never leaves the daemon: no private part in any answer.
    for (const text of [oracle.text, cli.stdout, JSON.stringify(viaSdk)]) expect(text).not.toMatch(/"d"\s*:/);
  });

  it('the oracle refuses an account without DPoP, an unknown account and a bad request with clear errors', async () => {
    expect(
      (
        await t.d.cli(
          ['add', 'plain', '--issuer', idp.issuer, '--client-id', 'conf', '--client-secret-stdin', '--flow', 'client-credentials'],
          'conf-secret\n',
        )
      ).code,
    ).toBe(0);
    const plain = await t.d.request('POST', '/v1/dpop/proof', { account: 'plain', htm: 'GET', htu: api.url });
    expect(plain.status).toBe(400);
    expect(plain.json.error.message).toMatch(/does not use DPoP/);
    expect((await t.d.request('POST', '/v1/dpop/proof', { account: 'nobody', htm: 'GET', htu: api.url })).status).toBe(404);
    const bad = await t.d.request('POST', '/v1/dpop/proof', { account: 'svc', htm: 'GET', htu: 'not a url' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/htu/);
  });
});

describe('logout and import of a DPoP account', () => {
  const idp = useIdp({ accessTokenTtl: 60 });
  const { t, start } = useDaemon({ lifetime: 'manual', launch: startDaemon });

  /** A public-client DPoP account with a grant from a device login; its key's thumbprint. */
  async function loggedIn(name: string): Promise<string> {
    expect((await addDpopAccount(t, idp.issuer, name, ['--flow', 'device'], 'public')).code).toBe(0);
    const login = await startLogin(t.d, name, 'device');
    await idp.approveDevice(login.user_code);
    expect((await settled(t.d, login.id)).status).toBe('active');
    return (await t.d.request('GET', `/v1/accounts/${name}`)).json.dpop.jkt;
  }

  it('logout revokes the bound tokens at the provider and keeps the key for the next login', async () => {
    await start();
    const jkt = await loggedIn('work');
    const tok = await tokenOf(t, 'work');
    const refresh = stolenRefreshToken(t, 'work');
    expect((await t.d.cli(['logout', 'work'])).code).toBe(0);
    expect((await idp.introspect(tok.access_token)).active).toBe(false);
    expect((await idp.introspect(refresh)).active).toBe(false);
    expect((await t.d.request('GET', '/v1/accounts/work')).json.dpop.jkt).toBe(jkt);
  });

  it('an import of a refresh token is refused without its key, and proven and kept with it', async () => {
    await start();
    await loggedIn('a');
    // The grant of account a, with its key, moved by hand to account b (as from another machine).
    const refresh = stolenRefreshToken(t, 'a');
    const paths = resolvePaths(t.env);
    const db = new Database(path.join(paths.dataDir, 'tokend.db'), { readonly: true, fileMustExist: true });
    const sealedKey = db.prepare<[string], Buffer>("SELECT value FROM secrets WHERE account = ? AND name = 'dpop_key'").pluck().get('a')!;
    db.close();
    const jwk = JSON.parse(unseal(loadKey(paths.keyFile), sealedKey, 'secret:a:dpop_key')).jwk;
    expect((await addDpopAccount(t, idp.issuer, 'b', ['--flow', 'device', '--no-check'], 'public')).code).toBe(0);

    const refused = await t.d.request('POST', '/v1/accounts/b/import', { refresh_token: refresh });
    expect(refused.status).toBe(400);
    expect(refused.json.error.code).toBe('import_refused');
    expect(refused.json.error.message).toMatch(/uses DPoP: an imported refresh token is bound to the key it was issued with/);
    expect(refused.text).not.toContain(refresh);

    // `tokend import --tokens-stdin` carries the key in the same JSON (never in argv).
    const imported = await t.d.cli(['import', 'b', '--tokens-stdin', '--json'], JSON.stringify({ refresh_token: refresh, dpop_jwk: jwk }));
    expect(imported.code, imported.stderr).toBe(0);
    const taken = { json: JSON.parse(imported.stdout) };
    expect(taken.json.dpop.jkt).toBe((await t.d.request('GET', '/v1/accounts/a')).json.dpop.jkt);
    const tok = await tokenOf(t, 'b');
    expect((await idp.introspect(tok.access_token)).cnf).toEqual({ jkt: taken.json.dpop.jkt });
    // The grant's binding names the imported key (RFC 9449 §6).
    const bound = new Database(path.join(paths.dataDir, 'tokend.db'), { readonly: true, fileMustExist: true });
    expect(JSON.parse(bound.prepare<[string], string>('SELECT bound_to FROM grants WHERE account = ?').pluck().get('b')!).jkt).toBe(
      taken.json.dpop.jkt,
    );
    bound.close();
  });
});
