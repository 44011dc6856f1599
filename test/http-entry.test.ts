/**
 * The daemon's HTTP servers (src/daemon/http/entry.ts): the keep-alive rule holds for every
 * answer a handler writes, through the servers' own ServerResponse, with no handler arming it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpServer } from '../src/daemon/http/entry.js';

let server: http.Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

/** Serve `handler` on 127.0.0.1 and send one request whose body (if any) is still arriving when the answer comes. */
async function answerTo(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void, withBody: boolean) {
  server = createHttpServer(handler);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return new Promise<{ status?: number; connection?: string }>((resolve, reject) => {
    const headers = withBody ? { 'transfer-encoding': 'chunked' } : {};
    const req = http.request(
      { host: '127.0.0.1', port, method: withBody ? 'POST' : 'GET', path: '/x', headers, agent: new http.Agent({ keepAlive: true }) },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode, connection: res.headers.connection });
        req.destroy();
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    if (withBody) req.write('first part, the rest never comes');
    else req.end();
  });
}

describe('the daemon HTTP servers', () => {
  it('an answer that starts before its body has arrived says Connection: close, even through res.end() alone', async () => {
    expect(await answerTo((_req, res) => res.end('early'), true)).toEqual({ status: 200, connection: 'close' });
    expect(await answerTo((_req, res) => (res.writeHead(404), res.end()), true)).toEqual({ status: 404, connection: 'close' });
  });

  it('an answer to a request without a body keeps the connection', async () => {
    expect(await answerTo((_req, res) => res.end('ok'), false)).toEqual({ status: 200, connection: 'keep-alive' });
  });
});
