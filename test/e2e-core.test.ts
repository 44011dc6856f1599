import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { sleep, socketRequest, putConfAccount, postConfGrant } from './support/daemon.js';
import { useDaemon, useIdp } from './support/fixtures.js';

describe('tokend against a real OpenID Provider', () => {
  const idp = useIdp({ accessTokenTtl: 8 });
  const { d } = useDaemon({ lifetime: 'test', settings: { max_refreshes_per_minute: 1000 } });

  it('serves an imported grant through the CLI and the socket, and a new token after the TTL with exactly one refresh', async () => {
    await putConfAccount(d, idp.issuer);
    const issued = await idp.issueRefreshToken('conf');
    idp.resetStats();

    const imp = await d.cli(['import', 'work', '--refresh-token-stdin'], issued.refresh_token + '\n');
    expect(imp.stderr).toContain('active');
    expect(imp.code).toBe(0);
    expect(idp.stats.refreshes).toBe(1); // import proves the token with one refresh

    const cli = await d.cli(['token', 'work']);
    expect(cli.code).toBe(0);
    const first = cli.stdout.trim();
    expect(cli.stdout).toBe(`${first}\n`); // only the token on stdout
    expect(first.length).toBeGreaterThan(10);

    const asked = Date.now();
    const sock = await d.request('POST', '/v1/token', { account: 'work' });
    expect(sock.status).toBe(200);
    expect(sock.json).toMatchObject({ account: 'work', access_token: first, token_type: 'Bearer' });
    expect(sock.json.expires_in).toBeGreaterThan(0);
    expect((await idp.introspect(first)).active).toBe(true);
    expect(idp.stats.refreshes).toBe(1); // served from memory

    // Just past the first token's expiry (the proactive timer refreshed it at ~6 s of its 8),
    // counted from its expires_in rather than from here, so a slow machine does not reach the
    // second token's own proactive refresh and count a third.
    await sleep((sock.json.expires_in + 1) * 1000 - (Date.now() - asked));
    const after = await d.cli(['token', 'work']);
    expect(after.code).toBe(0);
    const second = after.stdout.trim();
    expect(second).not.toBe(first);
    expect((await idp.introspect(second)).active).toBe(true);
    expect(idp.stats.refreshes).toBe(2);
    expect(idp.stats.replays).toBe(0);
  });

  it('rotates through many refreshes without ever replaying a refresh token, and survives SIGTERM and SIGKILL', async () => {
    await putConfAccount(d, idp.issuer);
    await postConfGrant(d, idp);
    idp.resetStats();

    const seen = new Set<string>();
    for (let i = 0; i < 15; i++) {
      const r = await d.request('POST', '/v1/accounts/work/refresh');
      expect(r.status).toBe(200);
      expect(r.json.generation).toBeGreaterThan(1);
      const t = await d.request('POST', '/v1/token', { account: 'work' });
      seen.add(t.json.access_token);
    }
    expect(seen.size).toBe(15);
    expect(idp.stats.refreshes).toBe(15);
    expect(idp.stats.replays).toBe(0);
    expect(idp.stats.refreshErrors).toEqual([]);

    // Clean stop: the grant is on disk; the new daemon serves without a login.
    expect(await d.stop('SIGTERM')).toBe(0);
    await d.start();
    const afterTerm = await d.cli(['token', 'work']);
    expect(afterTerm.code).toBe(0);
    expect(seen.has(afterTerm.stdout.trim())).toBe(true); // the cached token survived
    expect((await d.cli(['refresh', 'work'])).code).toBe(0);

    // SIGKILL between refreshes: no clean shutdown, the committed rotation still holds.
    await d.stop('SIGKILL');
    await d.start();
    expect((await d.cli(['refresh', 'work'])).code).toBe(0);
    const afterKill = await d.cli(['token', 'work']);
    expect(afterKill.code).toBe(0);
    expect((await idp.introspect(afterKill.stdout.trim())).active).toBe(true);
    expect(idp.stats.replays).toBe(0);
    expect(idp.stats.refreshErrors).toEqual([]);
  });

  it('narrows scope through the refresh grant and caches the narrowed token apart', async () => {
    await putConfAccount(d, idp.issuer);
    await postConfGrant(d, idp);
    const base = await d.request('POST', '/v1/token', { account: 'work' });
    const narrow = await d.request('POST', '/v1/token', { account: 'work', scope: 'openid' });
    expect(narrow.status).toBe(200);
    expect(narrow.json.scope).toBe('openid');
    expect(narrow.json.access_token).not.toBe(base.json.access_token);
    const again = await d.request('POST', '/v1/token', { account: 'work', scope: 'openid' });
    expect(again.json.access_token).toBe(narrow.json.access_token);
    const baseAgain = await d.request('POST', '/v1/token', { account: 'work' });
    expect(baseAgain.json.access_token).toBe(base.json.access_token);
    expect((await idp.introspect(narrow.json.access_token)).scope).toBe('openid');
    expect(idp.stats.replays).toBe(0);
  });

  it('serves client-credentials accounts without any login', async () => {
    const r = await d.cli(
      [
        'add',
        'svc',
        '--issuer',
        idp.issuer,
        '--client-id',
        'svc',
        '--client-secret-stdin',
        '--flow',
        'client-credentials',
        '--scope',
        'api',
      ],
      'svc-secret',
    );
    expect(r.code).toBe(0);
    const t = await d.cli(['token', 'svc', '--json']);
    expect(t.code).toBe(0);
    const body = JSON.parse(t.stdout);
    expect(body.account).toBe('svc');
    expect((await idp.introspect(body.access_token)).active).toBe(true);
  });
});

describe('single flight', () => {
  const idp = useIdp({ accessTokenTtl: 2 });
  const { d } = useDaemon({ settings: { proactive_refresh: false }, account: { idp, grant: true } });

  it('serves 1000 concurrent socket requests for an expired grant with exactly one refresh', async () => {
    const before = (await d.request('POST', '/v1/token', { account: 'work' })).json.access_token;
    await sleep(2_200); // expired, and no timer refreshed it
    idp.resetStats();
    // The new token lives long enough to serve all 1000, however slowly a loaded machine
    // answers them (a 2 s one was past half its life before the last, and refreshed again).
    idp.setAccessTokenTtl(120);

    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const results = await Promise.all(
      Array.from({ length: 1000 }, () => socketRequest(d.socket, 'POST', '/v1/token', { account: 'work' }, {}, agent)),
    );
    agent.destroy();
    expect(results.filter((r) => r.status !== 200).map((r) => r.text)).toEqual([]);
    const tokens = new Set(results.map((r) => r.json.access_token));
    expect(tokens.size).toBe(1);
    expect(tokens.has(before)).toBe(false);
    expect(idp.stats.tokenRequests).toBe(1);
    expect(idp.stats.refreshes).toBe(1);
  });
});
