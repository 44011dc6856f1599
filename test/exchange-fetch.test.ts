/**
 * exchangeFetch (src/daemon/outbound.ts), the token endpoint's client: what oauth4webapi
 * gets back is a fetch `Response` (status, headers, body), the connection is kept alive
 * from one refresh to the next, and its failures read like fetch's, so the driver's errors
 * (drivers/http-failure.ts) say the same as before. Against a real node:http server.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transportFailure } from '../src/daemon/drivers/http-failure.js';
import { exchangeFetch } from '../src/daemon/outbound.js';

describe('exchangeFetch', () => {
  let server: http.Server;
  let base: string;
  let connections = 0;
  const seen: { method?: string; body: string; type?: string; length?: string }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method, body, type: req.headers['content-type'], length: req.headers['content-length'] });
        if (req.url === '/empty') {
          res.writeHead(204).end();
          return;
        }
        if (req.url === '/hang') return; // never answers
        if (req.url === '/slow') {
          // Past the agent's 4 s idle timeout: it closes idle connections, never one awaiting its answer.
          setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"late":true}'), 4500);
          return;
        }
        res.setHeader('content-type', 'application/json');
        res.setHeader('dpop-nonce', 'n-1');
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.writeHead(req.url === '/refused' ? 400 : 200);
        res.end(JSON.stringify(req.url === '/refused' ? { error: 'invalid_grant' } : { access_token: 'at', token_type: 'bearer' }));
      });
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  const post = (path: string, signal: AbortSignal = AbortSignal.timeout(5000)) =>
    exchangeFetch({})(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded;charset=UTF-8', accept: 'application/json' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'r t&1' }),
      redirect: 'manual',
      signal,
    });

  it('posts the form and answers with a Response: status, every header (repeated ones kept), the body; one kept-alive connection', async () => {
    const before = connections;
    const ok = await post('/token');
    expect(ok).toBeInstanceOf(Response);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('dpop-nonce')).toBe('n-1');
    expect(ok.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(await ok.json()).toEqual({ access_token: 'at', token_type: 'bearer' });
    const refused = await post('/refused');
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({ error: 'invalid_grant' });
    const empty = await post('/empty');
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
    expect(connections - before).toBe(1);
    const form = 'grant_type=refresh_token&refresh_token=r+t%261';
    expect(seen.at(-1)).toEqual({
      method: 'POST',
      body: form,
      type: 'application/x-www-form-urlencoded;charset=UTF-8',
      length: String(form.length),
    });
  });

  it('waits for an answer slower than the idle timeout of its kept-alive connections', async () => {
    const late = await post('/slow', AbortSignal.timeout(20_000));
    expect(late.status).toBe(200);
    expect(await late.json()).toEqual({ late: true });
  }, 30_000);

  it("fails like fetch: a refused connection is TypeError('fetch failed') with its code, a timeout the signal's reason", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    const refused = await exchangeFetch({})(`http://127.0.0.1:${port}/token`, { method: 'POST', body: 'a=1', redirect: 'manual' }).catch(
      (e) => e,
    );
    expect(refused).toBeInstanceOf(TypeError);
    expect(refused.message).toBe('fetch failed');
    expect(refused.cause.code).toBe('ECONNREFUSED');
    // Never sent: the driver knows the refresh token was not spent.
    expect(transportFailure(refused, 'token endpoint')).toMatchObject({ kind: 'transient', outcomeUnknown: false });

    const signal = AbortSignal.timeout(200);
    const hung = await post('/hang', signal).catch((e) => e);
    expect(hung).toBe(signal.reason);
    expect(transportFailure(hung, 'token endpoint', signal)).toMatchObject({
      kind: 'transient',
      outcomeUnknown: true,
      message: 'the token endpoint did not answer in time (timed out)',
    });
  });
});
