/** A DPoP grant's binding names its key (RFC 9449 §6) without changing the account's identity (grant-identity.ts). */
import { describe, expect, it } from 'vitest';
import type { AccountConfig } from '../src/protocol/api.js';
import { bindingKey, boundJkt, identityChanges, identityKey, isBoundTo, parseIdentity } from '../src/daemon/grant-identity.js';

const cfg: AccountConfig = { driver: 'oauth2', issuer: 'https://id.example', client_id: 'cli', scopes: [], hosts: [], dpop: true };
const JKT = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs';

describe('bindingKey and boundJkt', () => {
  it('a DPoP account’s binding names the key; it is the account’s identity all the same', () => {
    const bound = bindingKey(cfg, JKT);
    expect(JSON.parse(bound)).toMatchObject({ v: 2, dpop: 'on', jkt: JKT });
    expect(boundJkt(bound)).toBe(JKT);
    expect(isBoundTo(bound, cfg)).toBe(true);
    // Not the identity of the account with DPoP off, nor of another client.
    expect(isBoundTo(bound, { ...cfg, dpop: undefined })).toBe(false);
    expect(isBoundTo(bound, { ...cfg, client_id: 'other' })).toBe(false);
    expect(identityChanges(parseIdentity(bound)!, parseIdentity(identityKey(cfg))!)).toEqual([]);
  });

  it('names no key for a binding of before ("dpop":"on"), an account without DPoP, or no key', () => {
    expect(boundJkt(identityKey(cfg))).toBeUndefined();
    expect(bindingKey(cfg, undefined)).toBe(identityKey(cfg));
    expect(bindingKey({ ...cfg, dpop: undefined }, JKT)).toBe(identityKey({ ...cfg, dpop: undefined }));
    expect(boundJkt(null)).toBeUndefined();
    // A field value that spells a jkt member is not one (JSON escapes its quotes).
    expect(boundJkt(identityKey({ ...cfg, flow: 'password', username: ',"jkt":"x"' }))).toBeUndefined();
  });
});
