/**
 * The daemon's events: one schema per type, ids that count up within a daemon run and
 * change with the run, and a client reconnecting with `Last-Event-ID` caught up from a
 * bounded window, or told to `resync`. The bus on its own (with a clock of its own), then
 * the real daemon over its socket, read as raw Server-Sent Events.
 */
import fs from 'node:fs';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { EventBus } from '../src/daemon/events.js';
import { type DaemonEvent, EMITTED_EVENTS, EVENT_TYPES, EVENT_WINDOW, parseEventId } from '../src/protocol/events.js';
import { SseParser, type SseMessage } from '../src/sdk/sse.js';
import { putConfAccount, DaemonProcess, postConfGrant, ROOT, tempHome, writeSettings } from './support/daemon.js';
import { useIdp } from './support/fixtures.js';
import { checkedEvent, waitFor } from './support/fake-as.js';
import { useStack } from './support/stack.js';

describe('the event bus', () => {
  const bus = (now = () => 0, window = EVENT_WINDOW) => new EventBus({ now, window });
  const refreshed = (b: EventBus, n = 1) => {
    for (let i = 0; i < n; i++) b.emit('token.refreshed', 'work', { generation: i, expires_at: null });
  };

  it('gives each event an id RUN-SEQ counting up from 1 within a run, and every run another RUN', () => {
    const a = bus();
    const seen: string[] = [];
    a.subscribe((ev) => seen.push(ev.id));
    expect(a.newestId()).toBe(`${a.run}-0`);
    refreshed(a, 3);
    expect(seen).toEqual([`${a.run}-1`, `${a.run}-2`, `${a.run}-3`]);
    expect(a.ready().id).toBe(`${a.run}-3`);
    expect(bus().run).not.toBe(a.run);
    expect(parseEventId(seen[2])).toEqual({ run: a.run, seq: 3 });
  });

  it('catches a client up with the events after its Last-Event-ID, and with none when it has the newest', () => {
    const b = bus();
    refreshed(b, 5);
    const caught = b.since(`${b.run}-2`);
    expect('events' in caught && caught.events.map((e) => e.id)).toEqual([`${b.run}-3`, `${b.run}-4`, `${b.run}-5`]);
    expect(b.since(`${b.run}-5`)).toEqual({ events: [] });
    expect(b.since(`${b.run}-0`)).toMatchObject({ events: { length: 5 } });
  });

  it('says resync for a gap past the last 1000 events, past 10 minutes, another run, or an id it never gave', () => {
    let now = 0;
    const b = bus(() => now);
    refreshed(b, EVENT_WINDOW.events + 1);
    expect(b.since(`${b.run}-0`)).toEqual({ resync: 'gap' }); // the first event fell out
    expect(b.since(`${b.run}-1`)).toMatchObject({ events: { length: EVENT_WINDOW.events } });

    const t = bus(() => now);
    refreshed(t, 2);
    now += EVENT_WINDOW.ms - 1;
    refreshed(t, 1);
    expect(t.since(`${t.run}-1`)).toMatchObject({ events: { length: 2 } });
    now += 2; // the first two are older than the window now
    expect(t.since(`${t.run}-1`)).toEqual({ resync: 'gap' });
    expect(t.since(`${t.run}-2`)).toMatchObject({ events: { length: 1 } });

    expect(t.since(`${b.run}-2`)).toEqual({ resync: 'restart' });
    expect(t.since(`${t.run}-99`)).toEqual({ resync: 'unknown' });
    expect(t.since('not an id')).toEqual({ resync: 'unknown' });
  });
});

describe('the event schemas', () => {
  it('name every type the daemon emits, and the daemon emits no type without one', () => {
    const emitted = new Set<string>();
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (p.endsWith('.ts')) for (const m of fs.readFileSync(p, 'utf8').matchAll(/events\.emit\(\s*'([^']+)'/g)) emitted.add(m[1]);
      }
    };
    walk(path.join(ROOT, 'src', 'daemon'));
    expect([...emitted].sort()).toEqual([...EVENT_TYPES].sort());
    expect(Object.keys(EMITTED_EVENTS).sort()).toEqual([...EVENT_TYPES].sort());
  });

  it('refuse an event of a type without a schema, or with a field its schema does not name (what the e2e taps check)', () => {
    const base = { id: 'r1-1', account: 'work', at: new Date(0).toISOString() };
    expect(checkedEvent({ ...base, type: 'token.refreshed', generation: 1, expires_at: null })).toMatchObject({ type: 'token.refreshed' });
    expect(() => checkedEvent({ ...base, type: 'account.renamed' })).toThrow(/does not match its schema/);
    expect(() => checkedEvent({ ...base, type: 'token.refreshed', expires_at: null, access_token: 'x' })).toThrow(/access_token/);
  });

  it('are components of the OpenAPI document, with the union of every event and the ready payload', () => {
    const doc = JSON.parse(fs.readFileSync(path.join(ROOT, 'dist', 'openapi.json'), 'utf8'));
    const schemas = doc.components.schemas as Record<string, { properties?: Record<string, unknown>; oneOf?: unknown[] }>;
    expect(Object.keys(schemas.TokenRefreshedEvent.properties ?? {})).toEqual(
      expect.arrayContaining(['id', 'type', 'account', 'at', 'expires_at', 'generation']),
    );
    expect(Object.keys(schemas.LoginFailedEvent.properties ?? {})).toEqual(expect.arrayContaining(['login_id', 'status', 'task', 'error']));
    expect(schemas.ResyncEvent.properties).toHaveProperty('reason');
    expect(schemas.ReadyEvent.properties).toHaveProperty('id');
    expect(schemas.DaemonEvent.oneOf).toHaveLength(EVENT_TYPES.length + 1);
  });
});

