/**
 * rule 8, docs/architecture.md: a grant belongs to the provider and client that issued it. When an
 * account is changed to name another provider (a typo, a moved IdP), no token, refresh
 * token or secret issued by or for the first ever reaches the second: not through a
 * refresh, a helper, a SIGHUP reload, a restart, or a login that finishes late.
 *
 * Provider A is the real test IdP. Provider B is a recording server that serves discovery
 * metadata naming its own endpoints and records every request that reaches it.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sleep, type DaemonProcess, putConfAccount, postConfGrant } from './support/daemon.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';
import { listenOnLoopback } from './support/loopback.js';

interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Provider B: answers discovery, refuses every token and revocation request, records all. */
async function startRecorder(): Promise<{ issuer: string; seen: Recorded[]; close: () => Promise<void> }> {
  const seen: Recorded[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (req.url === '/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            issuer,
            token_endpoint: `${issuer}/token`,
            revocation_endpoint: `${issuer}/revoke`,
            device_authorization_endpoint: `${issuer}/device`,
            authorization_endpoint: `${issuer}/auth`,
            response_types_supported: ['code'],
          }),
        );
        return;
      }
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":"invalid_grant"}');
    });
  });
  const { url: issuer, close } = await listenOnLoopback(server);
  return { issuer, seen, close };
}

const idp = useIdp({ accessTokenTtl: 60 });
const b = useServer(startRecorder, { what: 'provider B' });
// A test starts its daemons; they are stopped and their homes removed after it.
const { start } = useDaemon({ lifetime: 'manual' });

/** How many refresh tokens A had issued before the current test's grant. */
let issuedBefore = 0;

async function daemonWithGrantAtA(): Promise<{ d: DaemonProcess; home: string }> {
  issuedBefore = idp.issuedRefreshTokens().length;
  const { d, home } = await start();
  await putConfAccount(d, idp.issuer, 'w', { hosts: ['git.a.test'] });
  await postConfGrant(d, idp, 'w');
  expect((await d.request('POST', '/v1/token', { account: 'w' })).status).toBe(200);
  return { d, home };
}

/** Nothing A issued, and not A's client secret, ever reached B; and B was never asked for a token. */
function expectNothingOfAReachedB(): void {
  // Basic carries the secret form-encoded (RFC 6749 §2.3.1: oauth4webapi writes `-` as %2D).
  const basic = ['conf-secret', 'conf%2Dsecret'].map((s) => Buffer.from(`conf:${s}`).toString('base64'));
  const secrets = [...idp.issuedRefreshTokens(), ...idp.issuedAccessTokens(), 'conf-secret', ...basic];
  for (const r of b.seen) {
    const text = `${r.url}\n${JSON.stringify(r.headers)}\n${r.body}`;
    for (const s of secrets) expect(text).not.toContain(s);
    expect(r.body).not.toContain('grant_type=refresh_token');
  }
}

/** How many of the refresh tokens A issued for this test's grant are still live. */
async function liveRefreshTokensAtA(): Promise<number> {
  let live = 0;
  for (const rt of idp.issuedRefreshTokens().slice(issuedBefore)) if ((await idp.introspect(rt)).active) live++;
  return live;
}

const gitGet = (d: DaemonProcess, host: string) => d.cli(['git-credential', 'get'], `protocol=https\nhost=${host}\n\n`);

