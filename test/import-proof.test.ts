/** An import is proven before it replaces anything (src/daemon/broker/import-proof.ts; docs/api.md, "Imports are proven first"). */
import { describe, expect, it } from 'vitest';
import { checkImport, proveImport } from '../src/daemon/broker/import-proof.js';
import { DriverError } from '../src/daemon/drivers/driver.js';
import { ApiError } from '../src/daemon/errors.js';
import { identityKey } from '../src/daemon/grant-identity.js';
import type { ImportAttempt, ImportedTokens } from '../src/daemon/imports.js';
import { ACCOUNT, brokerParts } from './support/broker-parts.js';

function attempt(p: ReturnType<typeof brokerParts>, t: ImportedTokens): ImportAttempt {
  return { account: 'w', cfg: ACCOUNT, driver: p.driver, t, imported: { client_id: 'imported-client' }, boundTo: identityKey(ACCOUNT) };
}

describe('import proof', () => {
  it('refreshes the imported refresh token once on the side, marked as an import, leaving the grant untouched', async () => {
    const p = brokerParts();
    await p.grant('rt-own');
    let seen: unknown;
    p.driver.onCall = () => (seen = { ...p.store.grants.get('w')! });
    const tokens = await proveImport(p.m, attempt(p, { refresh_token: 'rt-imported' }));
    expect(p.driver.calls.map((c) => [c.kind, c.token, c.ctx.secret('client_id')])).toEqual([
      ['refresh', 'rt-imported', 'imported-client'],
    ]);
    expect(seen).toMatchObject({ refresh_token: 'rt-own', in_flight_since: p.clock.t, in_flight_for: 'import' });
    expect(tokens).toMatchObject({ access_token: 'at-1', refresh_token: 'rt-1' });
    // Committing is the front's (one write with the grant): the stored grant still holds its own token.
    expect(p.store.grants.get('w')!.refresh_token).toBe('rt-own');
  });

  it('a refused import is 400 import_refused, the mark is ended, and the account is unchanged', async () => {
    const p = brokerParts();
    await p.grant('rt-own');
    p.driver.refreshAnswers.push(() => {
      throw new DriverError('invalid_grant', 'unknown token', { oauthError: 'invalid_grant' });
    });
    const err = await proveImport(p.m, attempt(p, { refresh_token: 'rt-imported' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe('import_refused');
    expect((err as ApiError).message).not.toContain('rt-imported');
    expect(p.store.grants.get('w')).toMatchObject({
      refresh_token: 'rt-own',
      in_flight_since: null,
      in_flight_for: null,
      status: 'active',
    });
    expect(p.store.journal.map((j) => j.op)).toEqual(['replaceGrant', 'markImport', 'endImport']);
  });

  it('an expired access token without a refresh token is refused before any call', async () => {
    const p = brokerParts();
    const err = await proveImport(p.m, attempt(p, { access_token: 'at-old' })).catch((e: unknown) => e);
    expect((err as ApiError).code).toBe('import_refused');
    expect(p.driver.calls).toEqual([]);
  });

  it('a still-valid access token is checked with the provider (spending nothing), or taken at its word where the driver has no check', async () => {
    const p = brokerParts();
    const t = { access_token: 'at-given', refresh_token: 'rt-given', expires_at: p.clock.t + 3_600_000 };
    expect(await checkImport(p.m, attempt(p, t))).toMatchObject({
      access_token: 'at-given',
      refresh_token: 'rt-given',
      expires_at: t.expires_at,
    });
    const checked: string[] = [];
    p.driver.checkAccessToken = async (_ctx, token) => void checked.push(token);
    await checkImport(p.m, attempt(p, t));
    expect(checked).toEqual(['at-given']);
    expect(p.driver.calls).toEqual([]);
    // Refused by the check: the refresh token that came along proves it instead.
    p.driver.checkAccessToken = async () => {
      throw new DriverError('invalid_grant', 'token revoked');
    };
    expect(await checkImport(p.m, attempt(p, t))).toMatchObject({ access_token: 'at-1', refresh_token: 'rt-1' });
    expect(p.driver.calls.map((c) => c.token)).toEqual(['rt-given']);
  });
});
