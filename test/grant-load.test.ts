/** How the Broker's memory is filled at start-up (src/daemon/broker/grant-load.ts). */
import { describe, expect, it } from 'vitest';
import { GrantLoad } from '../src/daemon/broker/grant-load.js';
import type { GrantSummary } from '../src/daemon/store/types.js';
import { brokerParts } from './support/broker-parts.js';

function grantLoad(p: ReturnType<typeof brokerParts>) {
  const retired: string[] = [];
  const interrupted: GrantSummary[] = [];
  const load = new GrantLoad({
    m: p.m,
    scheduler: p.scheduler,
    fleet: p.fleet,
    retire: async (account) => void retired.push(account),
    importInterrupted: async (g) => void interrupted.push(g),
  });
  return { load, retired, interrupted };
}

describe('GrantLoad', () => {
  it('reads an account asked for before the whole list on its own, once however many ask, and the whole read leaves it alone', async () => {
    const p = brokerParts();
    await p.grant('rt-0', { access_token: 'at-0', expires_at: p.clock.t + 3_600_000 });
    const { load } = grantLoad(p);
    let reads = 0;
    const getGrant = p.store.getGrant.bind(p.store);
    p.store.getGrant = (account) => (reads++, getGrant(account));
    await Promise.all(Array.from({ length: 16 }, () => load.account('w')));
    expect(reads).toBe(1);
    expect(p.m.grants.get('w')?.generation).toBe(1);
    expect(p.m.storedTokens.has('w')).toBe(true);
    // Changed in memory since (a refresh would do this): the whole read does not put the older row back.
    p.m.grants.set('w', { ...p.m.grants.get('w')!, generation: 7 });
    await load.all();
    expect(p.m.grants.get('w')?.generation).toBe(7);
    expect(load.account('w')).toBeUndefined(); // nothing to wait for any more
  });

  it('while the database is down, an account read on its own stays unread (the request says why) and the next caller reads it again', async () => {
    const p = brokerParts();
    await p.grant('rt-0', { access_token: 'at-0' });
    const { load } = grantLoad(p);
    p.store.down = true;
    await load.account('w');
    expect(p.m.grants.has('w')).toBe(false);
    p.store.down = false;
    await load.account('w');
    expect(p.m.grants.get('w')?.generation).toBe(1);
  });

  it('takes the whole list in, rule 8 checked: a grant of another identity is retired, never kept', async () => {
    const p = brokerParts();
    await p.grant('rt-0', { access_token: 'at-0' });
    p.accounts.set('moved', { ...p.accounts.get('w')!, issuer: 'https://b.example' });
    await p.store.replaceGrant('moved', {
      refresh_token: 'rt-m',
      bound_to: JSON.stringify({ v: 2, driver: 'oauth2', issuer: 'https://a.example', client_id: 'cli' }),
    });
    const { load, retired } = grantLoad(p);
    await load.all();
    expect([...p.m.grants.keys()]).toEqual(['w']);
    expect(retired).toEqual(['moved']);
  });
});
