/**
 * The proxy's proofs signed ahead on a worker thread (src/daemon/dpop/proof-pool.ts): each is
 * handed out once, only while young, and never for another key or token than it was signed for.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { athOf, DPOP_KEY_SECRET, generateDpopKey, loadDpopKey, type DpopKey } from '../src/daemon/dpop/key.js';
import { POOL_MAX_AGE_MS, ProofPool } from '../src/daemon/dpop/proof-pool.js';
import { DpopProofs } from '../src/daemon/dpop/proofs.js';
import { EventBus } from '../src/daemon/events.js';

const HTU = 'https://api.example.test/v1/things';
const TOKEN = 'access-token-1';

/** The claims of a proof, after checking its signature with the JWK of its header. */
function checked(proof: string, key: DpopKey): Record<string, unknown> {
  const [h, p, sig] = proof.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  expect(header).toEqual({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicJwk });
  const pub = createPublicKey({ key: header.jwk, format: 'jwk' });
  expect(verify('sha256', Buffer.from(`${h}.${p}`), { key: pub, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'))).toBe(true);
  return JSON.parse(Buffer.from(p, 'base64url').toString());
}

/** Ask until the worker has delivered a batch for the target (each ask counts as demand). */
async function filled(pool: ProofPool, account: string, key: DpopKey, htu = HTU): Promise<void> {
  pool.take(account, key, 'GET', htu, athOf(TOKEN));
  while (pool.ready(key, 'GET', htu, athOf(TOKEN)) === 0) await new Promise((r) => setTimeout(r, 5));
}

describe('proofs signed ahead (proof pool)', () => {
  const pools: ProofPool[] = [];
  const poolAt = (now?: () => number) => {
    const pool = new ProofPool(now);
    pools.push(pool);
    return pool;
  };
  afterEach(async () => {
    for (const p of pools.splice(0)) await p.close();
  });

  it('hands out valid proofs for the target, each once: no jti twice', async () => {
    const key = await loadDpopKey(await generateDpopKey());
    const pool = poolAt();
    const jtis = new Set<string>();
    let taken = 0;
    for (let round = 0; round < 5; round++) {
      await filled(pool, 'svc', key);
      for (let p = pool.take('svc', key, 'GET', HTU, athOf(TOKEN)); p !== undefined; p = pool.take('svc', key, 'GET', HTU, athOf(TOKEN))) {
        const claims = checked(p, key);
        expect(claims).toMatchObject({ htm: 'GET', htu: HTU, ath: createHash('sha256').update(TOKEN).digest('base64url') });
        expect(Math.abs((claims.iat as number) - Date.now() / 1000)).toBeLessThan(5);
        jtis.add(claims.jti as string);
        taken++;
        if (pool.ready(key, 'GET', HTU, athOf(TOKEN)) === 0) break;
      }
    }
    expect(taken).toBeGreaterThan(5);
    expect(jtis.size).toBe(taken);
  });

  it('hands out nothing signed for another key, token, method or URL', async () => {
    const key = await loadDpopKey(await generateDpopKey());
    const other = await loadDpopKey(await generateDpopKey());
    const pool = poolAt();
    await filled(pool, 'svc', key);
    expect(pool.take('svc', other, 'GET', HTU, athOf(TOKEN))).toBeUndefined();
    expect(pool.take('svc', key, 'GET', HTU, athOf('another-token'))).toBeUndefined();
    expect(pool.take('svc', key, 'POST', HTU, athOf(TOKEN))).toBeUndefined();
    expect(pool.take('svc', key, 'GET', `${HTU}/2`, athOf(TOKEN))).toBeUndefined();
    expect(pool.ready(key, 'GET', HTU, athOf(TOKEN))).toBeGreaterThan(0);
  });

  it('drops a proof older than the window instead of handing it out', async () => {
    let now = Date.now();
    const key = await loadDpopKey(await generateDpopKey());
    const pool = poolAt(() => now);
    await filled(pool, 'svc', key);
    now += POOL_MAX_AGE_MS + 1;
    expect(pool.take('svc', key, 'GET', HTU, athOf(TOKEN))).toBeUndefined();
    expect(pool.ready(key, 'GET', HTU, athOf(TOKEN))).toBe(0);
  });

  it('keeps no batch asked before a drop, even when the same target is asked for again', async () => {
    let now = Date.now();
    const key = await loadDpopKey(await generateDpopKey());
    const pool = poolAt(() => now);
    pool.take('svc', key, 'GET', HTU, athOf(TOKEN)); // a batch asked at `now`
    pool.dropAccount('svc');
    now += POOL_MAX_AGE_MS - 500;
    await filled(pool, 'svc', key); // the same target again: a second batch, asked later
    // The worker answers in order: once a third target's batch is back, the first two are too.
    await filled(pool, 'svc', key, `${HTU}/3`);
    // Only the second batch was kept (the first, stamped with the later ask, would be handed
    // out past the window)...
    expect(pool.ready(key, 'GET', HTU, athOf(TOKEN))).toBe(pool.ready(key, 'GET', `${HTU}/3`, athOf(TOKEN)));
    // ...and its proofs are still young at the end of its window.
    now += 400;
    expect(pool.take('svc', key, 'GET', HTU, athOf(TOKEN))).toBeDefined();
  });

  it("drops the account's pooled proofs when the account changes (a new key, a new token)", async () => {
    const events = new EventBus();
    const pool = poolAt();
    let secret = await generateDpopKey();
    const proofs = new DpopProofs({
      store: { getSecret: async (_account: string, name: string) => (name === DPOP_KEY_SECRET ? secret : undefined) },
      config: { getAccount: () => ({ dpop: true }) as never },
      events,
      pool,
    });
    const url = new URL(HTU);
    const first = await loadDpopKey(secret);
    await proofs.proofForUrl('svc', 'GET', url, TOKEN);
    await filled(pool, 'svc', first);
    expect(pool.ready(first, 'GET', HTU, athOf(TOKEN))).toBeGreaterThan(0);

    secret = await generateDpopKey();
    events.emit('account.changed', 'svc', { fields: ['dpop'] });
    expect(pool.ready(first, 'GET', HTU, athOf(TOKEN))).toBe(0);
    const second = await loadDpopKey(secret);
    for (let i = 0; i < 20; i++) {
      const proof = await proofs.proofForUrl('svc', 'GET', url, TOKEN);
      checked(proof, second); // signed by the new key, never one pooled for the old
    }
  });

  it('a worker that dies is not restarted: nothing pooled is handed out, every proof is signed inline', async () => {
    const pool = poolAt();
    const secret = await generateDpopKey();
    const key = await loadDpopKey(secret);
    const proofs = new DpopProofs({
      store: { getSecret: async (_account: string, name: string) => (name === DPOP_KEY_SECRET ? secret : undefined) },
      config: { getAccount: () => ({ dpop: true }) as never },
      pool,
    });
    const url = new URL(HTU);
    await proofs.proofForUrl('svc', 'GET', url, TOKEN);
    await filled(pool, 'svc', key);
    // The worker killed under the pool, as a crash of its thread would end it.
    const worker = (pool as unknown as { worker: Worker }).worker;
    await worker.terminate();
    await new Promise((r) => setImmediate(r)); // its 'exit' event
    expect(pool.ready(key, 'GET', HTU, athOf(TOKEN))).toBe(0);
    expect(pool.take('svc', key, 'GET', HTU, athOf(TOKEN))).toBeUndefined();
    const jtis = new Set<string>();
    for (let i = 0; i < 20; i++) jtis.add(checked(await proofs.proofForUrl('svc', 'GET', url, TOKEN), key).jti as string);
    expect(jtis.size).toBe(20);
    expect((pool as unknown as { worker: Worker | undefined }).worker).toBeUndefined();
  });
});
