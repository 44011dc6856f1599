/**
 * rule 8, docs/api.md "Account writes and the grant's identity": every endpoint an account
 * sends its client secret, a code, a PKCE verifier or a refresh token to is part of its
 * grant's identity, and the stored client secret and password are bound to it. `tokend set
 * NAME --device-endpoint http://OTHER/...` once sent the stored client secret to OTHER on the
 * next login.
 *
 * Provider A is the real test IdP. The NEW url of each field is a recording server that
 * answers like a provider (a device authorization, a token refusal, a sign-in page) and keeps
 * every request it gets. The upgrade test starts the daemon on a store whose grant was bound
 * as the daemon before this change bound it (without the authorization and device endpoints).
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { type DaemonProcess, postConfGrant, putConfAccount } from './support/daemon.js';
import { useDaemon, useIdp, useServer } from './support/fixtures.js';
import { listenOnLoopback } from './support/loopback.js';

interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** The NEW urls: a provider-like server that records everything sent to it. */
async function startRecorder(): Promise<{ url: string; seen: Recorded[]; close: () => Promise<void> }> {
  const seen: Recorded[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const json = (status: number, o: object) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(o));
      if (req.url?.startsWith('/device')) {
        json(200, {
          device_code: 'rec-device-code',
          user_code: 'REC-CODE',
          verification_uri: `${rec.url}/activate`,
          expires_in: 60,
          interval: 5,
        });
      } else if (req.url?.startsWith('/token')) {
        json(400, { error: 'invalid_grant' });
      } else if (req.url?.startsWith('/revoke')) {
        res.writeHead(200).end();
      } else {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<p>sign in</p>');
      }
    });
  });
  const { url, close } = await listenOnLoopback(server);
  return { url, seen, close };
}

const idp = useIdp({ accessTokenTtl: 60 });
const rec = useServer(startRecorder, { what: 'the recording server' });
const { start } = useDaemon({ lifetime: 'manual' });

/** How a client secret can travel: as it is (a post body), or in Basic, raw or form-encoded (RFC 6749 §2.3.1; `-` becomes %2D). */
const forms = (secret: string) => [
  secret,
  ...[secret, secret.replace(/-/g, '%2D')].map((s) => Buffer.from(`conf:${s}`).toString('base64')),
];
const textOf = (r: Recorded) => `${r.method} ${r.url}\n${JSON.stringify(r.headers)}\n${r.body}`;

/** What A issued and the secret given for A: none of it may ever reach the recording server. */
function expectNothingOfAReachedNew(): void {
  const secrets = [...idp.issuedRefreshTokens(), ...idp.issuedAccessTokens(), ...forms('conf-secret')];
  for (const r of rec.seen) {
    const text = textOf(r);
    for (const s of secrets) expect(text).not.toContain(s);
    expect(r.body).not.toContain('grant_type=refresh_token');
    expect(r.body).not.toContain('code_verifier');
  }
}

/** Everything that sends to an account's endpoints: both logins (a browser opening the URL), a refresh, a logout. */
async function exercise(d: DaemonProcess, name: string): Promise<void> {
  for (const flow of ['device', 'browser']) {
    const r = await d.request('POST', `/v1/accounts/${name}/login`, { flow });
    if (r.status !== 202) continue;
    if (r.json.authorization_url)
      await fetch(r.json.authorization_url, { redirect: 'manual' }).then(
        (res) => res.text(),
        () => undefined,
      );
    await d.request('POST', `/v1/logins/${r.json.id}/cancel`);
  }
  await d.request('POST', `/v1/accounts/${name}/refresh`);
  await d.request('POST', `/v1/accounts/${name}/logout`);
}

const FIELDS = [
  { field: 'token_endpoint', option: '--token-endpoint', at: '/token' },
  { field: 'device_authorization_endpoint', option: '--device-endpoint', at: '/device' },
  { field: 'authorization_endpoint', option: '--authorization-endpoint', at: '/auth' },
  { field: 'revocation_endpoint', option: '--revocation-endpoint', at: '/revoke' },
];