interface Stream {
  messages: SseMessage[];
  until(pred: (m: SseMessage) => boolean, what: string): Promise<SseMessage>;
  close(): void;
}

/** `GET /v1/events` over the socket, read with the SDK's parser; `Last-Event-ID` when given. */
function openStream(socket: string, lastEventId?: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const messages: SseMessage[] = [];
    const headers: Record<string, string> = { host: 'tokend', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) };
    const req = http.request({ socketPath: socket, path: '/v1/events', headers, agent: false }, (res) => {
      const parser = new SseParser();
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        for (const m of parser.feed(chunk)) {
          if (m.event !== 'ready') checkedEvent(JSON.parse(m.data));
          messages.push(m);
        }
      });
      res.on('error', () => undefined);
      resolve({
        messages,
        until: (pred, what) => waitFor(() => messages.find(pred), what),
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const data = (m: SseMessage) => JSON.parse(m.data) as DaemonEvent;

describe('GET /v1/events on a real daemon', () => {
  const stack = useStack();

  it('sends ids, and replays what a client missed when it comes back with Last-Event-ID', async () => {
    const { d } = stack.t;
    await putConfAccount(d, stack.idp.issuer);
    const first = await openStream(d.socket);
    const ready = await first.until((m) => m.event === 'ready', 'ready');
    first.close();
    expect(ready.id).toBe(JSON.parse(ready.data).id);

    await postConfGrant(d, stack.idp);
    expect((await d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);

    const back = await openStream(d.socket, ready.id);
    const again = await back.until((m) => m.event === 'ready', 'ready after the catch-up');
    back.close();
    const missed = back.messages.slice(0, back.messages.indexOf(again));
    expect(missed.length).toBeGreaterThanOrEqual(2);
    expect(missed.every((m) => m.event === 'token.refreshed' && m.id === data(m).id)).toBe(true);
    // Ids count up by one from the client's, and `ready` carries the newest.
    const seqs = missed.map((m) => parseEventId(m.id!)!.seq);
    expect(seqs).toEqual(seqs.map((_, i) => parseEventId(ready.id!)!.seq + 1 + i));
    expect(again.id).toBe(missed.at(-1)!.id);

    // Up to date: only `ready`, then live events with the next id.
    const live = await openStream(d.socket, again.id);
    await live.until((m) => m.event === 'ready', 'ready');
    expect((await d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
    const next = await live.until((m) => m.event === 'token.refreshed', 'a live event');
    live.close();
    expect(live.messages[0].event).toBe('ready');
    expect(parseEventId(next.id!)!.seq).toBe(parseEventId(again.id!)!.seq + 1);
  });

  it('announces an account added, changed (naming the fields, never a value) and removed', async () => {
    const { d } = stack.t;
    const s = await openStream(d.socket);
    await s.until((m) => m.event === 'ready', 'ready');
    await putConfAccount(d, stack.idp.issuer);
    expect((await d.request('PATCH', '/v1/accounts/work', { hosts: ['api.example.com'] })).status).toBe(200);
    expect((await d.request('DELETE', '/v1/accounts/work')).status).toBe(200);
    await s.until((m) => m.event === 'account.removed', 'account.removed');
    s.close();
    const accountEvents = s.messages.filter((m) => m.event.startsWith('account.')).map(data);
    expect(accountEvents).toMatchObject([
      { type: 'account.added', account: 'work' },
      { type: 'account.changed', account: 'work', fields: ['hosts'] },
      { type: 'account.removed', account: 'work', revoked: false },
    ]);
    expect(JSON.stringify(accountEvents)).not.toContain('conf-secret');
  });

  const WINDOW = 20;
  it('says resync to a Last-Event-ID past the window, of an earlier daemon run (SIGTERM, SIGKILL), or never given', async () => {
    const { d, home } = stack.t;
    // A window of 20 events (a test-only variable, docs/api.md), and more refreshes in a row
    // than the per-minute budget (a setting) allows by default.
    const file = path.join(home, 'config', 'config.json');
    await d.stop();
    const config = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
    writeSettings(home, { ...config.settings, max_refreshes_per_minute: 100_000 }, config.accounts);
    d.env.TOKEND_TEST_EVENT_WINDOW = String(WINDOW);
    onTestFinished(() => {
      delete d.env.TOKEND_TEST_EVENT_WINDOW;
    });
    await d.start();
    await putConfAccount(d, stack.idp.issuer);
    await postConfGrant(d, stack.idp);
    const s = await openStream(d.socket);
    const ready = await s.until((m) => m.event === 'ready', 'ready');
    s.close();
    // More events than the window holds: the client's id fell out of it.
    for (let i = 0; i <= WINDOW; i++) expect((await d.request('POST', '/v1/accounts/work/refresh')).status).toBe(200);
    const resyncOf = async (lastId: string) => {
      const r = await openStream(d.socket, lastId);
      const rd = await r.until((m) => m.event === 'ready', 'ready');
      r.close();
      expect(r.messages.map((m) => m.event)).toEqual(['resync', 'ready']);
      expect(r.messages[0].id).toBe(rd.id);
      return data(r.messages[0]);
    };
    expect(await resyncOf(ready.id!)).toMatchObject({ type: 'resync', reason: 'gap' });
    expect(await resyncOf('0-1')).toMatchObject({ reason: 'restart' });

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const before = await openStream(d.socket);
      const last = await before.until((m) => m.event === 'ready', 'ready');
      before.close();
      await d.stop(signal);
      await d.start();
      const ev = await resyncOf(last.id!);
      expect(ev, signal).toMatchObject({ type: 'resync', reason: 'restart' });
      expect(parseEventId(ev.id)!.run).not.toBe(parseEventId(last.id!)!.run);
    }
    const [run] = (await resyncOf('0-1')).id.split('-');
    expect(await resyncOf(`${run}-999999`)).toMatchObject({ reason: 'unknown' });
  });
});

describe('a reader that stops reading', () => {
  const idp = useIdp();

  it('has its connection closed once too many events wait for it; it catches up with Last-Event-ID, and the daemon stays healthy', async () => {
    const h = tempHome();
    // A tiny bound (a test-only variable, docs/api.md), reached once the socket's buffers are full.
    const d = new DaemonProcess(h.home, { ...h.env, TOKEND_TEST_EVENT_QUEUE_MAX: '20' });
    try {
      await d.start();
      await putConfAccount(d, idp.issuer);
      const sock = net.connect(d.socket);
      await once(sock, 'connect');
      let got = '';
      sock.setEncoding('utf8');
      sock.on('data', (c: string) => (got += c));
      sock.on('error', () => undefined);
      const closed = once(sock, 'close');
      sock.write('GET /v1/events HTTP/1.1\r\nHost: tokend\r\n\r\n');
      await waitFor(() => got.includes('event: ready') || undefined, 'ready');
      sock.pause(); // reads nothing from here on

      let made = 0;
      while (!d.logs.includes('closed an event stream whose reader fell behind')) {
        if (made >= 6000) throw new Error(`the daemon still queues events for a reader that stopped, after ${made}`);
        const batch = await Promise.all(
          Array.from({ length: 25 }, (_, i) => d.request('PATCH', '/v1/accounts/work', { labels: { n: String(made + i) } })),
        );
        expect(batch.every((r) => r.status === 200)).toBe(true);
        made += batch.length;
      }
      sock.resume();
      await closed;
      const received = [...got.matchAll(/^id: (.+)$/gm)].map((m) => m[1]!);
      expect(received.length).toBeLessThan(made);
      // The reader comes back where it stopped: caught up from the window, or told to resync.
      const back = await openStream(d.socket, received.at(-1));
      await back.until((m) => m.event === 'ready', 'ready after reconnecting');
      back.close();
      const changed = back.messages.filter((m) => m.event === 'account.changed').length;
      expect(changed > 0 || back.messages[0]!.event === 'resync').toBe(true);
      // Healthy: it answers, and a reader that reads gets live events.
      expect((await d.request('GET', '/v1/accounts/work')).json.labels).toEqual({ n: String(made - 1) });
      const live = await openStream(d.socket);
      await live.until((m) => m.event === 'ready', 'ready');
      expect((await d.request('PATCH', '/v1/accounts/work', { labels: { n: 'last' } })).status).toBe(200);
      await live.until((m) => m.event === 'account.changed', 'a live event');
      live.close();
    } finally {
      await d.stop();
      h.cleanup();
    }
  });
});
