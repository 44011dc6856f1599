/**
 * Proofs signed ahead, off the proxy's thread (RFC 9449 §4): for a hot request target (the
 * account's key, `htm`, `htu`, the token), a worker thread of the daemon signs a small batch
 * of proofs before they are asked for, and the proxy takes one synchronously instead of
 * spending an ECDSA signature on its own thread. Each proof is taken once (its `jti` is its
 * own: a resource server's replay cache refuses a second use, §11.1), and only while it is
 * young (`iat`, §11.1: servers accept proofs for a short window). A proof with a nonce (§9)
 * is never signed ahead: the nonce is only known when the server gives it.
 *
 * The private key goes to the worker as a KeyObject through postMessage: a thread of this
 * process, with this process's memory; it is never written, logged or sent elsewhere.
 */
import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** A proof older than this is not handed out (RFC 9449 §11.1: resource servers accept a few seconds). */
export const POOL_MAX_AGE_MS = 2000;
/** The fewest and the most proofs signed ahead at once for one target, and the most targets kept. */
const MIN_BATCH = 16;
const MAX_BATCH = 256;
const MAX_TARGETS = 32;

/** What the pool needs of a loaded key (dpop/key.ts's DpopKey). */
export interface PoolKey {
  readonly jkt: string;
  readonly privateKey: KeyObject;
  readonly encodedHeader: string;
}

interface Target {
  account: string;
  /**
   * Proofs ready, oldest first, with when each one's batch was asked for (ms, this thread's
   * clock): no later than its signature, so a proof is never older than its age here says.
   */
  proofs: string[];
  signedAt: number[];
  askedAt: number;
  /** Proofs asked for since the last batch was requested: the next batch's size. */
  demand: number;
  /** The batch asked for and not yet back (its number), or 0: a batch that comes back for another is not kept. */
  pending: number;
}

type Job = { type: 'sign'; target: string; batch: number; keyId: string; htm: string; htu: string; ath: string; count: number };
type Done = { target: string; batch: number; proofs: string[] } | { error: string };

/**
 * The worker's code: the payload as dpop/key.ts's signProofFor writes it (less the nonce),
 * a `jti` of 128 random bits each, the signature ES256 as R || S (RFC 7518 §3.4).
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { sign, randomFillSync } = require('node:crypto');
const keys = new Map();
const jtis = Buffer.alloc(16 * ${MAX_BATCH});
parentPort.on('message', (m) => {
  if (m.type === 'key') return void keys.set(m.keyId, m);
  if (m.type === 'drop') return void keys.delete(m.keyId);
  const key = keys.get(m.keyId);
  if (!key) return parentPort.postMessage({ target: m.target, batch: m.batch, proofs: [] });
  try {
    const now = Date.now();
    const tail = ',"htm":' + JSON.stringify(m.htm) + ',"htu":' + JSON.stringify(m.htu) + ',"iat":' + Math.floor(now / 1000) + ',"ath":"' + m.ath + '"}';
    const proofs = [];
    randomFillSync(jtis, 0, 16 * m.count);
    for (let i = 0; i < m.count; i++) {
      const payload = '{"jti":"' + jtis.toString('base64url', i * 16, i * 16 + 16) + '"' + tail;
      const input = key.encodedHeader + '.' + Buffer.from(payload).toString('base64url');
      proofs.push(input + '.' + sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url'));
    }
    parentPort.postMessage({ target: m.target, batch: m.batch, proofs });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message) });
  }
});
`;

/** Proofs signed ahead by a worker thread, per (account key, htm, htu, token). */
export class ProofPool {
  private worker: Worker | undefined;
  private broken = false;
  private readonly targets = new Map<string, Target>();
  /** The keys the worker holds, by thumbprint, and the accounts that use each. */
  private readonly keysSent = new Map<string, Set<string>>();
  private batches = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * A proof signed ahead for this target, or undefined (the caller signs inline); either way
   * the target's demand is noted and a batch asked for when it runs low.
   */
  take(account: string, key: PoolKey, htm: string, htu: string, ath: string): string | undefined {
    if (this.broken) return undefined;
    const id = `${key.jkt}\n${htm}\n${htu}\n${ath}`;
    let t = this.targets.get(id);
    if (!t) {
      if (this.targets.size >= MAX_TARGETS) this.targets.delete(this.targets.keys().next().value!);
      t = { account, proofs: [], signedAt: [], askedAt: 0, demand: 0, pending: 0 };
      this.targets.set(id, t);
    }
    t.demand++;
    const oldest = this.now() - POOL_MAX_AGE_MS;
    // Too old to hand out (a batch shares one time): dropped, never sent.
    while (t.proofs.length && t.signedAt[0] < oldest) {
      t.proofs.shift();
      t.signedAt.shift();
    }
    const proof = t.proofs.shift();
    if (proof !== undefined) t.signedAt.shift();
    if (t.pending === 0 && t.proofs.length <= t.demand) this.refill(id, t, account, key, htm, htu, ath);
    return proof;
  }

