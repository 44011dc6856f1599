/**
 * The connection a daemon of a fleet LISTENs on for the grants other daemons commit. It comes
 * back by itself: after any error or end it reconnects with backoff, and each (re)connection
 * is announced (`onConnected`), because notifications sent while it was away are lost and
 * the daemon must reconcile by generation. A heartbeat finds a connection that died silently.
 */
import type { Client, Notification } from 'pg';
import type { Logger } from '../log.js';

export interface GrantListenerOptions {
  /** A new, unconnected client (node-postgres), configured for the fleet's database. */
  newClient: () => Client;
  /** Our own constants, not input (LISTEN takes no parameter). */
  channels: string[];
  onNotification: (n: Notification) => void;
  /** After every (re)connection, once LISTEN is in place. */
  onConnected: () => void;
  log: Logger;
  where: string;
  now?: () => number;
  heartbeatMs?: number;
}

export interface GrantListener {
  /** Whether the listener is connected now. */
  connected(): boolean;
  /** When it last came back after losing its connection (epoch ms); undefined if it never lost one. */
  reconnectedAt(): number | undefined;
  close(): Promise<void>;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;

/** Start listening on `channel`; see the module comment. */
export function listenForGrants(opts: GrantListenerOptions): GrantListener {
  const now = opts.now ?? Date.now;
  let closed = false;
  let up = false;
  let everUp = false;
  let backAt: number | undefined;
  let current: Client | undefined;
  let wake: () => void = () => undefined;

  const run = async () => {
    let attempt = 0;
    while (!closed) {
      const client = opts.newClient();
      current = client;
      let heartbeat: NodeJS.Timeout | undefined;
      // An error after the connection is up comes as an event; without a listener it would crash the daemon.
      const gone = new Promise<string>((resolve) => {
        client.on('error', (err) => resolve(err.message));
        client.on('end', () => resolve('the connection ended'));
      });
      try {
        client.on('notification', opts.onNotification);
        await client.connect();
        // The channels are our own constants, not input: LISTEN takes no parameter.
        for (const channel of opts.channels) await client.query(`LISTEN ${channel}`);
        up = true;
        if (everUp) {
          backAt = now();
          opts.log.info('listening to the fleet again', { database: opts.where });
        }
        everUp = true;
        attempt = 0;
        opts.onConnected();
        heartbeat = setInterval(() => {
          client.query('SELECT 1').catch(() => client.end().catch(() => undefined));
        }, opts.heartbeatMs ?? 30_000);
        heartbeat.unref();
        const why = await gone;
        if (!closed)
          opts.log.warn('lost the connection the fleet notifications come on; reconnecting', { database: opts.where, error: why });
      } catch (err) {
        if (!closed && attempt === 0) {
          opts.log.warn('cannot listen to the fleet; retrying', { database: opts.where, error: (err as Error).message });
        }
      } finally {
        clearInterval(heartbeat);
        up = false;
        client.end().catch(() => undefined);
      }
      if (closed) break;
      const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt++);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  };
  const done = run();

  return {
    connected: () => up,
    reconnectedAt: () => backAt,
    async close() {
      closed = true;
      wake();
      await current?.end().catch(() => undefined);
      await done;
    },
  };
}
