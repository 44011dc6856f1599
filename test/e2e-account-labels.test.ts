/**
 * Account labels (`user=123`, `task=t-1`): an app finds its accounts by what they are for,
 * not by names that pack both. Set on add and PATCH, shown in the account view, filtered in
 * `GET /v1/accounts?label=`, removed in bulk by the SDK, refused with the rule when bad,
 * kept across a restart, and never part of a grant's identity. Real daemons, the real CLI
 * and the real IdP.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokend, TokendError } from '../src/sdk/index.js';
import { addConfAccount, postConfGrant } from './support/daemon.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import { startStandInDaemon } from './support/stand-in-daemon.js';

const idp = useIdp();
const { d, t } = useDaemon({ lifetime: 'test' });

/** Add account NAME with `labels`, without contacting the provider. */
async function addLabelled(name: string, labels: Record<string, string>): Promise<void> {
  const r = await d.request('PUT', `/v1/accounts/${name}?check=false`, { issuer: idp.issuer, client_id: 'conf', labels });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
}

const names = (accounts: Array<{ name: string }>) => accounts.map((a) => a.name).sort();

describe('account labels', () => {
  it('adds labels through the CLI and filters by one label and by two (they AND together), in the CLI, the API and the SDK', async () => {
    await addConfAccount(d, idp.issuer, 'u123-t1', ['--label', 'user=123', '--label', 'task=t-1']);
    await addConfAccount(d, idp.issuer, 'u123-t2', ['--label', 'user=123', '--label', 'task=t-2']);
    await addConfAccount(d, idp.issuer, 'u456-t1', ['--label', 'user=456', '--label', 'task=t-1']);
    // A value may hold `=` and `&`: only the first `=` splits, and the query is encoded.
    await addLabelled('odd', { note: 'a=b&c d' });

    const shown = await d.cli(['status', 'u123-t1', '--json']);
    expect(JSON.parse(shown.stdout).labels).toEqual({ user: '123', task: 't-1' });
    expect((await d.cli(['status', 'u123-t1'])).stdout).toMatch(/^labels: +user=123 task=t-1$/m);

    const one = await d.cli(['list', '--label', 'user=123', '--json']);
    expect(one.code, one.stderr).toBe(0);
    expect(names(JSON.parse(one.stdout).accounts)).toEqual(['u123-t1', 'u123-t2']);
    const two = await d.cli(['list', '--label', 'user=123', '--label', 'task=t-1', '--json']);
    expect(JSON.parse(two.stdout).accounts).toMatchObject([{ name: 'u123-t1', labels: { user: '123', task: 't-1' } }]);
    const none = await d.cli(['list', '--label', 'user=789']);
    expect(none.code).toBe(0);
    expect(none.stderr).toContain('no account carries every label given');
    // Without a filter, every account, each with its labels ({} when it has none).
    await addLabelled('plain', {});
    const all = JSON.parse((await d.cli(['list', '--json'])).stdout).accounts as Array<{ name: string; labels: object }>;
    expect(names(all)).toEqual(['odd', 'plain', 'u123-t1', 'u123-t2', 'u456-t1']);
    expect(all.find((a) => a.name === 'plain')?.labels).toEqual({});

    const api = await d.request('GET', '/v1/accounts?label=task%3Dt-1&label=user%3D456');
    expect(names(api.json.accounts)).toEqual(['u456-t1']);
    // As docs/api.md writes it, the `=` unencoded.
    expect(names((await d.request('GET', '/v1/accounts?label=user=456')).json.accounts)).toEqual(['u456-t1']);

    const tokend = new Tokend({ env: t.env, autostart: false });
    expect(names(await tokend.accounts({ labels: { task: 't-1' } }))).toEqual(['u123-t1', 'u456-t1']);
    expect(names(await tokend.accounts({ labels: { note: 'a=b&c d' } }))).toEqual(['odd']);
    expect(names(await tokend.accounts({ labels: { note: 'a=b' } }))).toEqual([]);
    expect(names(await tokend.accounts())).toHaveLength(5);
  });

  it('PATCH merges labels (a key set to null goes, labels: null clears them) and keeps the grant: the same token is served, no new login', async () => {
    await addConfAccount(d, idp.issuer, 'w', ['--label', 'user=123', '--label', 'task=t-1']);
    await postConfGrant(d, idp, 'w');
    const first = await d.request('POST', '/v1/token', { account: 'w' });
    expect(first.status).toBe(200);
    const before = (await d.request('GET', '/v1/accounts/w')).json;
    const grants = { ...idp.stats.grants };

    const merged = await d.request('PATCH', '/v1/accounts/w', { labels: { task: 't-2', env: 'prod', user: null } });
    expect(merged.status, JSON.stringify(merged.json)).toBe(200);
    expect(merged.json.labels).toEqual({ task: 't-2', env: 'prod' });
    expect(merged.json.notices).toBeUndefined();

    const set = await d.cli(['set', 'w', '--label', 'user=456', '--unlabel', 'env', '--json']);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout).labels).toEqual({ task: 't-2', user: '456' });

    const cleared = await d.request('PATCH', '/v1/accounts/w', { labels: null });
    expect(cleared.json.labels).toEqual({});
    expect(JSON.parse(fs.readFileSync(path.join(t.home, 'config', 'config.json'), 'utf8')).accounts.w.labels).toBeUndefined();

    // Labels are not part of the grant's identity: the grant, and the token it got, stay.
    const after = await d.request('GET', '/v1/accounts/w');
    expect(after.json).toMatchObject({ status: 'active', has_refresh_token: true, generation: before.generation });
    const again = await d.request('POST', '/v1/token', { account: 'w' });
    expect(again.status).toBe(200);
    expect(again.json.access_token).toBe(first.json.access_token);
    expect(idp.stats.grants).toEqual(grants);
  });

  it('removeAccounts removes exactly the accounts carrying every label given, and refuses an empty selector', async () => {
    await addConfAccount(d, idp.issuer, 'u123-t1', ['--label', 'user=123', '--label', 'task=t-1']);
    await postConfGrant(d, idp, 'u123-t1');
    await addLabelled('u123-t2', { user: '123', task: 't-2' });
    await addLabelled('u456-t1', { user: '456', task: 't-1' });
    await addLabelled('other', {});
    const tokend = new Tokend({ env: t.env, autostart: false });

    for (const selector of [{}, undefined, null]) {
      const refused = await tokend.removeAccounts({ labels: selector as never }).catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(TokendError);
      expect(refused).toMatchObject({ code: 'invalid_request' });
    }
    expect(await tokend.accounts()).toHaveLength(4);

    const removed = await tokend.removeAccounts({ labels: { user: '123' } });
    expect(removed.map((r) => r.name).sort()).toEqual(['u123-t1', 'u123-t2']);
    expect(removed.find((r) => r.name === 'u123-t1')).toMatchObject({ ok: true, revoked: true });
    expect(names(await tokend.accounts())).toEqual(['other', 'u456-t1']);
    expect((await d.request('GET', '/v1/accounts/u123-t1')).status).toBe(404);

    expect(await tokend.removeAccounts({ labels: { user: '456', task: 't-2' } })).toEqual([]);
    expect(names(await tokend.accounts())).toEqual(['other', 'u456-t1']);
  });

  it('removeAccounts removes nothing where the daemon ignores the filter (one from before labels) and lists every account', async () => {
    const old = await startStandInDaemon();
    try {
      const view = (name: string) => ({ name, driver: 'oauth2', status: 'active', scopes: [], hosts: [], has_client_secret: false });
      old.answer = (req) =>
        req.method === 'GET' && req.path === '/v1/accounts'
          ? { status: 200, body: { accounts: [view('a'), view('b')] } }
          : { status: 200, body: { ok: true, revoked: false } };
      const tokend = new Tokend({ env: old.env, autostart: false });
      expect(await tokend.removeAccounts({ labels: { user: '123' } })).toEqual([]);
      expect(old.requests.map((r) => r.method)).toEqual(['GET']);
      expect(old.requests[0]!.query).toEqual({ label: 'user=123' });
    } finally {
      await old.close();
    }
  });

  it('refuses bad labels with 400 naming the rule, and saves nothing', async () => {
    const base = { issuer: idp.issuer, client_id: 'conf' };
    const refusals: Array<[object, string]> = [
      [{ User: '1' }, 'a label key is 1-63 lower-case letters'],
      [{ '-x': '1' }, 'starting with a letter or digit'],
      [{ ['k'.repeat(64)]: '1' }, 'a label key is 1-63'],
      [{ user: 'a\nb' }, 'without control characters'],
      [{ user: 'v'.repeat(257) }, 'at most 256 characters'],
      [Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])), 'at most 32 labels'],
    ];
    for (const [labels, rule] of refusals) {
      const r = await d.request('PUT', '/v1/accounts/bad?check=false', { ...base, labels });
      expect(r.status, JSON.stringify(labels).slice(0, 80)).toBe(400);
      expect(r.json.error.code).toBe('invalid_request');
      expect(r.json.error.message).toContain(rule);
    }
    expect((await d.request('GET', '/v1/accounts/bad')).status).toBe(404);

    await addLabelled('ok', Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, 'v'])));
    // A patch that would take the account past 32 labels, or sets a bad one, changes nothing.
    const over = await d.request('PATCH', '/v1/accounts/ok?check=false', { labels: { k32: 'v' } });
    expect(over.status).toBe(400);
    expect(over.json.error.message).toContain('at most 32 labels');
    const badKey = await d.request('PATCH', '/v1/accounts/ok?check=false', { labels: { 'Bad Key': 'v' } });
    expect(badKey.json.error.message).toContain('a label key is');
    expect(Object.keys((await d.request('GET', '/v1/accounts/ok')).json.labels)).toHaveLength(32);

    for (const [query, rule] of [
      ['label=user', 'expected key=value'],
      ['label=User%3D1', 'a label key is'],
      ['label=user%3D1&label=user%3D2', 'given twice'],
    ]) {
      const r = await d.request('GET', `/v1/accounts?${query}`);
      expect(r.status, query).toBe(400);
      expect(r.json.error.message).toContain(rule);
    }

    const cli = await d.cli(['add', 'cli', '--issuer', idp.issuer, '--client-id', 'conf', '--no-check', '--label', 'novalue']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('expected key=value');
    const unlabelOnAdd = await d.cli(['add', 'cli', '--issuer', idp.issuer, '--client-id', 'conf', '--no-check', '--unlabel', 'x']);
    expect(unlabelOnAdd.code).toBe(2);
  });

  it('keeps labels across a restart: shown and filtered as before', async () => {
    await addLabelled('u1', { user: '1', task: 't-1' });
    await addLabelled('u2', { user: '2', task: 't-1' });
    await d.stop('SIGTERM');
    await d.start();
    expect((await d.request('GET', '/v1/accounts/u1')).json.labels).toEqual({ user: '1', task: 't-1' });
    const r = await d.request('GET', '/v1/accounts?label=task%3Dt-1&label=user%3D2');
    expect(names(r.json.accounts)).toEqual(['u2']);
  });
});
