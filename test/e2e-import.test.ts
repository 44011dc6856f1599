/**
 * `tokend import` proves tokens before it replaces anything (docs/api.md, the import route):
 * the real daemon and CLI against the real OpenID Provider. A refused import, a provider that
 * is down, and a daemon killed during the proving refresh all leave a working grant as it was.
 */
import { describe, expect, it } from 'vitest';
import { Tokend, TokendError } from '../src/sdk/index.js';
import { addConfAccount, importConfGrant, sleep } from './support/daemon.js';
import { tapEvents } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import { rejectionOf } from './support/rejection.js';
import { atRest } from './support/views.js';

describe('tokend import', () => {
  const idp = useIdp({ accessTokenTtl: 300 });
  const { d } = useDaemon({ lifetime: 'test', settings: { max_refreshes_per_minute: 1000, proactive_refresh: false } });

  /** A working account: a proven grant, its base token and a narrowed one cached. */
  async function working(): Promise<{ view: unknown; base: string; narrow: string }> {
    await addConfAccount(d, idp.issuer);
    await importConfGrant(d, idp);
    const base = (await d.request('POST', '/v1/token', { account: 'work' })).json.access_token;
    const narrow = (await d.request('POST', '/v1/token', { account: 'work', scope: 'openid' })).json.access_token;
    expect([base, narrow].every((t) => typeof t === 'string')).toBe(true);
    return { view: atRest((await d.request('GET', '/v1/accounts/work')).json), base, narrow };
  }

  /** The account as the API shows it, its cached tokens, and that its stored refresh token still works. */
  async function expectUnchanged(before: { view: unknown; base: string; narrow: string }): Promise<void> {
    expect(atRest((await d.request('GET', '/v1/accounts/work')).json)).toEqual(before.view);
    expect((await d.request('POST', '/v1/token', { account: 'work' })).json.access_token).toBe(before.base);
    expect((await d.request('POST', '/v1/token', { account: 'work', scope: 'openid' })).json.access_token).toBe(before.narrow);
  }

  it('refuses tokens the provider refuses with 400 import_refused (CLI exit 1) and leaves a working account exactly as it was', async () => {
    const before = await working();
    const events = await tapEvents(d.socket);
    idp.resetStats();

    const cli = await d.cli(['import', 'work', '--refresh-token-stdin'], 'bogus-refresh-token\n');
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/refused the tokens imported for "work" \(invalid_grant/);
    expect(cli.stderr).toContain('nothing was changed');
    expect(cli.stderr).not.toContain('bogus-refresh-token');

    const api = await d.request('POST', '/v1/accounts/work/import', { refresh_token: 'another-bogus-one' });
    expect(api.status).toBe(400);
    expect(api.json.error.code).toBe('import_refused');
    expect(api.json.error.message).toContain('invalid_grant');
    expect(api.json.error.message).not.toContain('another-bogus-one');
    // Neither refused token reaches the daemon's log, which names the refusal instead.
    expect(d.logs).toContain('an import was not proven; the account is unchanged');
    for (const t of ['bogus-refresh-token', 'another-bogus-one']) expect(d.logs).not.toContain(t);

    // Both were tried at the provider, on the side: the stored grant was never sent.
    expect(idp.stats.refreshErrors.map((e) => e.error)).toEqual(['invalid_grant', 'invalid_grant']);
    expect(idp.stats.refreshes).toBe(0);
    await expectUnchanged(before);
    await sleep(100); // events would have been sent by now
    expect(events.events.map((e) => e.type)).not.toContain('account.reauth_required');
    expect(events.events.map((e) => e.type)).not.toContain('token.refresh_failed');
    events.close();

    // The grant on disk is the old one, and works.
    await d.stop('SIGKILL');
    await d.start();
    expect((await d.request('GET', '/v1/accounts/work')).json.generation).toBe((before.view as { generation: number }).generation);
    expect((await d.cli(['refresh', 'work'])).code).toBe(0);
    expect(idp.stats.replays).toBe(0);
  });

  it('imports through the SDK what an app holds; refused tokens reject with import_refused and change nothing', async () => {
    const before = await working();
    const tokend = new Tokend({ env: d.env, userAgent: 'import-test', autostart: false });
    const refused = await rejectionOf(tokend.importTokens('work', { refresh_token: 'an-app-s-stale-token' }), TokendError);
    expect(refused).toMatchObject({ code: 'import_refused', status: 400, account: 'work' });
    expect(refused.message).not.toContain('an-app-s-stale-token');
    await expectUnchanged(before);

    const issued = await idp.issueRefreshToken('conf');
    const view = await tokend.importTokens('work', { refresh_token: issued.refresh_token });
    expect(view).toMatchObject({ status: 'active', generation: (before.view as { generation: number }).generation + 1 });
    expect((await tokend.token('work')).access_token).not.toBe(before.base);
  });

  it('answers 503 and changes nothing while the provider is down; the same tokens import once it is back', async () => {
    const before = await working();
    const issued = await idp.issueRefreshToken('conf');
    idp.setFault({ kind: '500' });
    const down = await d.request('POST', '/v1/accounts/work/import', { refresh_token: issued.refresh_token });
    expect(down.status).toBe(503);
    expect(down.json.error.code).toBe('upstream_unavailable');
    expect(down.json.error.message).toContain('nothing was changed');
    const cli = await d.cli(['import', 'work', '--refresh-token-stdin'], issued.refresh_token);
    expect(cli.code).toBe(1);
    await expectUnchanged(before);

    idp.setFault(null);
    const up = await d.cli(['import', 'work', '--refresh-token-stdin', '--json'], issued.refresh_token);
    expect(up.code, up.stderr).toBe(0);
    const view = JSON.parse(up.stdout);
    expect(view).toMatchObject({ status: 'active', generation: (before.view as { generation: number }).generation + 1, last_error: null });
    // The new grant serves: another token than the old one, and the old narrowed one is gone.
    const base = (await d.request('POST', '/v1/token', { account: 'work' })).json.access_token;
    expect(base).not.toBe(before.base);
    expect((await idp.introspect(base)).active).toBe(true);
    expect((await d.request('POST', '/v1/token', { account: 'work', scope: 'openid' })).json.access_token).not.toBe(before.narrow);
    expect(idp.stats.replays).toBe(0);
  });

  it('keeps the old grant when the daemon is killed during the proving refresh, and says at restart that the import was interrupted', async () => {
    const before = await working();
    await addConfAccount(d, idp.issuer, 'fresh'); // no grant yet
    const issued = await idp.issueRefreshToken('conf');
    idp.resetStats();
    idp.setFault({ kind: 'hang' });
    const imports = [
      d.cli(['import', 'work', '--refresh-token-stdin'], issued.refresh_token),
      d.cli(['import', 'fresh', '--refresh-token-stdin'], (await idp.issueRefreshToken('conf')).refresh_token),
    ];
    for (let i = 0; idp.stats.faulted < 2; i++) {
      if (i > 200) throw new Error('the proving refreshes never reached the provider');
      await sleep(25);
    }
    // While the imports are being proven, the accounts show what they had.
    expect((await d.request('GET', '/v1/accounts/fresh')).json).toMatchObject({ status: 'no_grant', last_error: null });
    expect(atRest((await d.request('GET', '/v1/accounts/work')).json)).toEqual(before.view);
    await d.stop('SIGKILL');
    for (const r of await Promise.all(imports)) expect(r.code).not.toBe(0);
    idp.setFault(null);

    await d.start();
    // The working account kept its grant, its generation and its stored token; the import is told.
    const view = (await d.request('GET', '/v1/accounts/work')).json;
    expect(view).toMatchObject({ status: 'active', generation: (before.view as { generation: number }).generation });
    expect(view.last_error).toMatch(
      /an import of tokens began at .* tokend stopped before its outcome was known: the account kept its grant/,
    );
    expect((await d.request('POST', '/v1/token', { account: 'work' })).json.access_token).toBe(before.base);
    // Its own refresh token was never sent: refreshed at once, without waiting out an interrupted refresh.
    expect((await d.cli(['refresh', 'work'])).code).toBe(0);
    expect(d.logs).toContain('an import was interrupted when the daemon stopped');
    expect(d.logs).not.toContain('waiting until an interrupted refresh is surely over');
    // The account without a grant says so too, instead of showing nothing happened.
    const fresh = (await d.request('GET', '/v1/accounts/fresh')).json;
    expect(fresh.status).toBe('reauth_required');
    expect(fresh.last_error).toMatch(/an import of tokens began at .* import again or log in/);
    expect(idp.stats.replays).toBe(0);
  });
});
