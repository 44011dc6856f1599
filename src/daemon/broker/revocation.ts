/**
 * A grant and the identity that issued it (rule 8): a grant stored before identities were
 * recorded is adopted by the account's current one; a grant that is not the account's any
 * more is revoked at the provider that issued it (with that provider's own config) and dropped.
 */
import type { AccountConfig } from '../../protocol/api.js';
import { cacheKey } from '../cached-token.js';
import { configForIdentity, describeIdentity, identityKey, isBoundTo, parseIdentity } from '../grant-identity.js';
import type { GrantRecord, GrantSummary } from '../store/types.js';
import type { AccountLanes, GrantMemory } from './grant-memory.js';
import type { FleetSync } from './fleet-sync.js';

export class Revocation {
  constructor(
    private readonly m: GrantMemory,
    private readonly fleet: Pick<FleetSync, 'dropPending'>,
    private readonly lanes: Pick<AccountLanes, 'forget'>,
  ) {}

  /**
   * Is `g` the grant of the account as configured now? A grant stored before identities
   * were recorded is adopted by the current identity (there is nothing else to go by).
   */
  async adoptOrKeep(g: GrantRecord | GrantSummary, cfg: AccountConfig): Promise<boolean> {
    const id = identityKey(cfg);
    if (g.bound_to === null) {
      await this.m.deps.store.setBindings([{ account: g.account, boundTo: id }]);
      g.bound_to = id;
      return true;
    }
    return isBoundTo(g.bound_to, cfg);
  }

  /**
   * Revoke the stored grant at the provider that issued it, then delete it and forget the
   * account's tokens. Runs inside the account's queue and the grant's lock. Revocation is
   * best effort (RFC 7009 §2.2.1): the grant is dropped either way, and the log says whether
   * it was revoked.
   */
  async revokeAndDrop(account: string, why: string): Promise<{ revoked: boolean }> {
    const { m } = this;
    const stored = await m.deps.store.getGrant(account);
    const grant = stored ?? m.grants.get(account);
    const current = m.deps.config.getAccount(account);
    // The grant's own provider: from its recorded identity, else (an old grant) the account's.
    const issuer = grant?.bound_to ? parseIdentity(grant.bound_to) : undefined;
    const ours = current && (!grant?.bound_to || isBoundTo(grant.bound_to, current));
    const cfg = ours ? current : issuer ? configForIdentity(issuer) : undefined;
    let revoked = false;
    // Memory holds no token: only a grant still in the store can be revoked.
    const token = stored?.refresh_token ?? stored?.access_token ?? m.cache.get(cacheKey(account))?.access_token;
    const driver = cfg ? m.deps.getDriver(cfg.driver) : undefined;
    if (cfg && driver?.revoke && token) {
      try {
        const secrets = await m.deps.store.getSecrets(account);
        await m.withTimeout((signal) =>
          driver.revoke!(
            m.context({ account, config: cfg, signal, secrets, stored }),
            token,
            stored?.refresh_token ? 'refresh_token' : 'access_token',
          ),
        );
        revoked = true;
      } catch (err) {
        m.deps.log.warn('revocation at the provider failed; the grant is forgotten locally', {
          account,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    await m.deps.store.deleteGrant(account);
    m.seen.delete(account);
    this.fleet.dropPending(account);
    this.lanes.forget(account);
    if (grant && why !== 'logout') {
      m.deps.log.warn('grant dropped: it belongs to another provider or client', {
        account,
        issued_by: issuer ? describeIdentity(issuer) : undefined,
        revoked,
        reason: why,
      });
    }
    return { revoked };
  }
}