describe('a changed endpoint never receives a secret the change did not carry', () => {
  it.each(FIELDS)(
    '$field',
    async ({ field, option, at }) => {
      const { d } = await start();
      const url = `${rec.url}${at}`;
      for (const name of ['w', 'v']) {
        await putConfAccount(d, idp.issuer, name);
        await postConfGrant(d, idp, name);
      }
      const seenBefore = rec.seen.length;

      // A grant and a client secret: refused, nothing changed, the new URL not contacted.
      const held = await d.cli(['set', 'w', option, url]);
      expect(held.code).toBe(1);
      expect(held.stderr).toContain(field);
      expect(held.stderr).toContain('--replace-grant');
      expect(rec.seen.length).toBe(seenBefore);
      expect((await d.cli(['token', 'w'])).code).toBe(0);

      // No grant any more, but the secret given for A: still refused.
      expect((await d.cli(['logout', 'w'])).code).toBe(0);
      const secretOnly = await d.cli(['set', 'w', option, url]);
      expect(secretOnly.code).toBe(1);
      expect(secretOnly.stderr).toContain('client secret');
      expect(secretOnly.stderr).toContain('--client-secret-stdin');
      expect((await d.request('GET', '/v1/accounts/w')).json.has_client_secret).toBe(true);

      // The secret given again in the same change: it is the user's word for the new endpoint.
      const carried = await d.cli(['set', 'w', option, url, '--client-secret-stdin'], 'rec-secret\n');
      expect(carried.code).toBe(0);

      // replace_grant: A's grant revoked there and dropped, the old secret dropped.
      const replaced = await d.cli(['set', 'v', option, url, '--replace-grant', '--json']);
      expect(replaced.code).toBe(0);
      const view = JSON.parse(replaced.stdout);
      expect(view).toMatchObject({ status: 'no_grant', has_client_secret: false, has_refresh_token: false });
      expect(view.notices.join('\n')).toMatch(/revoked there and dropped/);
      expect(view.notices.join('\n')).toMatch(/client secret of the old client was dropped/);

      for (const name of ['w', 'v']) await exercise(d, name);
      expectNothingOfAReachedNew();
      if (field === 'device_authorization_endpoint') {
        // The recorder is really reached, and what reaches it is what the change carried.
        const sent = rec.seen.slice(seenBefore).map(textOf).join('\n');
        expect(forms('rec-secret').some((f) => sent.includes(f))).toBe(true);
      }
    },
    120_000,
  ); // two accounts with real grants and a dozen CLI runs, on a shared machine
});

describe('upgrading keeps the grants bound before the endpoints joined the identity', () => {
  it('a github-preset grant bound by the previous daemon serves after the upgrade, and is then bound to its endpoints', async () => {
    const t = await start();
    const { d } = t;
    const add = await d.cli(
      ['add', 'gh', '--preset', 'github', '--client-id', 'Iv1.test', '--client-secret-stdin', '--no-check'],
      'gh-secret\n',
    );
    expect(add.code).toBe(0);
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const imp = await d.cli(
      ['import', 'gh', '--tokens-stdin'],
      JSON.stringify({ refresh_token: 'ghr-old', access_token: 'gho-old', expires_at: expiresAt }),
    );
    expect(imp.code).toBe(0);
    expect(await d.stop()).toBe(0);

    // The binding as the daemon before this change wrote it (grant-identity.ts, its identityKey).
    const dbFile = path.join(t.home, 'data', 'tokend.db');
    const legacy = JSON.stringify({
      driver: 'oauth2',
      token_endpoint: 'https://github.com/login/oauth/access_token',
      client_id: 'Iv1.test',
    });
    const db = new Database(dbFile);
    expect(db.prepare('UPDATE grants SET bound_to = ? WHERE account = ?').run(legacy, 'gh').changes).toBe(1);
    db.close();
    const config = JSON.parse(fs.readFileSync(path.join(t.home, 'config', 'config.json'), 'utf8'));
    expect(config.accounts.gh.device_authorization_endpoint).toBe('https://github.com/login/device/code');

    await d.start();
    const tok = await d.cli(['token', 'gh']);
    expect(tok.code).toBe(0);
    expect(tok.stdout.trim()).toBe('gho-old');
    const view = (await d.request('GET', '/v1/accounts/gh')).json;
    expect(view).toMatchObject({ status: 'active', has_refresh_token: true, has_client_secret: true });
    expect(d.logs).not.toContain('grant dropped');

    // From now on the grant is bound to the endpoints it has (recorded before the daemon
    // listened): moving one is refused.
    const ro = new Database(dbFile, { readonly: true });
    const row = ro.prepare('SELECT bound_to FROM grants WHERE account = ?').get('gh') as { bound_to: string };
    ro.close();
    expect(JSON.parse(row.bound_to)).toMatchObject({
      client_id: 'Iv1.test',
      device_authorization_endpoint: 'https://github.com/login/device/code',
    });
    const moved = await d.cli(['set', 'gh', '--device-endpoint', `${rec.url}/device`]);
    expect(moved.code).toBe(1);
    expect(moved.stderr).toContain('device_authorization_endpoint');
    expect((await d.cli(['token', 'gh'])).stdout.trim()).toBe('gho-old');
  });

  it('a grant bound by the previous daemon to another client is still dropped at start', async () => {
    const t = await start();
    const { d } = t;
    expect(
      (await d.cli(['add', 'gh', '--preset', 'github', '--client-id', 'Iv1.test', '--client-secret-stdin', '--no-check'], 'gh-secret\n'))
        .code,
    ).toBe(0);
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    expect((await d.cli(['import', 'gh', '--tokens-stdin'], JSON.stringify({ access_token: 'gho-old', expires_at: expiresAt }))).code).toBe(
      0,
    );
    expect(await d.stop()).toBe(0);
    const db = new Database(path.join(t.home, 'data', 'tokend.db'));
    const other = JSON.stringify({
      driver: 'oauth2',
      token_endpoint: 'https://github.com/login/oauth/access_token',
      client_id: 'Iv1.other',
    });
    db.prepare('UPDATE grants SET bound_to = ? WHERE account = ?').run(other, 'gh');
    db.close();
    await d.start();
    const tok = await d.cli(['token', 'gh']);
    expect(tok.code).toBe(3);
    expect(tok.stdout).toBe('');
  });
});
