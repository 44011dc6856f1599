/**
 * A real HTTP API behind tokend's proxy in tests: it accepts only access tokens the real
 * test IdP introspects as active (RFC 7662), as a resource server would, and records every
 * request it sees. Routes under `/api`:
 *
 * - `ANY /api/echo…`: `{method, path, query, headers, body}` (headers without authorization);
 * - `GET /api/download?bytes=N`: N bytes, streamed with backpressure;
 * - `POST|PUT /api/upload`: counts the bytes it is sent, `{bytes}`;
 * - `GET /api/events`: three server-sent events 300 ms apart;
 * - `GET /api/redirect?to=URL`: 302 to URL; `GET /api/slow`: never answers;
 * - `GET /api/headers`: an answer whose headers a proxy must pass in their order and case,
 *   but for the hop-by-hop ones, those its Connection names, and a forged `x-tokend-error`.
 */
import http from 'node:http';
import { Readable } from 'node:stream';
import type { TestIdp } from './idp.js';
import { listenOnLoopback } from './loopback.js';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface TestApi {
  /** `http://127.0.0.1:PORT/api`: what an account's api_base names. */
  base: string;
  seen: SeenRequest[];
  /** Tokens the API refused (introspection said inactive). */
  refused: number;
  /** What failed inside the API (an introspection that could not be made), for a test's failure message. */
  errors: string[];
  close(): Promise<void>;
}

const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/**
 * Answer `bytes` bytes of `a` in 64 KiB writes that wait for `drain`, so a download never sits
 * in memory whole: what the proxy's streaming tests and the bench's download rows measure.
 */
export function sendBytes(res: http.ServerResponse, bytes: number): void {
  let left = bytes;
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

/** `bytes` bytes of `b` as a stream of 64 KiB chunks: an upload that never sits in memory whole. */
export function byteSource(bytes: number): Readable {
  let left = bytes;
  const chunk = Buffer.alloc(64 * 1024, 0x62);
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(left, chunk.length);
      left -= n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

/**
 * `rememberActive`: introspect each token once and trust it afterwards (a resource server
 * caching introspection), for load tests where 1000 introspections would be the bottleneck;
 * off by default, so a revoked token is refused at once.
 */
export async function startApi(idp: TestIdp, opts: { rememberActive?: boolean } = {}): Promise<TestApi> {
  const api: TestApi = { base: '', seen: [], refused: 0, errors: [], close: async () => undefined };
  const known = new Map<string, Promise<boolean>>();
  // Once more after a network failure, as a resource server's introspection client would: a
  // pooled connection to the IdP can be closed by it just as it is reused.
  const introspect = (token: string) =>
    idp.introspect(token).catch((err) => (err instanceof TypeError ? idp.introspect(token) : Promise.reject(err)));
  const isActive = (token: string) => {
    if (!opts.rememberActive) return introspect(token).then((r) => r.active);
    let p = known.get(token);
    if (!p) known.set(token, (p = introspect(token).then((r) => r.active)));
    return p;
  };
  const server = http.createServer((req, res) => {
    // A caller (the proxy) may go away mid-request: that is not the API's failure.
    handle(req, res).catch((err: Error) => {
      api.errors.push(`${req.method} ${new URL(req.url ?? '/', 'http://api.test').pathname}: ${err.message}`);
      res.destroy();
    });
  });
  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    api.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://api.test');
    const auth = req.headers.authorization ?? '';
    const token = /^Bearer (.+)$/.exec(auth)?.[1];
    const active = token ? await isActive(token) : false;
    if (!active) {
      api.refused++;
      req.resume();
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="api", error="invalid_token"', 'content-type': 'application/json' });
      res.end('{"message":"bad token"}');
      return;
    }
    const path = url.pathname;
    if (path.startsWith('/api/echo')) {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const { authorization: _a, ...headers } = req.headers;
      res.writeHead(200, { 'content-type': 'application/json', 'x-api': 'yes', 'set-cookie': ['a=1', 'b=2'] });
      res.end(
        JSON.stringify({
          method: req.method,
          path,
          query: Object.fromEntries(url.searchParams),
          headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    } else if (path === '/api/download') {
      sendBytes(res, Number(url.searchParams.get('bytes') ?? 0));
    } else if (path === '/api/upload') {
      let bytes = 0;
      for await (const c of req) bytes += (c as Buffer).length;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ bytes }));
    } else if (path === '/api/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (let i = 1; i <= 3; i++) {
        res.write(`event: tick\ndata: ${i}\n\n`);
        await new Promise((r) => setTimeout(r, 300));
      }
      res.end();
    } else if (path === '/api/headers') {
      res.writeHead(200, [
        ['X-First', '1'],
        ['Connection', 'keep-alive, X-Hop-Answer'],
        ['X-Hop-Answer', 'dropped'],
        ['X-Tokend-Error', 'forged'],
        ['Set-Cookie', 'a=1'],
        ['Set-Cookie', 'b=2'],
        ['X-Last', 'z'],
        ['Content-Type', 'text/plain'],
      ]);
      res.end('ok');
    } else if (path === '/api/redirect') {
      res.writeHead(302, { location: url.searchParams.get('to') ?? '/' });
      res.end();
    } else if (path === '/api/slow') {
      // never answers
    } else {
      res.writeHead(404).end();
    }
  }
  const listener = await listenOnLoopback(server);
  api.base = `${listener.url}/api`;
  api.close = listener.close;
  return api;
}
