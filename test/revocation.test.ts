/** A grant and the identity that issued it (src/daemon/broker/revocation.ts, rule 8; RFC 7009). */
import { describe, expect, it } from 'vitest';
import { identityKey } from '../src/daemon/grant-identity.js';
import { ACCOUNT, brokerParts } from './support/broker-parts.js';

describe('Revocation', () => {
  it('binds a grant stored before identities were recorded to the account as configured now', async () => {
    const { revocation, store, grant } = brokerParts();
    await grant('rt-0', { bound_to: undefined as unknown as string });
    store.grants.get('w')!.bound_to = null;
    expect(await revocation.adoptOrKeep(store.grants.get('w')!, ACCOUNT)).toBe(true);
    expect(store.grants.get('w')!.bound_to).toBe(identityKey(ACCOUNT));
  });

  it("keeps the account's own grant, and not another provider's", async () => {
    const { revocation, grant } = brokerParts();
    const g = await grant('rt-0');
    expect(await revocation.adoptOrKeep(g, ACCOUNT)).toBe(true);
    expect(await revocation.adoptOrKeep(g, { ...ACCOUNT, issuer: 'https://b.example' })).toBe(false);
  });

  it("revokes the refresh token at the provider that issued it, with that provider's config, then drops the grant", async () => {
    const { revocation, store, driver, m, grant, accounts, forgotten, logs } = brokerParts();
    m.remember('w', await grant('rt-0', { access_token: 'at-0' }));
    await store.putSecret('w', 'client_secret', 'cs-a');
    // The account moved to another issuer since its grant was issued.
    accounts.set('w', { ...ACCOUNT, issuer: 'https://b.example' });
    expect(await revocation.revokeAndDrop('w', 'the account names another provider')).toEqual({ revoked: true });
    expect(driver.calls.map((c) => [c.kind, c.token, c.ctx.config.issuer, c.ctx.clientSecret])).toEqual([
      ['revoke', 'rt-0', 'https://a.example', 'cs-a'],
    ]);
    expect(store.grants.has('w')).toBe(false);
    expect(m.seen.has('w')).toBe(false);
    expect(forgotten).toEqual(['w']);
    expect(logs.at(-1)).toMatchObject({
      level: 'warn',
      msg: 'grant dropped: it belongs to another provider or client',
      fields: { revoked: true },
    });
    expect(JSON.stringify(logs)).not.toContain('rt-0');
  });

  it('drops the grant even when the provider cannot revoke it, and says so', async () => {
    const { revocation, store, driver, grant, logs } = brokerParts();
    await grant('rt-0');
    driver.revoke = async () => {
      throw new Error('HTTP 500');
    };
    expect(await revocation.revokeAndDrop('w', 'logout')).toEqual({ revoked: false });
    expect(store.grants.has('w')).toBe(false);
    expect(logs.map((l) => l.msg)).toEqual(['revocation at the provider failed; the grant is forgotten locally']);
  });
});
