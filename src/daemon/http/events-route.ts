/**
 * `GET /v1/events`: Server-Sent Events (HTML Living Standard §9.2). Each message's `id:` is
 * the event's id; a client reconnecting with `Last-Event-ID` (§9.2.4) first gets what it
 * missed from the bus's window, or one `resync` when the window cannot say (docs/api.md).
 * Then `ready` (its id: the newest), then every event as it happens.
 */
import type { Context } from 'hono';
import { type SSEMessage, streamSSE } from 'hono/streaming';
import type { DaemonEvent } from '../../protocol/events.js';
import type { EventBus } from '../events.js';

const message = (ev: DaemonEvent): SSEMessage => ({ event: ev.type, id: ev.id, data: JSON.stringify(ev) });

export function serveEvents(c: Context, bus: EventBus, shutdown: AbortSignal): Response {
  const lastEventId = c.req.header('last-event-id') || undefined;
  return streamSSE(c, async (stream) => {
    // One writer, in order: the catch-up, `ready`, then live events. Subscribing and
    // reading the window happen in one turn, so no event falls between them or comes twice.
    const queue: SSEMessage[] = [];
    let wake = () => {};
    let ended = false;
    const unsubscribe = bus.subscribe((ev) => {
      queue.push(message(ev));
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
        if (m) await stream.writeSSE(m);
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      unsubscribe();
      shutdown.removeEventListener('abort', end);
    }
  });
}
