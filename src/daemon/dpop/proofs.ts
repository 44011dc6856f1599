/**
 * Proofs where the token is used (RFC 9449 §7): the proxy's, and the oracle's for apps that
 * call their API themselves (`POST /v1/dpop/proof`). The account's key is read from the store
 * once and kept in memory; a proof costs one ECDSA signature, no disk and no network.
 */
import type { AccountConfig } from '../../protocol/api.js';
import type { EventBus } from '../events.js';
import type { Store } from '../store/types.js';
import { dpopKeyMismatch } from './binding.js';
import { athOf, DPOP_KEY_SECRET, loadDpopKey, signProof, signProofFor, type DpopKey, type ProofClaims } from './key.js';
import { ProofPool } from './proof-pool.js';

export interface DpopProofsDeps {
  store: Pick<Store, 'getSecret'>;
  config: { getAccount(name: string): AccountConfig | undefined };
  /** Account writes and removals: a key held in memory goes with them (a move makes a new key). */
  events?: Pick<EventBus, 'subscribe'>;
  /** The binding of the account's grant as held in memory (its `bound_to`): the key it names. */
  grantBinding?: (account: string) => string | null | undefined;
  /** The proxy's proofs signed ahead on a worker thread (proof-pool.ts); without it, each is signed inline. */
  pool?: ProofPool;
}

/** The daemon's one instance (entry.ts; compose.ts makes its own for the tests), the grants' bindings read from the broker. */
export function dpopProofsOf(
  deps: Omit<DpopProofsDeps, 'grantBinding'> & { broker: { grantBinding(account: string): string | null | undefined } },
): DpopProofs {
  return new DpopProofs({
    store: deps.store,
    config: deps.config,
    events: deps.events,
    grantBinding: (account) => deps.broker.grantBinding(account),
    pool: new ProofPool(),
  });
}

/** The daemon's DPoP keys in memory, and the nonces resource servers gave (RFC 9449 §9), per host. */
export class DpopProofs {
  private readonly keys = new Map<string, Promise<DpopKey | undefined>>();
  /** The keys read so far, for proofs signed without waiting on anything (the proxy's hot path). */
  private readonly loaded = new Map<string, DpopKey>();
  private readonly nonces = new Map<string, string>();

  constructor(private readonly deps: DpopProofsDeps) {
    deps.events?.subscribe((ev) => {
      // An import may bring the key its tokens are bound to: the next proof reads it again.
      if (ev.type === 'account.changed' || ev.type === 'account.removed' || ev.type === 'token.refreshed') {
        this.keys.delete(ev.account);
        this.loaded.delete(ev.account);
        deps.pool?.dropAccount(ev.account);
      }
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
      const reading = this.deps.store.getSecret(account, DPOP_KEY_SECRET).then((s) => (s === undefined ? undefined : loadDpopKey(s)));
      key = reading;
      this.keys.set(account, reading);
      // A key not there yet (made at the account's first token request) or unreadable is read again next time.
      reading.then(
        (k) => {
          if (k === undefined) this.keys.delete(account);
          else if (this.keys.get(account) === reading) this.loaded.set(account, k);
        },
        () => this.keys.delete(account),
      );
    }
    return key;
  }

  /**
   * A proof by the account's key for one request; with `accessToken`, bound to it (`ath`).
   * Synchronous once the key is in memory; refused (reauth_required) when the account's grant
   * is bound to another key (dpop/binding.ts): its token never goes out with this one.
   */
  proof(account: string, claims: ProofClaims): string | Promise<string> {
    return this.withKey(account, (key) => signProof(key, claims));
  }

  /**
   * The proxy's proof for a request to `url` (already parsed: `htu` is its origin and path,
   * §4.2) with the host's last nonce (§9); as `proof`, synchronous once the key is in memory.
   */
  proofForUrl(account: string, htm: string, url: URL, accessToken: string): string | Promise<string> {
    return this.withKey(account, (key) => {
      const htu = url.origin + url.pathname;
      const nonce = this.nonces.get(url.host);
      // A nonce is the server's of the moment (§9): such proofs are never signed ahead.
      const ready = nonce === undefined ? this.deps.pool?.take(account, key, htm, htu, athOf(accessToken)) : undefined;
      return ready ?? signProofFor(key, htm, htu, accessToken, nonce);
    });
  }

  private withKey(account: string, signWith: (key: DpopKey) => string): string | Promise<string> {
    const key = this.loaded.get(account);
    if (key) return this.checked(account, key, signWith);
    return this.keyOf(account).then((k) => {
      if (!k) throw new Error(`account "${account}" holds no DPoP key yet`);
      return this.checked(account, k, signWith);
    });
  }

  private checked(account: string, key: DpopKey, signWith: (key: DpopKey) => string): string {
    const wrongKey = dpopKeyMismatch(account, this.deps.grantBinding?.(account), key.jkt);
    if (wrongKey) throw wrongKey;
    return signWith(key);
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
