/**
 * Who a grant belongs to (rule 8, docs/architecture.md): the driver, provider and client that issued
 * it, and every endpoint its tokens are sent to. A refresh token, an access token or a
 * client secret is only ever sent where this identity says; when an account's identity
 * changes, its grant and secrets do not follow it.
 */
import { GRANT_IDENTITY_FIELDS, type AccountConfig } from '../protocol/api.js';

/** The identity fields of an account, in a fixed order; absent fields are left out. */
export type GrantIdentity = Partial<Record<(typeof GRANT_IDENTITY_FIELDS)[number] | 'username' | 'dpop' | 'jkt', string>>;

/**
 * The identity of the grants an account's config would obtain. `username` belongs to it
 * only where it names the user whose password obtains the grant; elsewhere it is just what
 * a credential helper presents.
 */
export function identityOf(cfg: AccountConfig): GrantIdentity {
  const id: GrantIdentity = {};
  for (const field of GRANT_IDENTITY_FIELDS) {
    const v = cfg[field];
    if (typeof v === 'string' && v) id[field] = v;
    // managed_user_id is a number: another managed user is another grant.
    else if (typeof v === 'number') id[field] = String(v);
  }
  if (cfg.flow === 'password' && cfg.username) id.username = cfg.username;
  // RFC 9449 §1: a DPoP-bound grant is only of use with the key it is bound to, which is
  // the account's (dropped with its other secrets when the identity moves): on or off is
  // another grant.
  if (cfg.dpop) id.dpop = 'on';
  return id;
}

/**
 * Bindings written since the authorization and device authorization endpoints joined the
 * identity carry `"v":2` (a number: parseIdentity leaves it out). A binding without it was
 * written before, on the fields in LEGACY_FIELDS only.
 */
const BINDING_VERSION = 2;
const LEGACY_FIELDS = [
  'driver',
  'issuer',
  'token_endpoint',
  'revocation_endpoint',
  'client_id',
  'base_url',
  'managed_user_id',
  'username',
] as const;

/** The identity as the canonical string stored with a grant (`grants.bound_to`). */
export function identityKey(cfg: AccountConfig): string {
  if (!Object.isFrozen(cfg)) return keyOf(cfg);
  // config.json's accounts are frozen and shared by accounts written alike (config-file.ts):
  // one key, computed once, for the thousands of grants of one identity.
  let key = frozenKeys.get(cfg);
  if (key === undefined) frozenKeys.set(cfg, (key = keyOf(cfg)));
  return key;
}
const frozenKeys = new WeakMap<AccountConfig, string>();
const keyOf = (cfg: AccountConfig) => JSON.stringify({ v: BINDING_VERSION, ...identityOf(cfg) });

/**
 * The binding of a grant obtained with a DPoP key (RFC 9449 §6: its tokens carry `cnf.jkt`):
 * the account's identity and, last, the key's thumbprint `jkt`. A grant is only of use with
 * the key it names; any other account's binding is its identity alone.
 */
export function bindingKey(cfg: AccountConfig, jkt: string | undefined): string {
  if (!cfg.dpop || !jkt) return identityKey(cfg);
  return JSON.stringify({ v: BINDING_VERSION, ...identityOf(cfg), jkt });
}

/**
 * The DPoP key thumbprint a binding names; undefined for one that names none: not DPoP, or
 * `"dpop":"on"` as written before keys were named (bound to the account's current key).
 * Read without parsing, per proxied request: `jkt` is a base64url string, written last.
 */
export function boundJkt(bound: string | null | undefined): string | undefined {
  if (!bound?.endsWith('"}')) return undefined;
  const at = bound.lastIndexOf(',"jkt":"');
  return at < 0 ? undefined : bound.slice(at + 8, -2);
}

/**
 * Does `bound` (a grant's `bound_to`, a login's identity) name the identity of `cfg`? A
 * binding written before the endpoints joined the identity is matched on the fields it was
 * bound with: upgrading drops no grant (the github, microsoft and bitbucket presets wrote
 * those endpoints into config.json long before). The key a binding names is not part of the
 * account's identity: whether it is the account's key is checked where the grant is used.
 */
export function isBoundTo(bound: string, cfg: AccountConfig): boolean {
  if (bound === identityKey(cfg)) return true;
  const jkt = boundJkt(bound);
  if (jkt !== undefined) return bound === bindingKey(cfg, jkt);
  const legacy = legacyIdentity(bound);
  if (!legacy) return false;
  const now = identityOf(cfg);
  return LEGACY_FIELDS.every((f) => legacy[f] === now[f]);
}

/** The identity a binding of before BINDING_VERSION records; undefined for any other string. */
export function legacyIdentity(bound: string): GrantIdentity | undefined {
  if (!bound.startsWith('{') || bound.startsWith('{"v":')) return undefined;
  return parseIdentity(bound);
}

/** Parse a stored identity; undefined when it is not one. */
export function parseIdentity(key: string): GrantIdentity | undefined {
  try {
    const v = JSON.parse(key) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
    const out: GrantIdentity = {};
    for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k as keyof GrantIdentity] = val;
    return out;
  } catch {
    return undefined;
  }
}

/** The identity fields that differ between two identities, for messages. */
export function identityChanges(before: GrantIdentity, after: GrantIdentity): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)] as Array<keyof GrantIdentity>);
  // The key a grant names is not a field of the config (the account's key is checked apart).
  return [...keys].filter((k) => k !== 'jkt' && before[k] !== after[k]);
}

/** "issuer https://a.example, client cli": who issued a grant, for messages (never a secret). */
export function describeIdentity(id: GrantIdentity): string {
  const where = id.issuer
    ? `issuer ${id.issuer}`
    : id.token_endpoint
      ? `token endpoint ${id.token_endpoint}`
      : `driver ${id.driver ?? 'oauth2'}`;
  return `${where}, client ${id.client_id ?? '?'}`;
}

/**
 * The smallest account config that reaches the provider of `id` again: used to revoke a
 * grant at the provider that issued it after the account has moved elsewhere.
 */
export function configForIdentity(id: GrantIdentity): AccountConfig {
  return {
    driver: id.driver ?? 'oauth2',
    client_id: id.client_id ?? '',
    scopes: [],
    hosts: [],
    ...(id.issuer ? { issuer: id.issuer } : {}),
    ...(id.token_endpoint ? { token_endpoint: id.token_endpoint } : {}),
    ...(id.revocation_endpoint ? { revocation_endpoint: id.revocation_endpoint } : {}),
    ...(id.base_url ? { base_url: id.base_url } : {}),
    ...(id.managed_user_id ? { managed_user_id: Number(id.managed_user_id) } : {}),
    ...(id.username ? { username: id.username, flow: 'password' as const } : {}),
  };
}
