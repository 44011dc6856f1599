/**
 * `GET /v1/events` as an async iterator of typed events. The connection opens at once, so
 * `ready` can say when the daemon has the subscription (its `ready` event): everything
 * that happens after that is delivered. Events are queued until the caller takes them.
 * A stream that breaks is opened again with the last id seen as `Last-Event-ID`; the
 * iterator then yields `reconnected`, and the events of the gap or a `resync` (docs/sdk.md).
 */
import type { TokendEvent } from '../protocol/events.js';
import { ROUTES } from '../protocol/routes.js';
import { errorFromAnswer, TokendError } from './errors.js';
import { header, type SocketTransport } from './socket-transport.js';
import { readSse } from './sse.js';

export interface EventsOptions {
  /** Ends the iteration (cleanly: the loop just stops) and closes the connection. */
  signal?: AbortSignal;
  /**
   * When the stream breaks (the daemon restarts, the connection is cut), connect again,
   * starting the daemon if autostart is on, after 1 s, then up to 30 s apart
   * (default true). The iterator yields `reconnected`, then the events missed meanwhile,
   * or `resync` when the daemon cannot tell them (it restarted, or the gap was too long).
   * False: the iteration ends with the stream.
   */
  reconnect?: boolean;
}

export interface EventSubscription extends AsyncIterableIterator<TokendEvent> {
  /** Resolves once the daemon has the subscription; rejects (TokendError) when it could not be made. */
  readonly ready: Promise<void>;
  /** Stop: the iteration ends and the connection closes. */
  close(): void;
}

const RECONNECT_FIRST_MS = 1000;
const RECONNECT_MAX_MS = 30_000;
/** Largest error answer read from the events route. */
const MAX_ERROR_ANSWER = 64 * 1024;

export function subscribe(transport: SocketTransport, opts: EventsOptions = {}): EventSubscription {
  return new Subscription(transport, opts);
}

class Subscription implements EventSubscription {
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private failReady!: (err: unknown) => void;
  private readonly queue: TokendEvent[] = [];
  private waiting?: { resolve: (r: IteratorResult<TokendEvent>) => void; reject: (err: unknown) => void };
  private ended = false;
  private failure?: unknown;
  private readonly stop = new AbortController();
  private readonly forgetSignal: () => void = () => {};

  constructor(transport: SocketTransport, opts: EventsOptions) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.markReady = resolve;
      this.failReady = reject;
    });
    // Whoever iterates sees the failure too; `ready` need not be awaited.
    this.ready.catch(() => undefined);
    const signal = opts.signal;
    const onAbort = () => this.close();
    if (signal?.aborted) this.close();
    else if (signal) {
      signal.addEventListener('abort', onAbort, { once: true });
      this.forgetSignal = () => signal.removeEventListener('abort', onAbort);
    }
    this.run(transport, opts.reconnect ?? true).then(
      () => this.finish(),
      (err) => this.finish(err),
    );
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<TokendEvent>> {
    const ev = this.queue.shift();
    if (ev) return Promise.resolve({ value: ev, done: false });
    if (this.failure !== undefined) {
      const err = this.failure;
      this.failure = undefined;
      return Promise.reject(err);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  async return(): Promise<IteratorResult<TokendEvent>> {
    this.close();
    return { value: undefined, done: true };
  }

  close(): void {
    this.stop.abort();
    this.finish();
  }

  private async run(transport: SocketTransport, reconnect: boolean): Promise<void> {
    const signal = this.stop.signal;
    let subscribed = false;
    let delay = RECONNECT_FIRST_MS;
    /** The id of the last message seen, sent back as `Last-Event-ID` (HTML §9.2.4). */
    let lastId: string | null = null;
    while (!signal.aborted) {
      try {
        const headers: Record<string, string> = { accept: 'text/event-stream' };
        if (lastId) headers['last-event-id'] = lastId;
        const res = await transport.request({ method: 'GET', path: ROUTES.events, headers, signal });
        const status = res.statusCode ?? 0;
        if (status !== 200) throw errorFromAnswer(status, await transport.text(res, MAX_ERROR_ANSWER, signal), header(res, 'retry-after'));
        // What comes before `ready` is the catch-up: held back so `reconnected` goes first.
        let held: TokendEvent[] | undefined = [];
        const sentId = lastId;
        for await (const msg of readSse(res)) {
          if (msg.event === 'ready') {
            if (!held) continue;
            if (subscribed) this.push({ type: 'reconnected', at: new Date().toISOString(), last_event_id: sentId });
            for (const ev of held) this.push(ev);
            held = undefined;
            // Its id is the newest: the held events are delivered, so it is where to go on from.
            if (msg.id) lastId = msg.id;
            subscribed = true;
            delay = RECONNECT_FIRST_MS;
            this.markReady();
            continue;
          }
          const ev = parseEvent(msg.event, msg.data);
          if (held) {
            if (ev) held.push(ev);
            continue;
          }
          if (msg.id) lastId = msg.id;
          if (ev) this.push(ev);
        }
      } catch (err) {
        if (signal.aborted) return;
        // Until the first subscription stands, a failure is the caller's to see (a stream
        // cut by a restart: `daemon_unreachable`, never the socket's own error).
        if (!subscribed || !reconnect) throw transport.broken(err, signal);
      }
      if (signal.aborted || !reconnect || !subscribed) return;
      await sleep(delay, signal);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    }
  }

  private push(ev: TokendEvent): void {
    if (this.ended) return;
    const w = this.waiting;
    this.waiting = undefined;
    if (w) w.resolve({ value: ev, done: false });
    else this.queue.push(ev);
  }

  private finish(err?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.stop.abort();
    this.forgetSignal();
    const why = err ?? new TokendError('daemon_unreachable', 'the event stream ended before the daemon confirmed the subscription');
    this.failReady(why);
    if (err !== undefined) this.failure = err;
    const w = this.waiting;
    this.waiting = undefined;
    if (!w) return;
    if (err !== undefined) {
      this.failure = undefined;
      w.reject(err);
    } else {
      w.resolve({ value: undefined, done: true });
    }
  }
}

/** An event's data is the JSON event (docs/api.md); its SSE name is the type. Anything else is skipped. */
function parseEvent(name: string, data: string): TokendEvent | undefined {
  try {
    const ev = JSON.parse(data) as { type?: unknown } | null;
    if (!ev || typeof ev !== 'object' || Array.isArray(ev)) return undefined;
    return { ...ev, type: typeof ev.type === 'string' ? ev.type : name } as TokendEvent;
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
