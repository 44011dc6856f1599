import { EventEmitter } from 'node:events';
import type { EventType, TokendEvent } from '../protocol/api.js';

/** In-process fan-out of daemon events to SSE subscribers. Events never carry a secret. */
export class EventBus {
  private readonly emitter = new EventEmitter();
  constructor() {
    // Every SSE client is one listener; the default cap of 10 would only warn.
    this.emitter.setMaxListeners(0);
  }
  emit(type: EventType, account: string, fields: Record<string, unknown> = {}): void {
    const ev: TokendEvent = { type, account, at: new Date().toISOString(), ...fields };
    this.emitter.emit('event', ev);
  }
  /** Subscribe; returns the unsubscribe function. */
  subscribe(fn: (ev: TokendEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }
}
