/**
 * Deadlines for many short waits with one timer: the proxy gives every upstream request
 * http_timeout_ms to start answering, and nearly every one answers long before. A node
 * `setTimeout` per request (a Timeout object, its async id, its list, then `clearTimeout`)
 * was a visible part of a proxied request's CPU time; here a request's wait is one small
 * entry in a linked list, and one interval, running only while something waits, fires what
 * is due. A wait ends at most SWEEP_MAX_MS (or a tenth of its timeout, at least
 * SWEEP_MIN_MS) late.
 *
 * A list and not a `Map` keyed by the waiting request: under the proxied GET load the Map
 * (set at dispatch, delete at the answer, a few microseconds to milliseconds apart) made
 * every request's objects, its exchange and through it the request and response, survive
 * the young generation's collections (`--trace-gc`: ~2 MB promoted per scavenge, scavenges
 * 4–6 times longer, old space growing until a mark-compact); with the list nothing a
 * request allocated outlives it (docs/performance.md, the API proxy). A cancelled entry lets go of
 * its `fire` and its neighbours at once.
 */

const SWEEP_MIN_MS = 10;
const SWEEP_MAX_MS = 250;

/** One wait, as `add` returns it; hand it to `cancel`. */
export interface Wait {
  readonly at: number;
}

class Entry implements Wait {
  prev: Entry | undefined;
  next: Entry | undefined;
  constructor(
    readonly at: number,
    public fire: (() => void) | undefined,
  ) {}
}

export class Deadlines {
  private head: Entry | undefined;
  private tail: Entry | undefined;
  private count = 0;
  private timer: NodeJS.Timeout | undefined;
  private everyMs = SWEEP_MAX_MS;

  /** Call `fire` once `ms` have passed, unless `cancel` is called with what this returns first. */
  add(ms: number, fire: () => void): Wait {
    const entry = new Entry(performance.now() + ms, fire);
    entry.prev = this.tail;
    if (this.tail) this.tail.next = entry;
    else this.head = entry;
    this.tail = entry;
    this.count++;
    const everyMs = Math.min(SWEEP_MAX_MS, Math.max(SWEEP_MIN_MS, Math.floor(ms / 10)));
    if (this.timer && everyMs >= this.everyMs) return entry;
    clearInterval(this.timer);
    this.everyMs = everyMs;
    // Unref'd: whatever waits holds a socket, which keeps the daemon up on its own.
    this.timer = setInterval(this.sweep, everyMs).unref();
    return entry;
  }

  /** Forget a wait (it will not fire); a wait already fired or cancelled is left as it is. */
  cancel(wait: Wait): void {
    const entry = wait as Entry;
    if (entry.fire === undefined) return;
    entry.fire = undefined;
    const { prev, next } = entry;
    if (prev) prev.next = next;
    else this.head = next;
    if (next) next.prev = prev;
    else this.tail = prev;
    entry.prev = entry.next = undefined;
    this.count--;
  }

  get size(): number {
    return this.count;
  }

  private readonly sweep = () => {
    const now = performance.now();
    // Found first, fired after: a `fire` may cancel or add waits, and the list changes under it.
    let due: Entry[] | undefined;
    for (let entry = this.head; entry; entry = entry.next) if (entry.at <= now) (due ??= []).push(entry);
    for (const entry of due ?? []) {
      const fire = entry.fire;
      if (!fire) continue; // cancelled by a wait fired before it
      this.cancel(entry);
      fire();
    }
    if (this.count === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.everyMs = SWEEP_MAX_MS;
    }
  };
}
