/**
 * The proxy's streams (issue 25): backpressure that bounds a stream's memory without stopping
 * the upstream for every chunk. Driven over real sockets; e2e-proxy.test.ts streams 256 MiB
 * each way through a real daemon.
 */
import { once } from 'node:events';
import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Exchange, STREAM_BUFFER } from '../src/daemon/http/proxy-lane.js';
import { dispatcherFor } from '../src/daemon/outbound.js';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A node:http server on 127.0.0.1 whose every request goes to `handler`; resolves its port. */
async function serve(handler: http.RequestListener): Promise<number> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

describe('proxy streams', () => {
  it('a download pauses the upstream only once STREAM_BUFFER waits for the caller, and resumes it when the caller has read', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const total = 64 * 1024 * 1024;
    const response = new Promise<http.ServerResponse>((resolve) => {
      void serve((_req, res) => resolve(res)).then((port) => {
        // A caller that asks and does not read yet.
        const caller = net.connect(port, '127.0.0.1');
        caller.write('GET /v1/proxy/a/download HTTP/1.1\r\nHost: tokend\r\n\r\n');
        caller.pause();
        closers.push(() => caller.destroy());
        callerSocket = caller;
      });
    });
    let callerSocket: net.Socket | undefined;
    const res = await response;
    const url = new URL('http://127.0.0.1:1/api/download');
    const route = {
      url,
      origin: url.origin,
      path: url.pathname,
      protocol: url.protocol,
      loopback: true,
      apiBase: 'http://127.0.0.1:1/api',
      account: 'a',
    };
    const exchange = new Exchange(
      res,
      route,
      () => false,
      60_000,
      () => undefined,
      () => undefined,
    );
    let resumed = 0;
    exchange.onHeaders(200, [Buffer.from('Content-Length'), Buffer.from(String(total))], () => resumed++);
    // One 64 KiB read is past the socket's own 16 KiB mark: it must not pause the upstream.
    expect(exchange.onData(chunk)).toBe(true);
    let held = chunk.length;
    while (held < total && exchange.onData(chunk)) held += chunk.length;
    held += chunk.length;
    // Paused, with a bounded buffer: the caller has not read a byte.
    expect(held).toBeLessThan(total);
    expect(res.writableLength).toBeGreaterThanOrEqual(STREAM_BUFFER);
    expect(resumed).toBe(0);
    // The caller reads: once what was held is written, the upstream goes on.
    callerSocket?.resume();
    while (resumed === 0) await once(res, 'drain');
    expect(res.writableLength).toBe(0);
  });

  it('an upstream socket takes a 64 KiB upload chunk without waiting for drain', async () => {
    const port = await serve((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    const sockets: net.Socket[] = [];
    const onConnected = (m: unknown) => sockets.push((m as { socket: net.Socket }).socket);
    diagnostics.subscribe('undici:client:connected', onConnected);
    closers.push(() => diagnostics.unsubscribe('undici:client:connected', onConnected));
    const answer = await dispatcherFor({}).request({ origin: `http://127.0.0.1:${port}`, path: '/', method: 'PUT', body: 'x' });
    expect(await answer.body.text()).toBe('ok');
    expect(sockets).toHaveLength(1);
    // undici's 64 KiB: every 64 KiB chunk of a proxied upload paused the caller's body.
    expect(sockets[0].writableHighWaterMark).toBeGreaterThan(64 * 1024);
  });
});
