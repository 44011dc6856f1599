/**
 * Keep-alive clients and request bodies a route does not read: a GET or DELETE that
 * carries a body, an unknown route, a body still arriving when the route would answer. The
 * next request on the same keep-alive connection must never fail: the daemon reads a body
 * before it answers (and when an answer must start first, it says `Connection: close`).
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { streamUpload } from './support/daemon.js';
import { useDaemon } from './support/fixtures.js';

const { d } = useDaemon();

/** A request whose body arrives in two parts, `gapMs` apart. */
function slowBody(
  agent: http.Agent,
  method: string,
  path: string,
  body: string,
  gapMs: number,
): Promise<{ status?: number; connection?: string; error?: string }> {
  return new Promise((resolve) => {
    const r = http.request(
      { socketPath: d.socket, method, path, agent, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection }));
      },
    );
    r.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code }));
    r.write(body.slice(0, 10));
    setTimeout(() => r.end(body.slice(10)), gapMs);
  });
}
function plain(agent: http.Agent, method: string, path: string, body?: string): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const r = http.request(
      { socketPath: d.socket, method, path, agent, headers: body ? { 'content-length': Buffer.byteLength(body) } : {} },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode }));
      },
    );
    r.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code }));
    r.end(body);
  });
}

describe('keep-alive', () => {
  it('a body still arriving for a route that does not read it: the answer waits for it, and the connection stays usable', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const [method, path] of [
        ['GET', '/v1/health'],
        ['GET', '/v1/nope'],
        ['DELETE', '/v1/accounts/nobody'],
        ['GET', '/v1/openapi.json'],
      ]) {
        // Longer than the router's own drain timeout: without the rule, the connection is cut.
        const a = await slowBody(agent, method, path, 'x'.repeat(70_000), 800);
        expect([method, path, a.error]).toEqual([method, path, undefined]);
        expect(a.connection).not.toBe('close');
        const b = await plain(agent, 'GET', '/v1/health');
        expect([method, path, b]).toEqual([method, path, { status: 200 }]);
      }
    } finally {
      agent.destroy();
    }
  });

  it('a body far too large: the client still sending reads the 413, not EPIPE', async () => {
    for (const headers of [{ 'content-length': 64 * 1024 * 1024 }, { 'transfer-encoding': 'chunked' }]) {
      const r = await streamUpload(d.socket, 'POST', '/v1/token', 64 * 1024 * 1024, headers);
      expect([headers, r.error, r.status]).toEqual([headers, undefined, 413]);
      expect(JSON.parse(r.text).error.code).toBe('payload_too_large');
    }
  });

  it('many mixed requests with bodies on keep-alive connections: none fails', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const paths = [
      '/v1/health',
      '/v1/accounts',
      '/v1/nope',
      '/v1/accounts/x',
      '/v1/token',
      '/v1/proxy/x/y',
      '/v1/logins',
      '/v1/credential/reject',
    ];
    const errors: string[] = [];
    try {
      for (let i = 0; i < 400; i += 8) {
        await Promise.all(
          Array.from({ length: 8 }, (_, j) => {
            const k = i + j;
            const method = ['GET', 'DELETE', 'POST', 'PUT'][k % 4];
            const body = ['', 'x', '{"a":1}', 'y'.repeat(70_000)][k % 4] || undefined;
            const send =
              k % 5 === 0 && body
                ? slowBody(agent, method, paths[k % paths.length], body, 30)
                : plain(agent, method, paths[k % paths.length], body);
            return send.then((r) => {
              if (r.error) errors.push(`${method} ${paths[k % paths.length]}: ${r.error}`);
            });
          }),
        );
      }
    } finally {
      agent.destroy();
    }
    expect(errors).toEqual([]);
  });
});
