/**
 * The SDK (`tokend/client`) against the real daemon and the real oidc-provider: what an
 * app sees of accounts, tokens, logins, events and errors.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { Tokend, TokendError, type EventSubscription, type TokendEvent } from '../src/sdk/index.js';
import { putConfAccount, postConfGrant, processAlive, socketRequest } from './support/daemon.js';
import { waitFor } from './support/fake-as.js';
import { rejectionOf } from './support/rejection.js';
import { useStack } from './support/stack.js';

/** The promise's rejection, which must be a TokendError. */
const tokendError = (p: Promise<unknown>) => rejectionOf(p, TokendError);

/** Everything the subscription yields, until it ends (`done`). */
function collect(events: EventSubscription): { seen: TokendEvent[]; done: Promise<void> } {
  const seen: TokendEvent[] = [];
  const done = (async () => {
    for await (const ev of events) seen.push(ev);
  })();
  return { seen, done };
}

describe('the SDK against a real daemon and IdP', () => {
  const stack = useStack();
  let tokend: Tokend;
  beforeEach(() => {
    tokend = new Tokend({ env: stack.t.env, userAgent: 'sdk-test' });
  });

  it('adds, reads, changes and removes accounts, with the write flags', async () => {
    const added = await tokend.addAccount('work', {
      issuer: stack.idp.issuer,
      client_id: 'conf',
      client_secret: 'conf-secret',
      scopes: ['openid', 'offline_access', 'api'],
    });
    expect(added).toMatchObject({ name: 'work', status: 'no_grant', client_id: 'conf', has_client_secret: true, issuer: stack.idp.issuer });
    expect(await tokend.info('work')).toMatchObject({ name: 'work', status: 'no_grant', scopes: ['openid', 'offline_access', 'api'] });

    // check=false: saved without asking a provider that is not there.
    const nowhere = {
      token_endpoint: 'http://127.0.0.1:9/token',
      client_id: 'x',
      client_secret: 'x-secret',
      flow: 'client-credentials' as const,
    };
    const checked = await tokendError(tokend.addAccount('offline', nowhere));
    expect(checked).toMatchObject({ code: 'upstream_unavailable', status: 503, account: 'offline' });
    expect(await tokend.addAccount('offline', nowhere, { check: false })).toMatchObject({
      name: 'offline',
      client_id: 'x',
      has_client_secret: true,
    });
    expect((await tokend.accounts()).map((a) => a.name).sort()).toEqual(['offline', 'work']);

    await postConfGrant(stack.t.d, stack.idp);
    const narrowed = await tokend.updateAccount('work', { scopes: ['openid', 'offline_access'] });
    expect(narrowed).toMatchObject({ scopes: ['openid', 'offline_access'], status: 'active', client_id: 'conf' });

    // Another client would inherit the grant: refused (409 conflict) unless replaceGrant.
    const move = { client_id: 'conf-post', client_secret: 'conf-post-secret', token_endpoint_auth_method: 'client_secret_post' as const };
    expect(await tokendError(tokend.updateAccount('work', move))).toMatchObject({ code: 'conflict', status: 409 });
    const moved = await tokend.updateAccount('work', move, { replaceGrant: true });
    expect(moved).toMatchObject({ client_id: 'conf-post', status: 'no_grant', has_refresh_token: false });
    expect(moved.notices?.join(' ')).toMatch(/revoked|dropped/);

    expect(await tokend.removeAccount('offline')).toEqual({ ok: true, revoked: false });
    expect(await tokendError(tokend.info('offline'))).toMatchObject({ code: 'not_found', status: 404 });
  });

  it('serves tokens, refreshes, logs out, and then says reauth_required', async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    await postConfGrant(stack.t.d, stack.idp);

    const first = await tokend.token('work', { minTtl: 10 });
    expect(first).toMatchObject({ account: 'work', token_type: 'Bearer', scope: expect.stringContaining('api') });
    expect(first.expires_in).toBeGreaterThan(10);
    expect((await stack.idp.introspect(first.access_token)).active).toBe(true);
    expect((await tokend.token('work')).access_token).toBe(first.access_token); // from memory

    const narrow = await tokend.token('work', { scope: 'openid' });
    expect(narrow.scope).toBe('openid');
    expect(narrow.access_token).not.toBe(first.access_token);

    const before = (await tokend.info('work')).generation;
    const refreshed = await tokend.refresh('work');
    expect(refreshed).toMatchObject({ account: 'work', generation: before + 1 });
    expect((await tokend.token('work')).access_token).not.toBe(first.access_token);

    expect(await tokend.logout('work')).toEqual({ ok: true, revoked: true });
    const err = await tokendError(tokend.token('work'));
    expect(err).toMatchObject({ code: 'reauth_required', status: 409, account: 'work' });
    expect(err.message).toContain('tokend login work');
    expect((await tokend.info('work')).status).toBe('no_grant');
  });

  it('runs a device login: login_pending while it waits, waitForLogin resolves from the event stream, the iterator sees it', async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    const stop = new AbortController();
    const events = tokend.events({ signal: stop.signal });
    await events.ready;
    const { seen, done: collecting } = collect(events);

    const login = await tokend.login('work', { flow: 'device', task: 'task-1' });
    expect(login).toMatchObject({ account: 'work', flow: 'device', status: 'pending', authorization_url: null });
    expect((await tokend.info('work')).login).toMatchObject({ id: login.id, user_code: login.user_code });
    const pending = await tokendError(tokend.token('work'));
    expect(pending).toMatchObject({ code: 'login_pending', status: 409, account: 'work' });
    expect(pending.login).toMatchObject({ id: login.id, user_code: login.user_code, verification_uri: `${stack.idp.issuer}/device` });

    // A poll a minute apart would time the test out: the event stream is what ends the wait.
    const waiting = tokend.waitForLogin(login.id, { pollMs: 60_000 });
    await stack.idp.approveDevice(login.user_code!);
    const startedAt = Date.now();
    const done = await waiting;
    expect(Date.now() - startedAt).toBeLessThan(10_000);
    expect(done).toMatchObject({ id: login.id, status: 'active', error: null });
    expect((await tokend.info('work')).last_login).toMatchObject({ id: login.id, status: 'active' });
    expect((await stack.idp.introspect((await tokend.token('work')).access_token)).active).toBe(true);

    await waitFor(() => seen.some((e) => e.type === 'login.succeeded'), 'login.succeeded');
    stop.abort();
    await collecting; // the signal ends the iteration cleanly
    expect(
      seen.filter((e) => e.type.startsWith('login.')).map((e) => [e.type, 'account' in e && e.account, 'login_id' in e && e.login_id]),
    ).toEqual([
      ['login.pending', 'work', login.id],
      ['login.succeeded', 'work', login.id],
    ]);
    for (const e of seen) expect(typeof e.at).toBe('string');
  });

  it("rejects waitForLogin with the login's own error: access_denied when denied, cancelled by cancelLogin", async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    const denied = await tokend.login('work', { flow: 'device' });
    const waiting = tokendError(tokend.waitForLogin(denied.id));
    await stack.idp.denyDevice(denied.user_code!);
    const err = await waiting;
    expect(err).toMatchObject({ code: 'access_denied', account: 'work' });
    expect(err.login).toMatchObject({ id: denied.id, status: 'failed', error: { code: 'access_denied' } });

    const second = await tokend.login('work', { flow: 'device' });
    expect(second.id).not.toBe(denied.id);
    const waiting2 = tokendError(tokend.waitForLogin(second.id));
    expect(await tokend.cancelLogin(second.id)).toMatchObject({ id: second.id, status: 'failed', error: { code: 'cancelled' } });
    expect(await waiting2).toMatchObject({ code: 'cancelled', login: { status: 'failed' } });
    expect(await tokend.getLogin(second.id)).toMatchObject({ status: 'failed' });
  });

  it('keeps waiting across a daemon restart by polling (nobody answering for a while is no end); the login goes on and ends active', async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    const login = await tokend.login('work', { flow: 'device' });
    const waiting = tokend.waitForLogin(login.id, { pollMs: 100 });
    await new Promise((r) => setTimeout(r, 300));
    expect(await stack.t.d.stop('SIGTERM')).toBe(0);
    await new Promise((r) => setTimeout(r, 500)); // several polls find nobody
    await stack.t.d.start();
    await stack.idp.approveDevice(login.user_code!);
    expect(await waiting).toMatchObject({ id: login.id, status: 'active' });
  });

  it('stops waiting at the abort signal; the login goes on', async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    const login = await tokend.login('work', { flow: 'device' });
    const stop = new AbortController();
    const waiting = tokend.waitForLogin(login.id, { signal: stop.signal });
    setTimeout(() => stop.abort(), 200);
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    expect((await tokend.getLogin(login.id)).status).toBe('pending');
  });

  it('events: reconnects after a daemon restart and goes on delivering; without reconnect the iteration ends', async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    await postConfGrant(stack.t.d, stack.idp);
    const stop = new AbortController();
    const lasting = tokend.events({ signal: stop.signal });
    const once = tokend.events({ reconnect: false });
    await Promise.all([lasting.ready, once.ready]);
    const { seen, done: collecting } = collect(lasting);
    const { seen: onceSeen, done: onceDone } = collect(once);

    await stack.t.d.stop('SIGTERM');
    await onceDone; // ended with the stream
    await stack.t.d.start();
    // The SDK reconnects 1 s after the stream ended; refresh until it hears one.
    await waitFor(async () => {
      await tokend.refresh('work');
      return seen.some((e) => e.type === 'token.refreshed');
    }, 'token.refreshed after the restart');
    stop.abort();
    await collecting;
    expect(seen.find((e) => e.type === 'token.refreshed')).toMatchObject({ account: 'work', generation: expect.any(Number) });
    expect(onceSeen).toEqual([]);
  });

  it('says daemon_unreachable when nothing listens and autostart is off, for requests and event streams alike', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-'));
    try {
      const off = new Tokend({ env: { TOKEND_HOME: empty }, autostart: false });
      expect(off.socket).toBe(path.join(empty, 'run', 'tokend.sock'));
      const err = await tokendError(off.health());
      expect(err).toMatchObject({ code: 'daemon_unreachable', status: 0 });
      expect(err.message).toContain(off.socket);
      const events = off.events();
      await expect(events.ready).rejects.toMatchObject({ code: 'daemon_unreachable' });
      await expect(events.next()).rejects.toMatchObject({ code: 'daemon_unreachable' });
      // TOKEND_NO_AUTOSTART=1 wins over autostart: true.
      const envOff = new Tokend({ env: { TOKEND_HOME: empty, TOKEND_NO_AUTOSTART: '1' }, autostart: true });
      expect(await tokendError(envOff.accounts())).toMatchObject({ code: 'daemon_unreachable' });
      expect(fs.existsSync(path.join(empty, 'data'))).toBe(false); // nothing was started
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  it('starts the daemon when nothing listens, as the CLI does', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-'));
    let pid: number | undefined;
    try {
      const env: NodeJS.ProcessEnv = { ...stack.t.env, TOKEND_HOME: home };
      delete env.TOKEND_NO_AUTOSTART;
      const started = new Tokend({ env });
      const health = await started.health();
      pid = health.pid;
      expect(health).toMatchObject({ status: 'ok', accounts: 0 });
      expect(pid).not.toBe(stack.t.d.child!.pid);
      expect((await socketRequest(path.join(home, 'run', 'tokend.sock'), 'GET', '/v1/health')).json.pid).toBe(pid);
      expect(await started.accounts()).toEqual([]);
    } finally {
      if (pid) process.kill(pid, 'SIGTERM');
      await waitFor(() => !pid || !processAlive(pid), 'the autostarted daemon to stop');
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
