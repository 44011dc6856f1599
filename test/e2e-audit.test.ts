/**
 * The audit trail an app and a person read (GET /v1/audit, SDK `audit()`, `tokend audit`),
 * against the real daemon and oidc-provider: lifecycle rows in the order things happened,
 * each with its outcome, caller and task; a row recorded just before the read is in it; no
 * secret anywhere in it.
 */
import { describe, expect, it } from 'vitest';
import { Tokend, TokendError } from '../src/sdk/index.js';
import type { AuditEntry } from '../src/protocol/api.js';
import { importConfGrant } from './support/daemon.js';
import { rejectionOf } from './support/rejection.js';
import { startDaemon } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';

describe('the audit trail', () => {
  // Backoff after a failed refresh is short: a refresh asked for after the provider is back goes out.
  const stack = {
    idp: useIdp(),
    daemon: useDaemon({ lifetime: 'test', launch: startDaemon, settings: { backoff_initial_ms: 10, backoff_max_ms: 10 } }),
    get t() {
      return this.daemon.t;
    },
  };
  const account = (extra: Record<string, unknown> = {}) => ({
    issuer: stack.idp.issuer,
    client_id: 'conf',
    client_secret: 'conf-secret',
    scopes: ['openid', 'offline_access', 'api'],
    ...extra,
  });
  /** Oldest first, as a person reads a story: action, outcome and code of each row. */
  const story = (entries: AuditEntry[]) => entries.map((e) => [e.action, e.outcome, e.code].filter(Boolean).join(' ')).reverse();

  it('shows a login, a token read, an account change, an import refusal and a logout in order, with their outcomes and no secret', async () => {
    const app = new Tokend({ env: stack.t.env, userAgent: 'vault-app/1.0' });
    await app.addAccount('vault', account({ flow: 'device' }));
    const login = await app.login('vault', { task: 'task-7' });
    await stack.idp.approveDevice(login.user_code!);
    await app.waitForLogin(login.id);
    const { access_token } = await app.token('vault');
    await app.updateAccount('vault', { client_secret: 'conf-secret', on_reauth: 'fail' });
    // A grant the test knows, imported with the CLI: its refresh token must never show.
    const { refresh_token } = await importConfGrant(stack.t.d, stack.idp, 'vault');
    const served = (await app.token('vault', { minTtl: 0, scope: 'openid' })).access_token;
    const refused = await rejectionOf(app.importTokens('vault', { refresh_token: 'stale-refresh-token' }), TokendError);
    expect(refused.code).toBe('import_refused');
    await app.logout('vault');

    const { entries } = await app.audit({ account: 'vault' });
    expect(story(entries)).toEqual([
      'account_added ok',
      'login_started ok',
      'login_succeeded ok',
      'token ok',
      'account_changed ok',
      'import ok',
      'import refused import_refused',
      'logout ok',
    ]);
    const [logout, refusedImport, cliImport, changed, , succeeded, started, added] = entries;
    expect(added).toMatchObject({ account: 'vault', caller: { user_agent: 'vault-app/1.0' }, task: null });
    expect(started).toMatchObject({ caller: { user_agent: 'vault-app/1.0' }, task: 'task-7', login_id: login.id, flow: 'device' });
    expect(succeeded).toMatchObject({ task: 'task-7', login_id: login.id, caller: {} });
    // Which fields changed, never their values.
    expect(changed!.fields).toEqual(['client_secret', 'on_reauth']);
    expect(cliImport!.caller).toMatchObject({ user_agent: 'tokend-cli/import' });
    // Beside what it declared, who it is: the CLI's node, and this test's process among its parents.
    expect(cliImport!.caller).toMatchObject({ exe: process.execPath, script: expect.stringMatching(/bin\/tokend$/) });
    expect(added!.caller).toMatchObject({ pid: process.pid, exe: process.execPath });
    expect(refusedImport).toMatchObject({ outcome: 'refused', code: 'import_refused', caller: { user_agent: 'vault-app/1.0' } });
    expect(logout).toMatchObject({ outcome: 'ok', caller: { user_agent: 'vault-app/1.0' } });
    expect(Date.parse(logout!.at)).toBeGreaterThanOrEqual(Date.parse(added!.at));

    // No secret in any row: the whole answer searched, through the API and the CLI.
    const raw = (await stack.t.d.request('GET', '/v1/audit?limit=1000')).text;
    const cli = await stack.t.d.cli(['audit', 'vault', '--json']);
    const table = await stack.t.d.cli(['audit', 'vault']);
    for (const text of [raw, cli.stdout, table.stdout]) {
      for (const secret of [access_token, served, refresh_token, 'stale-refresh-token', 'conf-secret']) expect(text).not.toContain(secret);
    }
    expect(JSON.parse(cli.stdout).entries).toEqual(entries);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^TIME +ACCOUNT +ACTION +OUTCOME +PROGRAM +USER-AGENT +DETAIL$/m);
    expect(table.stdout).toMatch(/ vault +import +refused \(import_refused\) +.+\(pid \d+\) +vault-app\/1\.0 /);
    expect(table.stdout).toMatch(/ vault +login_started +ok +.+\(pid \d+\) +vault-app\/1\.0 +task=task-7 flow=device$/m);
  });

  it('includes a token read made just before the read of the log (rows still buffered are written first)', async () => {
    const app = new Tokend({ env: stack.t.env });
    await app.addAccount('work', account());
    await importConfGrant(stack.t.d, stack.idp, 'work');
    // Each read by another caller is a new row; the daemon writes its buffer once a second.
    for (let i = 0; i < 5; i++) {
      const caller = new Tokend({ env: stack.t.env, userAgent: `reader-${i}` });
      await caller.token('work');
      const [newest] = (await app.audit({ account: 'work', action: 'token', limit: 1 })).entries;
      expect(newest?.caller).toMatchObject({ user_agent: `reader-${i}`, pid: process.pid });
    }
  });

  it('records one row per refresh failure episode, however many retries, then its recovery; a cancelled login; a key move; a removal', async () => {
    const app = new Tokend({ env: stack.t.env, userAgent: 'ops' });
    await app.addAccount('work', account({ flow: 'device' }));
    await importConfGrant(stack.t.d, stack.idp, 'work');
    stack.idp.setFault({ kind: '500' });
    for (let i = 0; i < 3; i++) expect((await stack.t.d.cli(['refresh', 'work'])).code).toBe(1);
    stack.idp.setFault(null);
    expect((await stack.t.d.cli(['refresh', 'work'])).code).toBe(0);
    const pending = await app.login('work', { task: 'task-9' });
    await app.cancelLogin(pending.id);
    expect((await stack.t.d.request('POST', '/v1/key/move', { to: 'file' })).status).toBe(200);

    const { entries } = await app.audit({ account: 'work', since: '1h' });
    // Each refresh asked for is a row; the failure episode is one row, and so is its end.
    expect(story(entries)).toEqual([
      'account_added ok',
      'import ok',
      // The episode began during the first refresh asked for, before that request's own row.
      'refresh_failed failed transient',
      'refresh failed upstream_unavailable',
      'refresh failed upstream_unavailable',
      'refresh failed upstream_unavailable',
      'refresh_recovered ok',
      'refresh ok',
      'login_started ok',
      'login_cancelled failed cancelled',
    ]);
    expect(entries[0]).toMatchObject({ action: 'login_cancelled', task: 'task-9', login_id: pending.id });
    const [move] = (await app.audit({ action: 'key_move' })).entries;
    expect(move).toMatchObject({ account: null, outcome: 'ok', to: 'file' });
    await app.removeAccount('work');
    const [removed] = (await app.audit({ account: 'work', limit: 1 })).entries;
    expect(removed).toMatchObject({ action: 'account_removed', outcome: 'ok', caller: { user_agent: 'ops' } });
    // A time window that ends before anything happened is empty; a bad time is a clear 400.
    expect((await app.audit({ until: new Date(Date.parse(entries.at(-1)!.at) - 1) })).entries).toEqual([]);
    const bad = await stack.t.d.request('GET', '/v1/audit?since=yesterday');
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/^since: expected an ISO time/);
    expect((await stack.t.d.request('GET', '/v1/audit?limit=1001')).status).toBe(400);
  });

  it('pages newest first: each page ends where the next begins, none missed or repeated', async () => {
    const app = new Tokend({ env: stack.t.env });
    for (const name of ['a', 'b', 'c', 'd', 'e']) await app.addAccount(name, account(), { check: false });
    const all = (await app.audit()).entries;
    const paged: AuditEntry[] = [];
    let cursor: string | undefined;
    do {
      const page = await app.audit({ limit: 2, cursor });
      paged.push(...page.entries);
      cursor = page.next;
    } while (cursor);
    expect(paged).toEqual(all);
    expect(all.map((e) => e.account)).toEqual(['e', 'd', 'c', 'b', 'a']);
  });
});
