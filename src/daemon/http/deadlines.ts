/**
 * Deadlines for many short waits with one timer: the proxy gives every upstream request
 * http_timeout_ms to start answering, and nearly every one answers long before. A node
 * `setTimeout` per request (a Timeout object, its async id, its list, then `clearTimeout`)
 * was a visible part of a proxied request's CPU time; here a request's wait is one entry in
 * a Map, and one interval, running only while something waits, fires what is due. A wait
 * ends at most SWEEP_MAX_MS (or a tenth of its timeout, at least SWEEP_MIN_MS) late.
 */

const SWEEP_MIN_MS = 10;
const SWEEP_MAX_MS = 250;

interface Waiting {
  at: number;
  fire: () => void;
}

export class Deadlines {
  private readonly waiting = new Map<object, Waiting>();
  private timer: NodeJS.Timeout | undefined;
  private everyMs = SWEEP_MAX_MS;

  /** Call `fire` once `ms` have passed, unless `cancel(key)` comes first. A key waits once: adding it again restarts its wait. */
  add(key: object, ms: number, fire: () => void): void {
    this.waiting.set(key, { at: performance.now() + ms, fire });
    const everyMs = Math.min(SWEEP_MAX_MS, Math.max(SWEEP_MIN_MS, Math.floor(ms / 10)));
    if (this.timer && everyMs >= this.everyMs) return;
    clearInterval(this.timer);
    this.everyMs = everyMs;
    // Unref'd: whatever waits holds a socket, which keeps the daemon up on its own.
    this.timer = setInterval(this.sweep, everyMs).unref();
  }

  cancel(key: object): void {
    this.waiting.delete(key);
  }

  get size(): number {
    return this.waiting.size;
  }

  private readonly sweep = () => {
    const now = performance.now();
    for (const [key, w] of this.waiting) {
      if (w.at > now) continue;
      this.waiting.delete(key);
      w.fire();
    }
    if (this.waiting.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.everyMs = SWEEP_MAX_MS;
    }
  };
}
