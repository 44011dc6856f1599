/**
 * The forced refresh (`POST /v1/accounts/NAME/refresh`) served by its own lane in front of
 * Hono (src/daemon/http/refresh-route.ts), against the real daemon and oidc-provider: the
 * same answers and errors as the Hono route, a target it does not read plainly still served
 * by Hono, and the audit row naming the verified caller, which the lane reads before the
 * provider is called.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Tokend } from '../src/sdk/index.js';
import { waitFor } from './support/fake-as.js';
import { useDaemon, useIdp } from './support/fixtures.js';

/** A caller that asks for a forced refresh of `work` on the socket (argv[1]) and waits, not reading the answer, until it is killed. */
const LEAVER = `
const req = require('node:http').request({ socketPath: process.argv[1], method: 'POST', path: '/v1/accounts/work/refresh',
  headers: { 'user-agent': 'leaver/1.0', 'content-type': 'application/json' } });
req.on('error', () => {});
req.end('{}');
setInterval(() => {}, 60000);
`;

describe('the forced refresh lane', () => {
  const idp = useIdp();
  const daemon = useDaemon({ account: { idp, grant: true } });

  it('refreshes (one provider call, a new generation) and its audit row names the caller it verified', async () => {
    const app = new Tokend({ env: daemon.t.env, userAgent: 'refresher/2.0' });
    const before = await daemon.d.request('POST', '/v1/token', { account: 'work' });
    const refreshes = idp.stats.refreshes;
    const r = await app.refresh('work');
    expect(idp.stats.refreshes).toBe(refreshes + 1);
    expect(r).toMatchObject({ account: 'work', generation: expect.any(Number) });
    expect(Date.parse(r.expires_at!)).toBeGreaterThan(Date.now());
    const after = await daemon.d.request('POST', '/v1/token', { account: 'work' });
    expect((after.json as { access_token: string }).access_token).not.toBe((before.json as { access_token: string }).access_token);
    // No token in a plain refresh's answer (only a coalesced one, with if_token, carries it).
    expect(r).not.toHaveProperty('access_token');

    const [row] = (await app.audit({ account: 'work', action: 'refresh', limit: 1 })).entries;
    expect(row).toMatchObject({ outcome: 'ok', caller: { user_agent: 'refresher/2.0', pid: process.pid, exe: process.execPath } });
  });

  it('names a caller that was gone before the provider answered in the audit row of its forced refresh', async () => {
    // The provider holds the refresh until the caller has exited and been reaped (/proc/PID is
    // gone): the row can name it only if its identity was read before the provider was called.
    let answer: () => void = () => undefined;
    idp.setFault({ kind: 'hold', until: new Promise<void>((r) => (answer = r)), times: 1 });
    const asked = idp.stats.tokenRequests;
    const refreshes = idp.stats.refreshes;
    const leaver = spawn(process.execPath, ['-e', LEAVER, daemon.t.d.socket], { stdio: 'ignore' });
    const exited = once(leaver, 'exit');
    try {
      await waitFor(() => idp.stats.tokenRequests > asked, 'the forced refresh at the provider');
    } finally {
      leaver.kill('SIGKILL');
      await exited;
      answer();
    }
    const app = new Tokend({ env: daemon.t.env });
    // The row of its request (the User-Agent it declared), once the refresh is done.
    const row = await waitFor(async () => {
      const { entries } = await app.audit({ account: 'work', action: 'refresh', limit: 10 });
      return entries.find((e) => e.caller?.user_agent === 'leaver/1.0');
    }, 'the audit row of the forced refresh');
    expect(idp.stats.refreshes).toBe(refreshes + 1);
    expect(row).toMatchObject({ outcome: 'ok', caller: { user_agent: 'leaver/1.0', pid: leaver.pid, exe: process.execPath } });
    // Its parents were read then too: this test's node started it.
    expect(row.caller?.parents?.[0]).toBe(process.execPath);
  });

  it('answers a coalesced refresh with the token, and a failed refresh with its error and a row of it', async () => {
    const app = new Tokend({ env: daemon.t.env });
    const held = (await daemon.d.request('POST', '/v1/token', { account: 'work' })).json as { access_token: string };
    // Refused with the token the daemon holds: refreshed, and the answer carries the new token.
    const r = await app.refresh('work', { ifToken: held.access_token });
    expect(r).toMatchObject({ account: 'work', refreshed: true, token_type: 'Bearer' });
    expect(r.access_token).toEqual(expect.any(String));
    expect(r.access_token).not.toBe(held.access_token);

    const unknown = await daemon.d.request('POST', '/v1/accounts/nobody/refresh', {});
    expect(unknown.status).toBe(404);
    expect(unknown.json).toMatchObject({ error: { code: 'not_found' } });
    const [row] = (await app.audit({ account: 'nobody', action: 'refresh', limit: 1 })).entries;
    expect(row).toMatchObject({ outcome: 'refused', code: 'not_found', caller: { pid: process.pid } });
  });

  it('refuses a bad body with the field named, as the Hono route did, and leaves other targets to Hono', async () => {
    const notJson = await daemon.d.request('POST', '/v1/accounts/work/refresh', 'not json');
    expect(notJson.status).toBe(400);
    expect(notJson.json).toMatchObject({ error: { code: 'invalid_request', message: 'the request body is not valid JSON' } });
    const badField = await daemon.d.request('POST', '/v1/accounts/work/refresh', { if_token: 5 });
    expect(badField.status).toBe(400);
    expect(badField.json).toMatchObject({ error: { code: 'invalid_request', message: expect.stringContaining('if_token') } });
    const extra = await daemon.d.request('POST', '/v1/accounts/work/refresh', { force: true });
    expect(extra.status).toBe(400);

    // Not read plainly by the lane: Hono's route answers (a query), or says why not (a bad name, another method).
    const query = await daemon.d.request('POST', '/v1/accounts/work/refresh?why=test', {});
    expect(query.status).toBe(200);
    expect(query.json).toMatchObject({ account: 'work' });
    const badName = await daemon.d.request('POST', '/v1/accounts/-work/refresh', {});
    expect(badName.status).toBe(400);
    expect(badName.json).toMatchObject({ error: { code: 'invalid_request' } });
    const get = await daemon.d.request('GET', '/v1/accounts/work/refresh');
    expect(get.status).toBe(404);
  });
});
