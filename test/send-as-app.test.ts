/**
 * `sendAsApp` (src/daemon/http/wire.ts) writes the header lines the Hono app writes through
 * @hono/node-server for the same status, headers and body, so a lane sharing a route with
 * the app answers byte for byte as it. Checked against Hono itself on a real server: an
 * error with one header, one with two (a 503's retry-after), and a helper answer's four.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendAsApp } from '../src/daemon/http/wire.js';

const CASES: Array<{ status: number; headers: Record<string, string>; body: string }> = [
  { status: 404, headers: { 'Content-Type': 'application/json' }, body: '{"error":{"code":"not_found","message":"x"}}' },
  { status: 503, headers: { 'Content-Type': 'application/json', 'retry-after': '5' }, body: '{"error":{"code":"upstream_unavailable"}}' },
  {
    status: 422,
    headers: {
      'content-type': 'application/octet-stream',
      'cache-control': 'no-store',
      'x-tokend-exit': '1',
      'x-tokend-stderr': 'tokend: no',
    },
    body: '',
  },
];

const app = new Hono();
// Copies: @hono/node-server writes its Content-Length into the header record it is given.
for (const [i, c] of CASES.entries()) app.get(`/${i}`, (ctx) => ctx.body(c.body, c.status as 200, { ...c.headers }));
const hono = getRequestListener(app.fetch);
const lane = (req: http.IncomingMessage, res: http.ServerResponse) => {
  const c = CASES[Number(req.url?.slice(1))]!;
  sendAsApp(res, c.status, { ...c.headers }, c.body);
};

const servers: http.Server[] = [];
const ports: number[] = [];
beforeAll(async () => {
  for (const handler of [hono, lane]) {
    const s = http.createServer(handler);
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    servers.push(s);
    ports.push((s.address() as AddressInfo).port);
  }
});
afterAll(async () => {
  for (const s of servers) await new Promise((resolve) => s.close(resolve));
});

/** The answer's bytes, without its Date line. */
function raw(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    c.on('data', (b) => chunks.push(b));
    c.on('error', reject);
    c.on('close', () =>
      resolve(
        Buffer.concat(chunks)
          .toString('utf8')
          .replace(/Date: [^\r]*\r\n/, ''),
      ),
    );
    c.end(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  });
}

describe('sendAsApp', () => {
  it('writes what Hono writes through @hono/node-server, header lines included', async () => {
    for (let i = 0; i < CASES.length; i++) {
      const [fromApp, fromLane] = [await raw(ports[0]!, `/${i}`), await raw(ports[1]!, `/${i}`)];
      expect(fromApp).toContain(`HTTP/1.1 ${CASES[i]!.status} `);
      expect(fromLane).toBe(fromApp);
    }
  });
});
