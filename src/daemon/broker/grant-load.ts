/**
 * How the Broker's memory is filled from the store at start-up (docs/architecture.md, "The
 * Broker's parts"). The daemon answers before the grants are read: reading and checking 10 000
 * of them held its first answer back by a few hundred milliseconds. Until the whole list is
 * read, each account is read on its own the first time anything asks for it (a token request
 * right after start-up reads its grant and is answered as it would be later), with the same
 * checks; the whole list, read next, leaves such accounts as they are.
 */
import type { AccountConfig } from '../../protocol/api.js';
import { cacheKey } from '../cached-token.js';
import { boundJkt, identityKey, isBoundTo } from '../grant-identity.js';
import { isStoreUnavailable } from '../store/errors.js';
import { summarize, type GrantRecord, type GrantSummary } from '../store/types.js';
import type { FleetSync } from './fleet-sync.js';
import { storedTimes, type GrantMemory } from './grant-memory.js';
import type { Scheduler } from './schedule.js';

/** Grants read and checked in one turn of the event loop while the whole list is taken in. */
const GRANTS_PER_TURN = 1000;

export interface GrantLoadParts {
  m: GrantMemory;
  scheduler: Scheduler;
  fleet: FleetSync;
  /** Rule 8: revoke where it came from and drop (Broker.retire). */
  retire: (account: string, why: string) => Promise<unknown>;
  /** A daemon stopped during an import's proving refresh (Broker.importInterrupted). */
  importInterrupted: (g: GrantSummary) => Promise<void>;
}

/** What taking grants in leaves to do after them: bindings to record, interrupted imports to settle. */
interface Leftovers {
  unbound: Array<{ account: string; boundTo: string }>;
  interruptedImports: GrantSummary[];
}

export class GrantLoad {
  private done = false;
  private whole?: Promise<void>;
  /** Accounts read on their own before the whole list was: the whole list leaves them alone. */
  private readonly early = new Map<string, Promise<void>>();

  constructor(private readonly p: GrantLoadParts) {}

  /** Every grant in memory (once; later calls wait for the same read). */
  all(): Promise<void> {
    this.whole ??= this.loadAll();
    return this.whole;
  }

  /**
   * Before anything is done with an account: its grant in memory. Nothing to wait for once
   * the whole list is in (the hot path pays one test).
   */
  account(account: string): Promise<void> | undefined {
    if (this.done) return undefined;
    let p = this.early.get(account);
    if (!p) {
      const loading = this.loadOne(account);
      // A read that failed (a fleet's database down) is tried again by the next caller.
      loading.catch(() => {
        if (this.early.get(account) === loading) this.early.delete(account);
      });
      this.early.set(account, (p = loading));
    }
    return p;
  }

  private async loadOne(account: string): Promise<void> {
    const { m } = this.p;
    let stored: GrantRecord | undefined;
    try {
      stored = await m.deps.store.getGrant(account);
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      // A fleet's database down: nothing is in memory for the account yet, and the request goes
      // the way that says so (a 503); the next one reads it again.
      this.early.delete(account);
      return;
    }
    const cfg = m.deps.config.getAccount(account);
    if (!stored || !cfg) return;
    const left: Leftovers = { unbound: [], interruptedImports: [] };
    this.take(summarize(stored), cfg, left);
    await this.settle(left);
  }

  private async loadAll(): Promise<void> {
    const { m, scheduler, fleet } = this.p;
    try {
      const left: Leftovers = { unbound: [], interruptedImports: [] };
      let after: string | undefined;
      for (;;) {
        // A page a turn, the event loop free between them (10 000 rows at once held it for
        // ~100 ms); an account not taken in yet meanwhile is read on its own (account()).
        const page = await m.deps.store.listGrants({ after, limit: GRANTS_PER_TURN });
        for (const g of page) {
          const cfg = m.deps.config.getAccount(g.account);
          // Read on its own meanwhile: what the store held then, and what was done since, is in memory already.
          if (!cfg || this.early.has(g.account)) continue;
          this.early.set(g.account, Promise.resolve());
          this.take(g, cfg, left);
        }
        if (page.length < GRANTS_PER_TURN) break;
        after = page.at(-1)!.account;
        await new Promise((r) => setImmediate(r));
      }
      this.done = true;
      this.early.clear();
      await this.settle(left);
    } finally {
      scheduler.watchClock();
      fleet.listen();
    }
  }

  /** One grant into memory, with rule 8's check and its proactive refresh armed. */
  private take(g: GrantSummary, cfg: AccountConfig, left: Leftovers): void {
    const { m, scheduler, fleet } = this.p;
    m.seen.set(g.account, g.generation);
    const id = identityKey(cfg);
    // Grants from before bindings were recorded take the account's identity (all in one commit).
    // So do grants bound before the authorization and device endpoints joined the identity,
    // matched on the fields they were bound with (grant-identity.ts); a fleet's stay as they
    // are, for its daemons not yet upgraded.
    if (!g.bound_to || (g.bound_to !== id && !boundJkt(g.bound_to) && !m.deps.store.fleet && isBoundTo(g.bound_to, cfg))) {
      g.bound_to = id;
      left.unbound.push({ account: g.account, boundTo: id });
    }
    // Rule 8: a grant whose provider or client is not the account's any more is never
    // served or refreshed; it is revoked where it came from and dropped. A fleet's grant
    // is left alone: it is the other daemons' too, and this host's config is the odd one.
    if (!isBoundTo(g.bound_to, cfg)) {
      if (m.deps.store.fleet) fleet.logMismatch(g.account, g, cfg);
      else void this.p.retire(g.account, 'the account names another provider or client than the one that issued its grant');
      return;
    }
    // One string for all the grants of an identity, not a copy per row; a DPoP grant's names its key.
    if (!boundJkt(g.bound_to)) g.bound_to = id;
    m.grants.set(g.account, g);
    if (g.in_flight_since && g.in_flight_for === 'import' && !g.in_flight_by) {
      left.interruptedImports.push(g);
    } else if (g.in_flight_since && g.status === 'active' && !g.in_flight_by) {
      m.deps.log.warn('a refresh was interrupted when the daemon stopped; its refresh token may be spent', {
        account: g.account,
        since: new Date(g.in_flight_since).toISOString(),
      });
    }
    if (g.has_access_token && g.status === 'active') {
      m.storedTokens.add(g.account);
      scheduler.schedule(g.account, cacheKey(g.account), storedTimes(g));
    }
    if (g.status === 'active') scheduler.watchGrant(g.account, cfg, g);
  }

  private async settle(left: Leftovers): Promise<void> {
    if (left.unbound.length > 0) await this.p.m.deps.store.setBindings(left.unbound);
    for (const g of left.interruptedImports) await this.p.importInterrupted(g);
  }
}
