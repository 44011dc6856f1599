import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type DaemonEvent, EVENT_WINDOW, type EmittedType, type EventFields, parseEventId, type ReadyEvent } from '../protocol/events.js';

/** What a reconnecting client is owed: the events it missed, or a `resync` and why. */
export type CatchUp = { events: DaemonEvent[] } | { resync: 'restart' | 'gap' | 'unknown' };

export interface EventBusOptions {
  now?: () => number;
  /** The catch-up window (default EVENT_WINDOW). */
  window?: { events: number; ms: number };
}

/**
 * The catch-up window's event count, lowered only by tests (TOKEND_TEST_EVENT_WINDOW,
 * docs/api.md): a test of a client that fell out of the window then needs a few events, not
 * a thousand refreshes.
 */
export function eventWindowFromEnv(env: NodeJS.ProcessEnv): { events: number; ms: number } | undefined {
  const n = Number(env.TOKEND_TEST_EVENT_WINDOW);
  return Number.isSafeInteger(n) && n > 0 && n < EVENT_WINDOW.events ? { events: n, ms: EVENT_WINDOW.ms } : undefined;
}

/**
 * In-process fan-out of daemon events to SSE subscribers, with the recent ones kept (a
 * bounded window) so a client that reconnects with `Last-Event-ID` is caught up.
 * Events never carry a secret.
 */
export class EventBus {
  private readonly emitter = new EventEmitter();
  /** This daemon run's part of every id: the start time and a random part, so two runs never share it. */
  readonly run = `${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
  private seq = 0;
  /** The recent events, oldest first, with their times (epoch ms); their SEQs are consecutive. */
  private readonly recent: Array<{ ms: number; ev: DaemonEvent }> = [];
  private readonly now: () => number;
  private readonly window: { events: number; ms: number };

  constructor(opts: EventBusOptions = {}) {
    // Every SSE client is one listener; the default cap of 10 would only warn.
    this.emitter.setMaxListeners(0);
    this.now = opts.now ?? Date.now;
    this.window = opts.window ?? EVENT_WINDOW;
  }

  emit<T extends EmittedType>(type: T, account: string, fields: EventFields<T>): void {
    const ms = this.now();
    const ev = { id: `${this.run}-${++this.seq}`, type, account, at: new Date(ms).toISOString(), ...fields } as unknown as DaemonEvent;
    this.recent.push({ ms, ev });
    if (this.recent.length > this.window.events) this.recent.shift();
    this.emitter.emit('event', ev);
  }

  /** Subscribe; returns the unsubscribe function. */
  subscribe(fn: (ev: DaemonEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }

  /** The id of the newest event (`RUN-0` before the first). */
  newestId(): string {
    return `${this.run}-${this.seq}`;
  }

  /** The `ready` message's payload. */
  ready(): ReadyEvent {
    return { id: this.newestId(), at: new Date(this.now()).toISOString() };
  }

  /** The events after `lastId`, when the window still holds every one of them. */
  since(lastId: string): CatchUp {
    const id = parseEventId(lastId);
    if (!id) return { resync: 'unknown' };
    if (id.run !== this.run) return { resync: 'restart' };
    if (id.seq > this.seq) return { resync: 'unknown' };
    const oldest = this.now() - this.window.ms;
    while (this.recent.length && this.recent[0].ms < oldest) this.recent.shift();
    if (id.seq === this.seq) return { events: [] };
    const first = this.recent[0] ? (parseEventId(this.recent[0].ev.id)?.seq ?? Infinity) : Infinity;
    if (first > id.seq + 1) return { resync: 'gap' };
    return { events: this.recent.slice(id.seq + 1 - first).map((r) => r.ev) };
  }
}