describe('a grant stays with the provider that issued it', () => {
  it('refuses to move an account with a grant to another issuer unless told to replace the grant', async () => {
    const { d } = await daemonWithGrantAtA();
    const seenBefore = b.seen.length;
    const body = { issuer: b.issuer, client_id: 'conf', scopes: ['openid', 'offline_access', 'api'], hosts: ['git.b.test'] };
    const r = await d.request('PUT', '/v1/accounts/w', body);
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe('conflict');
    expect(r.json.error.message).toContain(idp.issuer);
    expect(r.json.error.message).toContain(b.issuer);
    expect(r.json.error.message).toContain('--replace-grant');
    // Nothing changed: the grant serves, B was not even contacted.
    expect(b.seen.length).toBe(seenBefore);
    expect((await d.cli(['token', 'w'])).code).toBe(0);
    expect((await gitGet(d, 'git.a.test')).stdout).toContain('password=');
  });

  it('with replace_grant, revokes the grant at A, drops it and the old secret, and sends B nothing of A', async () => {
    const { d } = await daemonWithGrantAtA();
    expect(await liveRefreshTokensAtA()).toBeGreaterThan(0);
    const body = { issuer: b.issuer, client_id: 'conf', scopes: ['openid', 'offline_access', 'api'], hosts: ['git.b.test'] };
    const r = await d.request('PUT', '/v1/accounts/w?replace_grant=true', body);
    expect(r.status).toBe(200);
    expect(r.json.status).toBe('no_grant');
    expect(r.json.has_client_secret).toBe(false);
    expect(r.json.notices.join('\n')).toMatch(/revoked there and dropped/);
    expect(r.json.notices.join('\n')).toMatch(/client secret of the old client was dropped/);
    expect(await liveRefreshTokensAtA()).toBe(0);

    // The token path, the helpers and a forced refresh: nothing served, nothing sent to B.
    const tok = await d.cli(['token', 'w']);
    expect(tok.code).toBe(3);
    expect(tok.stdout).toBe('');
    expect((await d.cli(['refresh', 'w'])).code).toBe(3);
    for (const host of ['git.b.test', 'git.a.test']) {
      const g = await gitGet(d, host);
      expect(g.stdout).not.toContain('password=');
    }
    expectNothingOfAReachedB();
    expect(d.logs).toContain('grant dropped');
  });

  it('on SIGHUP after config.json was edited to name B, drops the grant and never refreshes at B', async () => {
    const { d, home } = await daemonWithGrantAtA();
    const file = path.join(home, 'config', 'config.json');
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    cfg.accounts.w.issuer = b.issuer;
    fs.writeFileSync(file, JSON.stringify(cfg));
    d.child!.kill('SIGHUP');
    for (let i = 0; i < 100 && !d.logs.includes('grant dropped'); i++) await sleep(50);
    expect(d.logs).toContain('now names another provider or client');
    expect((await d.cli(['token', 'w'])).code).toBe(3);
    expect((await d.cli(['refresh', 'w'])).code).toBe(3);
    expect((await gitGet(d, 'git.a.test')).stdout).not.toContain('password=');
    expect(await liveRefreshTokensAtA()).toBe(0);
    expectNothingOfAReachedB();
  });

  it('after a restart with config.json edited while the daemon was stopped, never sends the grant to B', async () => {
    const { d, home } = await daemonWithGrantAtA();
    expect(await d.stop()).toBe(0);
    const file = path.join(home, 'config', 'config.json');
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    cfg.accounts.w.issuer = b.issuer;
    fs.writeFileSync(file, JSON.stringify(cfg));
    await d.start();
    const tok = await d.cli(['token', 'w']);
    expect(tok.code).toBe(3);
    expect(tok.stdout).toBe('');
    expect((await gitGet(d, 'git.a.test')).stdout).not.toContain('password=');
    for (let i = 0; i < 100 && !d.logs.includes('grant dropped'); i++) await sleep(50);
    expect(await liveRefreshTokensAtA()).toBe(0);
    expectNothingOfAReachedB();
  });

  it('keeps the grant when only what is not its identity changes (scopes, hosts, username)', async () => {
    const { d } = await daemonWithGrantAtA();
    const body = {
      issuer: idp.issuer,
      client_id: 'conf',
      scopes: ['openid', 'offline_access'],
      hosts: ['git.a.test', 'git2.a.test'],
      username: 'me',
    };
    const r = await d.request('PUT', '/v1/accounts/w', body);
    expect(r.status).toBe(200);
    expect(r.json.has_refresh_token).toBe(true);
    expect(r.json.has_client_secret).toBe(true);
    expect((await d.cli(['token', 'w'])).code).toBe(0);
  });

  it('cancels a pending login when the account moves, so it cannot install A\u2019s tokens under B', async () => {
    const { d } = await start();
    await putConfAccount(d, idp.issuer, 'w');
    const login = await d.request('POST', '/v1/accounts/w/login', { flow: 'device' });
    expect(login.status).toBe(202);
    // No grant yet, and the change gives B's own client secret: no conflict.
    const body = { issuer: b.issuer, client_id: 'conf', scopes: ['openid'], client_secret: 'b-secret' };
    expect((await d.request('PUT', '/v1/accounts/w', body)).status).toBe(200);
    const after = await d.request('GET', `/v1/logins/${login.json.id}`);
    expect(after.json.status).toBe('failed');
    expect(after.json.error.code).toBe('cancelled');
    // Approving the old code now changes nothing for w.
    await idp.approveDevice(login.json.user_code);
    await sleep(500);
    expect((await d.request('GET', '/v1/accounts/w')).json.status).toBe('no_grant');
    expectNothingOfAReachedB();
  });
});
