/**
 * The SDK driving the logins an app drives, against the real daemon and oidc-provider: a
 * deep-link login whose callback the app hands over with completeLogin, and a vault's
 * logins found again by task.
 */
import { describe, expect, it } from 'vitest';
import { Tokend } from '../src/sdk/index.js';
import { TEST_APP_REDIRECT_URI } from './support/idp.js';
import { useStack } from './support/stack.js';

describe('logins an app drives, through the SDK', () => {
  const stack = useStack();
  const account = (extra: Record<string, unknown> = {}) => ({
    issuer: stack.idp.issuer,
    client_id: 'conf',
    client_secret: 'conf-secret',
    scopes: ['openid', 'offline_access', 'api'],
    ...extra,
  });

  it('finishes a deep-link login with completeLogin; waitForLogin sees it end', async () => {
    const tokend = new Tokend({ env: stack.t.env });
    await tokend.addAccount('desk', account({ redirect_uri: TEST_APP_REDIRECT_URI }));
    const login = await tokend.login('desk', { flow: 'browser' });
    const waiting = tokend.waitForLogin(login.id, { pollMs: 60_000 });
    const callback = await stack.idp.authorize(login.authorization_url!); // what the OS hands the app
    const [pending] = await tokend.logins({ account: 'desk', status: 'pending' });
    expect(pending?.id).toBe(login.id);
    expect(await tokend.completeLogin(pending!.id, callback)).toMatchObject({ id: login.id, status: 'active' });
    expect(await waiting).toMatchObject({ id: login.id, status: 'active' });
    expect((await stack.idp.introspect((await tokend.token('desk')).access_token)).active).toBe(true);
    await expect(tokend.completeLogin(login.id, callback)).rejects.toMatchObject({ code: 'conflict', status: 409 });
  });

  it('keeps a vault of logins by task: login with a task, waitForLogin, then logins({ task }) later', async () => {
    const tokend = new Tokend({ env: stack.t.env });
    await tokend.addAccount('vault', account({ flow: 'device' }));
    const login = await tokend.login('vault', { task: 'task-42' });
    expect(login).toMatchObject({ task: 'task-42', status: 'pending' });
    await stack.idp.approveDevice(login.user_code!);
    await tokend.waitForLogin(login.id);
    expect((await tokend.logins({ task: 'task-42' })).map((l) => [l.id, l.status])).toEqual([[login.id, 'active']]);
    expect(await tokend.logins({ task: 'another-task' })).toEqual([]);
  });

  it('lets a login wait as long as ttlS says, within the maximum, and completes it by the callback URL alone', async () => {
    const tokend = new Tokend({ env: stack.t.env });
    await tokend.addAccount('mail', account({ redirect_uri: TEST_APP_REDIRECT_URI }));
    await expect(tokend.login('mail', { flow: 'browser', ttlS: 30 * 86400 })).rejects.toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('604800'),
    });
    const login = await tokend.login('mail', { flow: 'browser', ttlS: 3 * 86400, task: 'offline-grant' });
    expect(Date.parse(login.expires_at) - Date.parse(login.created_at)).toBe(3 * 86400_000);
    await expect(tokend.login('mail', { flow: 'device' })).rejects.toMatchObject({ code: 'login_pending', status: 409 });
    const callback = await stack.idp.authorize(login.authorization_url!);
    expect(await tokend.completeLogin(callback)).toMatchObject({ id: login.id, status: 'active', task: 'offline-grant' });
    await expect(tokend.completeLogin(`${TEST_APP_REDIRECT_URI}?code=x&state=nobody`)).rejects.toMatchObject({
      code: 'login_not_found',
      status: 404,
    });
  });
});
