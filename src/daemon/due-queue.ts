/**
 * Many timers as one: each key has a due time (epoch ms on the broker's wall clock), kept in a
 * binary min-heap, and one node timer is armed for the earliest. A node timer per grant cost
 * a Timeout, a closure and its context each (~250 bytes; 25 MB at 100 000 accounts, in the
 * many-accounts-100k bench), and re-arming them all after a clock jump walked a linked list per duration.
 *
 * Setting a key again replaces its due time. The heap is not searched: a replaced or deleted
 * entry stays in it, is skipped when it comes up, and the heap is rebuilt when such entries
 * outnumber the live ones.
 */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export class DueQueue {
  /** The live due time of each key. */
  private readonly due = new Map<string, number>();
  // The heap, as two parallel arrays (no object per entry): heapAt[i] is when heapKey[i] is due.
  private heapAt: number[] = [];
  private heapKey: string[] = [];
  private timer?: NodeJS.Timeout;
  /** The due time the node timer was armed for. */
  private armedFor = Infinity;

  /**
   * @param onDue called once per key when its time comes (the key is removed first, so it may set itself again)
   * @param now the wall clock the due times are on
   */
  constructor(
    private readonly onDue: (key: string) => void,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.due.size;
  }

  keys(): IterableIterator<string> {
    return this.due.keys();
  }

  /** Call `onDue(key)` at `at` (at once when that has passed); replaces the key's earlier time. */
  set(key: string, at: number): void {
    this.due.set(key, at);
    this.push(at, key);
    if (this.heapAt.length > 64 && this.heapAt.length > 2 * this.due.size) this.rebuild();
    if (at < this.armedFor) this.arm();
  }

  delete(key: string): void {
    if (this.due.delete(key) && this.due.size === 0) this.clear();
  }

  clear(): void {
    this.due.clear();
    this.heapAt = [];
    this.heapKey = [];
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
  }

  /** Arm the node timer for the earliest live entry (after dropping stale ones from the top). */
  private arm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
    this.dropStale();
    if (this.heapAt.length === 0) return;
    const at = this.heapAt[0]!;
    const wait = at - this.now();
    this.armedFor = at;
    // setTimeout holds at most ~24.8 days: a later time is reached in steps.
    const upTo = () => (wait > MAX_TIMEOUT_MS ? this.now() : Math.max(at, this.now()));
    this.timer = setTimeout(() => this.fire(upTo()), Math.max(0, Math.min(wait, MAX_TIMEOUT_MS)));
    this.timer.unref();
  }

  /**
   * The timer went off: every entry due by `upTo` runs. `upTo` is the armed time even when
   * the wall clock says otherwise (tests move their own clock; a clock that jumped is the
   * broker's clock watch's business, which sets every key again): a node timer that fired
   * has waited its delay.
   */
  private fire(upTo: number): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const ready: string[] = [];
    for (;;) {
      this.dropStale();
      if (this.heapAt.length === 0 || this.heapAt[0]! > upTo) break;
      const key = this.pop();
      this.due.delete(key);
      ready.push(key);
    }
    for (const key of ready) this.onDue(key);
    if (this.timer === undefined) this.arm();
  }

  /** Pop entries from the top whose key was set again or deleted since they were pushed. */
  private dropStale(): void {
    while (this.heapAt.length > 0 && this.due.get(this.heapKey[0]!) !== this.heapAt[0]) this.pop();
  }

  private rebuild(): void {
    this.heapAt = [];
    this.heapKey = [];
    for (const [key, at] of this.due) this.push(at, key);
  }

  private push(at: number, key: string): void {
    const a = this.heapAt;
    const k = this.heapKey;
    let i = a.length;
    a.push(at);
    k.push(key);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent]! <= at) break;
      a[i] = a[parent]!;
      k[i] = k[parent]!;
      i = parent;
    }
    a[i] = at;
    k[i] = key;
  }

  private pop(): string {
    const a = this.heapAt;
    const k = this.heapKey;
    const top = k[0]!;
    const lastAt = a.pop()!;
    const lastKey = k.pop()!;
    const n = a.length;
    if (n === 0) return top;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && a[child + 1]! < a[child]!) child++;
      if (a[child]! >= lastAt) break;
      a[i] = a[child]!;
      k[i] = k[child]!;
      i = child;
    }
    a[i] = lastAt;
    k[i] = lastKey;
    return top;
  }
}
