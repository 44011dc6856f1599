/**
 * What the CLI sends and prints for add, set, login --cancel, status and token, through
 * the real bin/tokend against a stand-in daemon that records each request (method, path,
 * query, body) and answers with fabricated views; and how status formats an account.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AccountView, LoginView } from '../src/protocol/api.js';
import { accountLines } from '../src/client/account-view.js';
import { runCli } from './support/daemon.js';
import { startStandInDaemon, type Answer, type RecordedRequest, type StandInDaemon } from './support/stand-in-daemon.js';

const NOW = Date.parse('2030-01-02T03:04:05.000Z');
const iso = (msFromNow: number) => new Date(NOW + msFromNow).toISOString();

function view(over: Partial<AccountView> = {}): AccountView {
  return {
    name: 'work',
    driver: 'oauth2',
    status: 'active',
    expires_at: iso(3600_000),
    scopes: ['openid', 'offline_access'],
    hosts: ['git.example.com'],
    issuer: 'https://id.example.com',
    client_id: 'my-cli',
    has_client_secret: true,
    has_refresh_token: true,
    last_error: null,
    generation: 1,
    ...over,
  };
}

function pendingLogin(over: Partial<LoginView> = {}): LoginView {
  return {
    id: 'L-123',
    account: 'work',
    flow: 'device',
    status: 'pending',
    user_code: 'WDJB-MJHT',
    verification_uri: 'https://id.example.com/device',
    verification_uri_complete: 'https://id.example.com/device?user_code=WDJB-MJHT',
    authorization_url: null,
    created_at: iso(-60_000),
    updated_at: iso(-60_000),
    expires_at: iso(540_000),
    error: null,
    ...over,
  };
}

const json = (status: number, body: unknown): Answer => ({ status, body });
const apiError = (status: number, code: string, message: string): Answer => json(status, { error: { code, message } });
const seen = (reqs: RecordedRequest[]) => reqs.map((r) => ({ method: r.method, path: r.path, query: r.query, body: r.body }));

let standIn: StandInDaemon;
beforeAll(async () => {
  standIn = await startStandInDaemon();
});
afterAll(() => standIn.close());
afterEach(() => {
  standIn.requests.length = 0;
});
const cli = (args: string[], stdin?: string) => runCli(args, { env: standIn.env, stdin });

describe('tokend add', () => {
  it('PUTs the whole account, the secret from stdin, and points to a login next', async () => {
    standIn.answer = () => json(200, view({ status: 'no_grant', flow: 'device' }));
    const r = await cli(
      [
        'add',
        'work',
        '--issuer',
        'https://id.example.com',
        '--client-id',
        'my-cli',
        '--client-secret-stdin',
        '--scope',
        'openid offline_access',
        '--host',
        'git.example.com',
        '--flow',
        'device',
      ],
      's3cret\n',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(seen(standIn.requests)).toEqual([
      {
        method: 'PUT',
        path: '/v1/accounts/work',
        query: {},
        body: {
          issuer: 'https://id.example.com',
          client_id: 'my-cli',
          client_secret: 's3cret',
          scopes: ['openid', 'offline_access'],
          hosts: ['git.example.com'],
          flow: 'device',
        },
      },
    ]);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('tokend: account "work" saved. Next: `tokend login work` (or `tokend import work --refresh-token-stdin`)\n');
  });

  it('after a client-credentials account, the next step is a token, not a login', async () => {
    standIn.answer = () => json(200, view({ name: 'ci', status: 'no_grant', flow: 'client-credentials' }));
    const r = await cli([
      'add',
      'ci',
      '--client-id',
      'bot',
      '--flow',
      'client-credentials',
      '--token-endpoint',
      'https://id.example.com/token',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('tokend: account "ci" saved. Next: `tokend token ci`\n');
    expect(r.stderr).not.toContain('login');
  });

  it('--replace-grant and --no-check go in the query', async () => {
    standIn.answer = () => json(200, view());
    expect((await cli(['add', 'work', '--client-id', 'x', '--replace-grant', '--no-check'])).code).toBe(0);
    expect((await cli(['add', 'work', '--client-id', 'x', '--no-check'])).code).toBe(0);
    expect(standIn.requests.map((q) => [q.method, q.path, q.query])).toEqual([
      ['PUT', '/v1/accounts/work', { replace_grant: 'true', check: 'false' }],
      ['PUT', '/v1/accounts/work', { check: 'false' }],
    ]);
  });

  it("a 409 conflict (another provider or client) prints the daemon's message and exits 1", async () => {
    standIn.answer = () => apiError(409, 'conflict', 'account "work" would move to another client; its grant cannot follow');
    const r = await cli(['add', 'work', '--client-id', 'other']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('tokend: account "work" would move to another client; its grant cannot follow\n');
    expect(r.stderr).toContain('--replace-grant');
  });
});

describe('tokend set', () => {
  it('fixing only the client secret PATCHes only the secret', async () => {
    standIn.answer = () => json(200, view());
    const r = await cli(['set', 'work', '--client-secret-stdin'], 'n3w-s3cret');
    expect(r.code, r.stderr).toBe(0);
    expect(seen(standIn.requests)).toEqual([
      { method: 'PATCH', path: '/v1/accounts/work', query: {}, body: { client_secret: 'n3w-s3cret' } },
    ]);
    expect(r.stderr).toBe('tokend: account "work" updated.\n');
    expect(r.stderr + r.stdout).not.toContain('n3w-s3cret');
  });

  it('sends only the options given, with the same flags as add; lists replace whole', async () => {
    standIn.answer = () => json(200, view({ status: 'no_grant' }));
    const r = await cli([
      'set',
      'work',
      '--issuer',
      'https://new.example.com',
      '--scope',
      'a b',
      '--host',
      'h1',
      '--host',
      'h2',
      '--replace-grant',
      '--no-check',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(seen(standIn.requests)).toEqual([
      {
        method: 'PATCH',
        path: '/v1/accounts/work',
        query: { replace_grant: 'true', check: 'false' },
        body: { issuer: 'https://new.example.com', scopes: ['a', 'b'], hosts: ['h1', 'h2'] },
      },
    ]);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'work', status: 'no_grant' });
  });

  it('says the account needs a login when the change dropped its grant', async () => {
    standIn.answer = () => json(200, view({ status: 'no_grant', flow: 'browser' }));
    const r = await cli(['set', 'work', '--client-id', 'new', '--replace-grant']);
    expect(r.stderr).toBe('tokend: account "work" updated. Next: `tokend login work` (or `tokend import work --refresh-token-stdin`)\n');
  });

  it('a 409 conflict prints the message and exits 1; an unknown account exits 1', async () => {
    standIn.answer = () => apiError(409, 'conflict', 'changing client_id moves the grant; add --replace-grant to drop it');
    const c = await cli(['set', 'work', '--client-id', 'other']);
    expect(c).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'tokend: changing client_id moves the grant; add --replace-grant to drop it\n',
    });
    standIn.answer = () => apiError(404, 'not_found', 'no account "nope"');
    expect(await cli(['set', 'nope', '--scope', 'x'])).toMatchObject({ code: 1, stderr: 'tokend: no account "nope"\n' });
  });
});

describe('tokend login NAME --cancel', () => {
  it('finds the pending login in the account view and cancels it by id', async () => {
    standIn.answer = (q) =>
      q.method === 'GET'
        ? json(200, view({ status: 'login_pending', login: pendingLogin() }))
        : json(200, pendingLogin({ status: 'failed', error: { code: 'cancelled', message: 'the login was cancelled' } }));
    const r = await cli(['login', 'work', '--cancel']);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: 'tokend: cancelled the login to "work"\n' });
    expect(standIn.requests.map((q) => [q.method, q.path, q.body])).toEqual([
      ['GET', '/v1/accounts/work', undefined],
      ['POST', '/v1/logins/L-123/cancel', undefined],
    ]);
  });

  it('with no login in progress says so, asks nothing more, and exits 0', async () => {
    for (const login of [null, undefined, pendingLogin({ status: 'active' })]) {
      standIn.requests.length = 0;
      standIn.answer = () => json(200, view({ login }));
      const r = await cli(['login', 'work', '--cancel']);
      expect(r).toMatchObject({ code: 0, stdout: '', stderr: 'tokend: no login to "work" is in progress; nothing to cancel\n' });
      expect(standIn.requests.map((q) => q.method)).toEqual(['GET']);
    }
  });

  it('a login that ended meanwhile (404) is no error; an unknown account is', async () => {
    standIn.answer = (q) => (q.method === 'GET' ? json(200, view({ login: pendingLogin() })) : apiError(404, 'not_found', 'no such login'));
    const r = await cli(['login', 'work', '--cancel']);
    expect(r).toMatchObject({
      code: 0,
      stderr: 'tokend: the login to "work" ended before it could be cancelled; see `tokend status work`\n',
    });
    standIn.answer = () => apiError(404, 'not_found', 'no account "work"');
    expect(await cli(['login', 'work', '--cancel'])).toMatchObject({ code: 1, stderr: 'tokend: no account "work"\n' });
  });
});

describe('tokend status NAME', () => {
  it('exits 3 for every status that needs a login, 0 for active, in text and JSON alike', async () => {
    for (const status of ['expired', 'no_grant', 'reauth_required', 'login_pending', 'active'] as const) {
      standIn.answer = () => json(200, view({ status }));
      const text = await cli(['status', 'work']);
      const asJson = await cli(['status', 'work', '--json']);
      const want = status === 'active' ? 0 : 3;
      expect(text.code, status).toBe(want);
      expect(asJson.code, status).toBe(want);
      expect(JSON.parse(asJson.stdout).status).toBe(status);
      expect(asJson.stderr).toBe('');
      if (want === 3) expect(text.stderr).toContain('tokend login work');
      else expect(text.stderr).toBe('');
    }
  });

  it('a client-credentials account without a token yet is pointed at `tokend token`, not at a login', async () => {
    standIn.answer = () => json(200, view({ name: 'ci', status: 'no_grant', flow: 'client-credentials' }));
    const r = await cli(['status', 'ci']);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('tokend: "ci" has no token yet (no_grant); next: `tokend token ci`\n');
  });

  it("shows the pending login's code and URL, and how to stop it", async () => {
    standIn.answer = () => json(200, view({ status: 'login_pending', has_refresh_token: false, expires_at: null, login: pendingLogin() }));
    const r = await cli(['status', 'work']);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^login: +pending \(device\): enter the code WDJB-MJHT at https:\/\/id\.example\.com\/device; expires /m);
    expect(r.stderr).toContain('tokend login work --cancel');
  });
});

describe('how status shows an account (fabricated views)', () => {
  const lines = (v: AccountView) => accountLines(v, NOW).split('\n');
  const lastLoginLine = (v: AccountView) => lines(v).find((l) => l.startsWith('last login:'));

  it('an account without the login fields (an older daemon) shows no login lines', () => {
    expect(lines(view()).some((l) => l.startsWith('login') || l.startsWith('last login'))).toBe(false);
    expect(lines(view())).toContain(`expires:    ${iso(3600_000)} (in 60 min)`);
  });

  it('the last login: denied, expired, cancelled, each with its code and message', () => {
    const ended = (status: LoginView['status'], code: string, message: string) =>
      view({ last_login: { id: 'L-1', flow: 'device', status, updated_at: iso(-120_000), error: { code, message } } });
    expect(lastLoginLine(ended('failed', 'access_denied', 'End-User aborted interaction'))).toBe(
      'last login: failed, access_denied: End-User aborted interaction (device, 2 min ago)',
    );
    expect(lastLoginLine(ended('expired', 'expired_token', 'the device code expired before anyone entered it'))).toBe(
      'last login: expired, expired_token: the device code expired before anyone entered it (device, 2 min ago)',
    );
    expect(lastLoginLine(ended('failed', 'cancelled', 'cancelled by tokend login --cancel'))).toBe(
      'last login: failed, cancelled: cancelled by tokend login --cancel (device, 2 min ago)',
    );
    expect(
      lastLoginLine(view({ last_login: { id: 'L-2', flow: 'browser', status: 'active', updated_at: iso(-3 * 3600_000), error: null } })),
    ).toBe('last login: succeeded (browser, 3 h ago)');
  });

  it('a pending browser login shows the URL to open', () => {
    const v = view({
      status: 'login_pending',
      login: pendingLogin({
        flow: 'browser',
        user_code: null,
        verification_uri: null,
        verification_uri_complete: null,
        authorization_url: 'https://id.example.com/auth?x=1',
      }),
    });
    expect(lines(v)).toContain(
      'login:      pending (browser): open https://id.example.com/auth?x=1 in a browser on this machine; expires in 9 min',
    );
  });
});

describe('tokend token --min-ttl', () => {
  const token = (expires_in: number) => ({
    account: 'work',
    access_token: 'at-123',
    token_type: 'Bearer',
    expires_at: iso(expires_in * 1000),
    expires_in,
    scope: null,
  });

  it('says on stderr, in one line, when the token is valid for less than --min-ttl; stdout keeps only the token', async () => {
    standIn.answer = () => json(200, token(50));
    const r = await cli(['token', 'work', '--min-ttl', '300']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('at-123\n');
    expect(r.stderr).toBe(
      'tokend: this token of "work" is valid for 50 s, less than --min-ttl 300: a token can satisfy at most half its own lifetime, so --min-ttl was clamped\n',
    );
    expect(standIn.requests[0].body).toEqual({ account: 'work', min_ttl: 300 });
  });

  it('says nothing when the token lasts long enough, or when no --min-ttl was asked', async () => {
    standIn.answer = () => json(200, token(400));
    expect(await cli(['token', 'work', '--min-ttl', '300'])).toMatchObject({ code: 0, stdout: 'at-123\n', stderr: '' });
    standIn.answer = () => json(200, token(5));
    expect(await cli(['token', 'work'])).toMatchObject({ code: 0, stdout: 'at-123\n', stderr: '' });
  });
});
