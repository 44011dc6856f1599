import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DueQueue } from '../src/daemon/due-queue.js';

// vitest's fake clock (timers and Date.now): the order and the times a test checks are then
// the queue's, not a loaded machine's (with real timers, 45 ms waits came out wrong at load 20).
const sleep = (ms: number) => vi.advanceTimersByTimeAsync(ms);

function queue(now = () => Date.now()) {
  const fired: Array<[string, number]> = [];
  const q = new DueQueue((key) => fired.push([key, Date.now()]), now);
  return { q, fired, keys: () => fired.map(([k]) => k) };
}

describe("DueQueue (the broker's timers as one)", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  // Test files share their worker (isolate: false): the next file gets the real clock back.
  afterEach(() => {
    vi.useRealTimers();
  });
  it('calls each key once, when due, earliest first, whatever order they were set in', async () => {
    const { q, keys } = queue();
    const t = Date.now();
    q.set('c', t + 60);
    q.set('a', t + 20);
    q.set('b', t + 40);
    q.set('past', t - 1000); // already due: at once
    await sleep(5);
    expect(keys()).toEqual(['past']);
    await sleep(100);
    expect(keys()).toEqual(['past', 'a', 'b', 'c']);
    expect(q.size).toBe(0);
  });

  it('setting a key again replaces its time; a deleted key never fires', async () => {
    const { q, keys } = queue();
    const t = Date.now();
    q.set('moved-later', t + 10);
    q.set('moved-later', t + 60);
    q.set('moved-earlier', t + 500);
    q.set('moved-earlier', t + 30);
    q.set('gone', t + 20);
    q.delete('gone');
    await sleep(45);
    expect(keys()).toEqual(['moved-earlier']);
    await sleep(40);
    expect(keys()).toEqual(['moved-earlier', 'moved-later']);
  });

  it('a key may set itself again from its own call', async () => {
    let n = 0;
    const q: DueQueue = new DueQueue((key) => {
      if (++n < 3) q.set(key, Date.now() + 5);
    }, Date.now);
    q.set('again', Date.now() + 5);
    await sleep(80);
    expect(n).toBe(3);
    expect(q.size).toBe(0);
  });

  it('keeps order and count over many keys set again and again (the heap is rebuilt, never wrong)', async () => {
    const { q, fired } = queue();
    const t = Date.now();
    const want = new Map<string, number>();
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 2000; i++) {
        const at = t + 20 + ((i * 7919 + round * 104729) % 80);
        q.set(`k${i}`, at);
        want.set(`k${i}`, at);
      }
    }
    for (let i = 0; i < 2000; i += 3) {
      q.delete(`k${i}`);
      want.delete(`k${i}`);
    }
    expect(q.size).toBe(want.size);
    await sleep(200);
    expect(fired.map(([k]) => k).sort()).toEqual([...want.keys()].sort());
    // Never before its time, and in order of due time.
    const order = fired.map(([k]) => want.get(k)!);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    for (const [k, firedAt] of fired) expect(firedAt).toBeGreaterThanOrEqual(want.get(k)! - 1);
  });

  it('a timer that went off runs what it was armed for even when the given clock stands still (as node timers do)', async () => {
    const frozen = Date.now();
    const { q, keys } = queue(() => frozen);
    q.set('x', frozen + 20);
    await sleep(60);
    expect(keys()).toEqual(['x']);
  });

  it('clear stops everything', async () => {
    const { q, keys } = queue();
    q.set('a', Date.now() + 10);
    q.clear();
    await sleep(30);
    expect(keys()).toEqual([]);
    expect(q.size).toBe(0);
  });
});
