/**
 * `GET /v1/health` has a lane of its own (src/daemon/http/health-route.ts), answered before
 * the Hono app is loaded. It must answer byte for byte as the app does: the same status,
 * the same header lines (names as written), the same body. A health request with a body
 * is left to the app, so one daemon shows both answers.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';

let t: TestDaemon;
beforeAll(async () => {
  t = await startTestDaemon();
});
afterAll(async () => {
  await t?.cleanup();
});

/** One request written as raw bytes; the answer as its header lines (without Date) and its JSON body. */
function raw(socket: string, request: string): Promise<{ head: string[]; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    const chunks: Buffer[] = [];
    c.on('data', (b) => chunks.push(b));
    c.on('error', reject);
    c.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head = '', body = ''] = text.split('\r\n\r\n');
      resolve({ head: head.split('\r\n').filter((l) => !l.startsWith('Date:')), body: JSON.parse(body) });
    });
    c.end(request);
  });
}

describe('GET /v1/health', () => {
  it('answers on its lane exactly as the Hono app answers it', async () => {
    const lane = await raw(t.d.socket, 'GET /v1/health HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n');
    const app = await raw(t.d.socket, 'GET /v1/health HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}');
    const withQuery = await raw(t.d.socket, 'GET /v1/health?x=1 HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n');
    expect(lane.head[0]).toBe('HTTP/1.1 200 OK');
    // Content-Length included: a fresh daemon's uptime_s is one digit in both.
    expect(lane.head).toEqual(app.head);
    const { uptime_s: a, ...laneBody } = lane.body;
    const { uptime_s: b, ...appBody } = app.body;
    expect(typeof a).toBe('number');
    expect(typeof b).toBe('number');
    expect(laneBody).toEqual(appBody);
    expect(laneBody).toMatchObject({ status: 'ok', pid: t.d.pid, accounts: 0 });
    expect(withQuery.head).toEqual(lane.head);
  });
});