  /** Forget everything signed ahead for the account (its key, token or config changed). */
  dropAccount(account: string): void {
    for (const [id, t] of this.targets) if (t.account === account) this.targets.delete(id);
    for (const [jkt, users] of this.keysSent) {
      users.delete(account);
      if (users.size === 0) {
        this.keysSent.delete(jkt);
        this.worker?.postMessage({ type: 'drop', keyId: jkt });
      }
    }
  }

  /** How many proofs are ready for a target (tests). */
  ready(key: PoolKey, htm: string, htu: string, ath: string): number {
    return this.targets.get(`${key.jkt}\n${htm}\n${htu}\n${ath}`)?.proofs.length ?? 0;
  }

  /** Stop the worker (the daemon's shutdown; tests). */
  async close(): Promise<void> {
    this.broken = true;
    this.targets.clear();
    await this.worker?.terminate();
  }

  private refill(id: string, t: Target, account: string, key: PoolKey, htm: string, htu: string, ath: string): void {
    const worker = this.workerThread();
    if (!worker) return;
    let users = this.keysSent.get(key.jkt);
    if (!users) {
      this.keysSent.set(key.jkt, (users = new Set()));
      worker.postMessage({ type: 'key', keyId: key.jkt, privateKey: key.privateKey, encodedHeader: key.encodedHeader });
    }
    users.add(account);
    // Twice the demand seen since the last batch, and never a handful: each batch costs this
    // thread a message each way, and proofs left to grow old cost only the worker's time.
    const count = Math.min(MAX_BATCH, Math.max(MIN_BATCH, 2 * t.demand));
    t.demand = 0;
    t.pending = ++this.batches;
    t.askedAt = this.now();
    const job: Job = { type: 'sign', target: id, batch: t.pending, keyId: key.jkt, htm, htu, ath, count };
    worker.postMessage(job);
  }

  private workerThread(): Worker | undefined {
    if (this.worker || this.broken) return this.worker;
    try {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.unref(); // never what keeps the daemon running
      w.on('message', (m: Done) => this.done(m));
      w.on('error', () => this.fail());
      w.on('exit', () => this.fail());
      this.worker = w;
    } catch {
      this.fail();
    }
    return this.worker;
  }

  private done(m: Done): void {
    if ('error' in m) {
      this.fail();
      return;
    }
    const t = this.targets.get(m.target);
    // Dropped meanwhile (a key or token change), or dropped and asked again: a batch asked
    // before the drop is not this target's, and its age would be counted from the later ask.
    if (!t || t.pending !== m.batch) return;
    t.pending = 0;
    for (const p of m.proofs) {
      t.proofs.push(p);
      t.signedAt.push(t.askedAt);
    }
  }

  /** A worker that fails is not restarted: every proof is signed inline from then on. */
  private fail(): void {
    this.broken = true;
    this.targets.clear();
    this.worker = undefined;
  }
}
