/** The answers a refresh gives instead of a token (src/daemon/broker/refusals.ts): wire codes and the way back. */
import { describe, expect, it } from 'vitest';
import type { LoginView } from '../src/protocol/api.js';
import { loginPendingError, mismatchMessage, noGrantError, reauthError, storeDownError } from '../src/daemon/broker/refusals.js';
import type { Driver } from '../src/daemon/drivers/driver.js';
import { identityKey } from '../src/daemon/grant-identity.js';
import { ACCOUNT } from './support/broker-parts.js';

const driver = { name: 'oauth2' } as Driver;
const deps = (login?: LoginView, hint?: string) => ({
  config: { getAccount: (n: string) => (n === 'w' ? ACCOUNT : undefined) },
  getDriver: () => ({ ...driver, ...(hint ? { reauthHint: () => hint } : {}) }) as Driver,
  pendingLogin: () => login,
});
const deviceLogin = { flow: 'device', user_code: 'ABCD-EFGH', verification_uri: 'https://a.example/device' } as unknown as LoginView;

describe('refusals', () => {
  it("reauth_required says why and how to log in again, or the driver's own way back", () => {
    const err = reauthError(deps(), 'w', 'the provider refused the refresh token');
    expect(err.code).toBe('reauth_required');
    expect(err.message).toBe('account "w" needs a new login: the provider refused the refresh token. Run `tokend login w`');
    expect(reauthError(deps(undefined, '`tokend import w`'), 'w', null).message).toBe(
      'account "w" needs a new login. Run `tokend import w`',
    );
  });

  it('a pending login turns reauth_required and "no grant yet" into login_pending with where to finish it', () => {
    for (const err of [
      reauthError(deps(deviceLogin), 'w', 'x'),
      noGrantError(deps(deviceLogin), 'w', ACCOUNT, driver),
      loginPendingError('w', deviceLogin),
    ]) {
      expect(err.code).toBe('login_pending');
      expect(err.message).toBe('account "w" is waiting for a login: enter the code ABCD-EFGH at https://a.example/device');
    }
  });

  it('an account without a grant is told to log in', () => {
    const err = noGrantError(deps(), 'w', ACCOUNT, driver);
    expect(err.code).toBe('reauth_required');
    expect(err.message).toMatch(/^account "w" has no grant yet: run `tokend login w`/);
  });

  it('the fleet mismatch names both identities and the two fixes', () => {
    const other = identityKey({ ...ACCOUNT, issuer: 'https://b.example' });
    const msg = mismatchMessage('w', { bound_to: other }, ACCOUNT);
    expect(msg).toContain('https://b.example');
    expect(msg).toContain('https://a.example');
    expect(msg).toContain('--replace-grant');
  });

  it('a store that is down is a 503 with the wait, and logged', () => {
    const logged: string[] = [];
    const log = { debug() {}, info() {}, warn: (msg: string) => void logged.push(msg), error() {} };
    const err = storeDownError(log, 'w', new Error('cannot reach the database'), 7);
    expect(err.code).toBe('upstream_unavailable');
    expect(err.message).toBe('account "w" cannot be refreshed now: cannot reach the database; try again in 7 s');
    expect(logged).toEqual(['the database is unavailable; the account cannot be refreshed now']);
  });
});
