/**
 * Proofs where the token is used (RFC 9449 §7): the proxy's, and the oracle's for apps that
 * call their API themselves (`POST /v1/dpop/proof`). The account's key is read from the store
 * once and kept in memory; a proof costs one ECDSA signature, no disk and no network.
 */
import type { AccountConfig } from '../../protocol/api.js';
import type { EventBus } from '../events.js';
import type { Store } from '../store/types.js';
import { DPOP_KEY_SECRET, loadDpopKey, signProof, type DpopKey, type ProofClaims } from './key.js';

export interface DpopProofsDeps {
  store: Pick<Store, 'getSecret'>;
  config: { getAccount(name: string): AccountConfig | undefined };
  /** Account writes and removals: a key held in memory goes with them (a move makes a new key). */
  events?: Pick<EventBus, 'subscribe'>;
}

/** The daemon's DPoP keys in memory, and the nonces resource servers gave (RFC 9449 §9), per host. */
export class DpopProofs {
  private readonly keys = new Map<string, Promise<DpopKey | undefined>>();
  private readonly nonces = new Map<string, string>();

  constructor(private readonly deps: DpopProofsDeps) {
    deps.events?.subscribe((ev) => {
      // An import may bring the key its tokens are bound to: the next proof reads it again.
      if (ev.type === 'account.changed' || ev.type === 'account.removed' || ev.type === 'token.refreshed') this.keys.delete(ev.account);
    });
  }

  /** Is the account a DPoP one (its tokens go out as `Authorization: DPoP`, with a proof)? */
  uses(account: string): boolean {
    return this.deps.config.getAccount(account)?.dpop === true;
  }

  /** The account's key, from memory or read once from the store; undefined when it has none. */
  keyOf(account: string): Promise<DpopKey | undefined> {
    let key = this.keys.get(account);
    if (!key) {
      key = this.deps.store.getSecret(account, DPOP_KEY_SECRET).then((s) => (s === undefined ? undefined : loadDpopKey(s)));
      this.keys.set(account, key);
      // A key not there yet (made at the account's first token request) or unreadable is read again next time.
      key.then(
        (k) => k === undefined && this.keys.delete(account),
        () => this.keys.delete(account),
      );
    }
    return key;
  }

  /** A proof by the account's key for one request; with `accessToken`, bound to it (`ath`). */
  async proof(account: string, claims: ProofClaims): Promise<string> {
    const key = await this.keyOf(account);
    if (!key) throw new Error(`account "${account}" holds no DPoP key yet`);
    return signProof(key, claims);
  }

  /** The nonce a resource server last gave for `host` (RFC 9449 §9), for the proxy's next proof there. */
  nonceFor(host: string): string | undefined {
    return this.nonces.get(host);
  }

  /** Remember a `DPoP-Nonce` a resource server answered with (§9: use it until it gives another). */
  rememberNonce(host: string, nonce: string): void {
    if (this.nonces.size >= 1000 && !this.nonces.has(host)) this.nonces.delete(this.nonces.keys().next().value!);
    this.nonces.set(host, nonce);
  }
}
