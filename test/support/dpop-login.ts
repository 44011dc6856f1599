/**
 * The DPoP tests' set-up (RFC 9449): a public-client DPoP account with a grant from a device
 * login, against the test IdP. Client `cli` because §5 binds a public client's refresh tokens
 * to the key too, so a grant is useless without the daemon's key. Through the socket API in
 * this process: tests of `tokend add` and `tokend login` themselves run the CLI.
 *
 * ```ts
 * await putDpopAccount(t.d, idp.issuer, 'work', { api_base: api.url });
 * const jkt = await deviceLogin(t.d, idp, 'work');   // the key the grant is bound to
 * ```
 */
import { expect } from 'vitest';
import type { DaemonProcess } from './daemon.js';
import { settled } from './fake-as.js';
import type { TestIdp } from './idp.js';

/** A public-client DPoP account with device logins, as config.json and `PUT /v1/accounts/NAME` take it; `extra` over it. */
export function dpopAccount(issuer: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { issuer, client_id: 'cli', scopes: ['openid', 'offline_access', 'api'], flow: 'device', dpop: true, ...extra };
}

/**
 * Account NAME as `tokend add NAME --issuer ISSUER --client-id cli --scope 'openid
 * offline_access api' --dpop --flow device` writes it (`PUT /v1/accounts/NAME`, the same
 * body), with `extra` fields over it (`api_base`, say).
 */
export async function putDpopAccount(d: DaemonProcess, issuer: string, name: string, extra: Record<string, unknown> = {}): Promise<void> {
  const r = await d.request('PUT', `/v1/accounts/${encodeURIComponent(name)}`, dpopAccount(issuer, extra));
  if (r.status !== 201 && r.status !== 200) throw new Error(`PUT /v1/accounts/${name} failed (${r.status}): ${r.text}`);
}

/**
 * A device login of NAME on `d` (RFC 8628), approved at the IdP as its test user; once it is
 * active, the thumbprint of the account's key (`dpop.jkt`), which the grant is bound to.
 */
export async function deviceLogin(d: DaemonProcess, idp: Pick<TestIdp, 'approveDevice'>, name: string): Promise<string> {
  const started = await d.request('POST', `/v1/accounts/${encodeURIComponent(name)}/login`, { flow: 'device' });
  expect(started.status, started.text).toBe(202);
  await idp.approveDevice(started.json.user_code);
  expect((await settled(d, started.json.id)).status).toBe('active');
  return (await d.request('GET', `/v1/accounts/${encodeURIComponent(name)}`)).json.dpop.jkt;
}
