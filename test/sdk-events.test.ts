/**
 * The SDK's `events()` keeps an app's view whole across a broken stream: it reconnects by
 * itself with `Last-Event-ID`, says `reconnected`, then hands over what it missed, or
 * `resync` when the daemon restarted and cannot tell. Against a real daemon and IdP.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseEventId } from '../src/protocol/events.js';
import { Tokend, type EventSubscription, type TokendEvent } from '../src/sdk/index.js';
import { putConfAccount, postConfGrant } from './support/daemon.js';
import { waitFor } from './support/fake-as.js';
import { useStack } from './support/stack.js';

/** Everything the subscription yields, until it ends (`done`). */
function collect(events: EventSubscription): { seen: TokendEvent[]; done: Promise<void> } {
  const seen: TokendEvent[] = [];
  const done = (async () => {
    for await (const ev of events) seen.push(ev);
  })();
  return { seen, done };
}

/**
 * A Unix socket passing bytes to the daemon's socket and back, which the test can cut (every
 * connection destroyed, nothing listening) and open again: for the SDK, the daemon's side
 * closed and stayed away, while the daemon itself goes on.
 */
class Relay {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-relay-'));
  readonly socket = path.join(this.dir, 'relay.sock');
  private server?: net.Server;
  private readonly open = new Set<net.Socket>();
  constructor(private readonly target: string) {}

  async listen(): Promise<void> {
    fs.rmSync(this.socket, { force: true });
    this.server = net.createServer((client) => {
      const daemon = net.connect(this.target);
      for (const s of [client, daemon]) {
        this.open.add(s);
        s.on('close', () => this.open.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(daemon).pipe(client);
      client.on('close', () => daemon.destroy());
      daemon.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.socket, resolve));
  }

  async cut(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
    for (const s of this.open) s.destroy();
    await closed;
  }

  async dispose(): Promise<void> {
    await this.cut();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const types = (seen: TokendEvent[]) => seen.map((e) => e.type);

describe('events() of the SDK across a broken stream', () => {
  const stack = useStack();
  let relay: Relay | undefined;
  afterEach(async () => {
    await relay?.dispose();
    relay = undefined;
  });

  it('after its connection was cut, says reconnected, then gives the events it missed, in order', async () => {
    const { d } = stack.t;
    await putConfAccount(d, stack.idp.issuer);
    await postConfGrant(d, stack.idp);
    relay = new Relay(d.socket);
    await relay.listen();
    const tokend = new Tokend({ env: stack.t.env, socket: relay.socket, autostart: false });
    const stop = new AbortController();
    const events = tokend.events({ signal: stop.signal });
    await events.ready;
    const { seen, done } = collect(events);

    expect((await d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
    const before = await waitFor(() => seen.find((e) => e.type === 'token.refreshed'), 'a live event');

    await relay.cut();
    // While the stream is down, the daemon goes on.
    for (let i = 0; i < 2; i++) expect((await d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
    await relay.listen();

    await waitFor(() => seen.filter((e) => e.type === 'token.refreshed').length >= 3, 'the missed events');
    stop.abort();
    await done;
    const after = seen.slice(seen.indexOf(before) + 1);
    expect(types(after)).toEqual(['reconnected', 'token.refreshed', 'token.refreshed']);
    expect(after[0]).toMatchObject({ type: 'reconnected', last_event_id: (before as { id: string }).id });
    const seqs = [before, ...after.slice(1)].map((e) => parseEventId((e as { id: string }).id)!.seq);
    expect(seqs).toEqual([seqs[0], seqs[0] + 1, seqs[0] + 2]);
  });

  it('after a daemon restart (SIGTERM, then SIGKILL), says reconnected and resync, then goes on delivering', async () => {
    const { d } = stack.t;
    await putConfAccount(d, stack.idp.issuer);
    await postConfGrant(d, stack.idp);
    const tokend = new Tokend({ env: stack.t.env });
    const stop = new AbortController();
    const events = tokend.events({ signal: stop.signal });
    await events.ready;
    const { seen, done } = collect(events);

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const from = seen.length;
      await d.stop(signal);
      await d.start();
      await waitFor(() => seen.slice(from).some((e) => e.type === 'resync'), `resync after ${signal}`);
      expect((await d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
      await waitFor(() => seen.slice(from).some((e) => e.type === 'token.refreshed'), `an event after ${signal}`);
      expect(types(seen.slice(from)), signal).toEqual(['reconnected', 'resync', 'token.refreshed']);
      expect(seen[from + 1]).toMatchObject({ type: 'resync', reason: 'restart' });
    }
    stop.abort();
    await done;
  });
});
