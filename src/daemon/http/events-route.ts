/**
 * `GET /v1/events`: Server-Sent Events (HTML Living Standard §9.2). Each message's `id:` is
 * the event's id; a client reconnecting with `Last-Event-ID` (§9.2.4) first gets what it
 * missed from the bus's window, or one `resync` when the window cannot say (docs/api.md).
 * Then `ready` (its id: the newest), then every event as it happens.
 *
 * A reader that stops reading is bounded: once more than {@link EVENT_QUEUE_MAX} events, or
 * {@link EVENT_QUEUE_MAX_BYTES} of them, wait for it, its connection is closed; it reconnects
 * with `Last-Event-ID` and is caught up, or told to `resync` (docs/api.md).
 */
import type { Context } from 'hono';
import { type SSEMessage, streamSSE } from 'hono/streaming';
import type { DaemonEvent } from '../../protocol/events.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../log.js';

/** How many events may wait for one SSE reader before its connection is closed. */
export const EVENT_QUEUE_MAX = 1000;
/** How many bytes may wait for one SSE reader (queued, and in its socket's buffer) before its connection is closed. */
export const EVENT_QUEUE_MAX_BYTES = 1024 * 1024;

/**
 * The bound, lowered only by tests (TOKEND_TEST_EVENT_QUEUE_MAX, docs/api.md): a socket's
 * kernel buffers hold a few hundred KB before a stalled reader's events queue here at all.
 */
function queueMax(env: NodeJS.ProcessEnv): number {
  const n = Number(env.TOKEND_TEST_EVENT_QUEUE_MAX);
  return Number.isSafeInteger(n) && n > 0 ? n : EVENT_QUEUE_MAX;
}

/** The Node response under Hono (@hono/node-server's bindings), when there is one. */
type Outgoing = { writableLength: number; destroy(): void };

const message = (ev: DaemonEvent): SSEMessage => ({ event: ev.type, id: ev.id, data: JSON.stringify(ev) });
/** A queued message's size (our messages' data are strings). */
const size = (m: SSEMessage): number => (typeof m.data === 'string' ? m.data.length : 0);

export function serveEvents(c: Context, bus: EventBus, shutdown: AbortSignal, log?: Logger): Response {
  const lastEventId = c.req.header('last-event-id') || undefined;
  const outgoing = (c.env as { outgoing?: Outgoing } | undefined)?.outgoing;
  const max = queueMax(process.env);
  return streamSSE(c, async (stream) => {
    // One writer, in order: the catch-up, `ready`, then live events. Subscribing and
    // reading the window happen in one turn, so no event falls between them or comes twice.
    const queue: SSEMessage[] = [];
    let queuedBytes = 0;
    let wake = () => {};
    let ended = false;
    const unsubscribe = bus.subscribe((ev) => {
      if (ended) return;
      const m = message(ev);
      queue.push(m);
      queuedBytes += size(m);
      if (queue.length > max || queuedBytes + (outgoing?.writableLength ?? 0) > EVENT_QUEUE_MAX_BYTES) {
        // The reader stopped reading: drop what waits for it and close its connection (the
        // write in progress never completes otherwise). It catches up with Last-Event-ID.
        log?.warn('closed an event stream whose reader fell behind', { queued: queue.length, bytes: queuedBytes });
        queue.length = 0;
        queuedBytes = 0;
        ended = true;
        unsubscribe();
        outgoing?.destroy();
      }
      wake();
    });
    if (lastEventId !== undefined) {
      const caught = bus.since(lastEventId);
      if ('resync' in caught) {
        const ev: DaemonEvent = { id: bus.newestId(), type: 'resync', at: new Date().toISOString(), reason: caught.resync };
        queue.push(message(ev));
      } else {
        queue.push(...caught.events.map(message));
      }
    }
    const ready = bus.ready();
    queue.push({ event: 'ready', id: ready.id, data: JSON.stringify(ready) });
    const end = () => {
      ended = true;
      wake();
    };
    shutdown.addEventListener('abort', end);
    stream.onAbort(end);
    try {
      for (;;) {
        if (ended || shutdown.aborted) break;
        const m = queue.shift();
        if (m) {
          queuedBytes -= size(m);
          await stream.writeSSE(m);
        } else await new Promise<void>((resolve) => (wake = resolve));
      }
    } catch (err) {
      // A connection closed under a write (above, or by the reader): nothing more to send.
      if (!ended) throw err;
    } finally {
      unsubscribe();
      shutdown.removeEventListener('abort', end);
    }
  });
}
