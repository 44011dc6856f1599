/**
 * What the SDK sends and how it reads the answers, against a stand-in daemon on a Unix
 * socket: the proxy route (`fetch`), whose bodies must stream both ways, and the login
 * routes the real daemon does not serve yet (the login list, the deep-link callback).
 * The stand-in records each request and answers as a test tells it to.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PROXY_ERROR_HEADER } from '../src/protocol/routes.js';
import { Tokend, TokendError } from '../src/sdk/index.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  bytes: number;
  sha256: string;
  text: string;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

const API_BASE = 'https://api.example.test/v2';

describe('the SDK on the wire (a stand-in daemon)', () => {
  let dir: string;
  let socket: string;
  let server: http.Server;
  let handler: Handler;
  let tokend: Tokend;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-'));
    socket = path.join(dir, 'd.sock');
    server = http.createServer((req, res) => handler(req, res));
    server.listen(socket);
    await once(server, 'listening');
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    handler = echo;
    tokend = new Tokend({ socket, autostart: false, userAgent: 'wire-test/1' });
  });

  /** Answers with a JSON description of the request it read. */
  const echo: Handler = (req, res) => {
    void describeRequest(req).then((seen) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(seen));
    });
  };

  const seenBy = async (res: Response) => (await res.json()) as Seen;

  describe('fetch through the proxy', () => {
    it('sends the method, the path and query under /v1/proxy/NAME/, and the headers, and hands back the answer as a Response', async () => {
      const res = await tokend.fetch('rd', '/user/settings?lang=en&x=a%20b', {
        method: 'put',
        headers: { 'x-app': 'yes', accept: 'application/json' },
        body: '{}',
      });
      expect(res).toBeInstanceOf(Response);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      const seen = await seenBy(res);
      expect(seen).toMatchObject({ method: 'PUT', url: '/v1/proxy/rd/user/settings?lang=en&x=a%20b', text: '{}' });
      expect(seen.headers).toMatchObject({
        'x-app': 'yes',
        accept: 'application/json',
        'user-agent': 'wire-test/1',
        host: 'tokend',
        'content-length': '2',
      });
      // The app's own User-Agent goes through instead.
      expect((await seenBy(await tokend.fetch('rd', 'me', { headers: { 'user-agent': 'app/2' } }))).headers['user-agent']).toBe('app/2');
    });

    it('sends each kind of body the way fetch would, with its content type', async () => {
      const form = new FormData();
      form.set('field', 'value');
      form.set('file', new Blob(['file body'], { type: 'text/plain' }), 'a.txt');
      const cases: Array<[string, NonNullable<Parameters<Tokend['fetch']>[2]>['body'], RegExp | undefined, string | RegExp]> = [
        ['string', 'héllo', /^text\/plain;charset=UTF-8$/, 'héllo'],
        ['Buffer', Buffer.from('bytes'), undefined, 'bytes'],
        ['Uint8Array', new TextEncoder().encode('u8'), undefined, 'u8'],
        ['ArrayBuffer', new TextEncoder().encode('ab').buffer, undefined, 'ab'],
        ['URLSearchParams', new URLSearchParams({ a: '1', b: 'x y' }), /^application\/x-www-form-urlencoded;charset=UTF-8$/, 'a=1&b=x+y'],
        ['Blob', new Blob(['blob'], { type: 'application/octet-stream' }), /^application\/octet-stream$/, 'blob'],
        ['FormData', form, /^multipart\/form-data; boundary=/, /name="field"\r\n\r\nvalue\r\n[\s\S]*filename="a.txt"[\s\S]*file body/],
        ['ReadableStream', new Blob(['web stream']).stream(), undefined, 'web stream'],
        ['Node Readable', Readable.from([Buffer.from('node '), Buffer.from('stream')]), undefined, 'node stream'],
      ];
      for (const [what, body, type, text] of cases) {
        const seen = await seenBy(await tokend.fetch('rd', '/upload', { method: 'POST', body }));
        if (type) expect(seen.headers['content-type'], what).toMatch(type);
        else expect(seen.headers['content-type'], what).toBeUndefined();
        if (typeof text === 'string') expect(seen.text, what).toBe(text);
        else expect(seen.text, what).toMatch(text);
      }
      // A body of known size goes with its length, a stream chunked.
      const sized = await seenBy(await tokend.fetch('rd', '/u', { method: 'POST', body: new Blob(['12345']) }));
      expect(sized.headers['content-length']).toBe('5');
      const streamed = await seenBy(await tokend.fetch('rd', '/u', { method: 'POST', body: Readable.from(['a']) }));
      expect(streamed.headers['transfer-encoding']).toBe('chunked');
      await expect(tokend.fetch('rd', '/u', { method: 'GET', body: 'x' })).rejects.toThrow(TypeError);
    });

    it('streams a request body: the daemon has the first chunk before the app has made the second', async () => {
      let firstArrived!: () => void;
      const arrived = new Promise<void>((r) => (firstArrived = r));
      handler = (req, res) => {
        req.once('data', () => firstArrived());
        echo(req, res);
      };
      const chunk = Buffer.alloc(64 * 1024, 1);
      let made = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (made === 1) await arrived; // a buffering client would wait here forever
          if (made === 16) return c.close();
          made++;
          c.enqueue(chunk);
        },
      });
      const seen = await seenBy(await tokend.fetch('rd', '/upload', { method: 'POST', body }));
      expect(seen.bytes).toBe(16 * chunk.length);
    });

    it('streams a 1 GiB download at the pace of the reader, in bounded memory', async () => {
      const total = 1024 ** 3;
      let written = 0;
      handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
        const block = Buffer.alloc(256 * 1024, 7);
        const pump = () => {
          while (written < total) {
            written += block.length;
            if (!res.write(block)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      };
      const rssBefore = process.memoryUsage().rss;
      const res = await tokend.fetch('rd', '/big.iso');
      const reader = res.body!.getReader();
      let read = (await reader.read()).value!.byteLength;
      // A reader that stops holds the sender back: the socket's buffers, not the whole file.
      await new Promise((r) => setTimeout(r, 300));
      expect(written).toBeLessThan(32 * 1024 ** 2);
      let peakRss = 0;
      for (let n = 0; ; n++) {
        const { value, done } = await reader.read();
        if (done) break;
        read += value.byteLength;
        if (n % 256 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
      }
      expect(read).toBe(total);
      expect(peakRss - rssBefore).toBeLessThan(200 * 1024 ** 2);
    });

    it('decodes gzip as fetch does; HEAD and 204 have no body', async () => {
      const payload = JSON.stringify({ items: Array.from({ length: 1000 }, (_, i) => i) });
      handler = (req, res) => {
        if (req.method === 'HEAD') {
          res.writeHead(200, { 'content-length': '1234' }).end();
        } else if (req.url!.endsWith('/gone')) {
          res.writeHead(204).end();
        } else {
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(zlib.gzipSync(payload));
        }
      };
      expect(await (await tokend.fetch('rd', '/items')).json()).toEqual(JSON.parse(payload));
      const head = await tokend.fetch('rd', '/items', { method: 'HEAD' });
      expect([head.status, head.body, head.headers.get('content-length')]).toEqual([200, null, '1234']);
      const gone = await tokend.fetch('rd', '/gone', { method: 'DELETE' });
      expect([gone.status, gone.body]).toEqual([204, null]);
    });

    it("throws the daemon's own errors as TokendError, and hands back the API's, whatever they look like", async () => {
      const wire = (code: string, extra: object = {}) =>
        JSON.stringify({ error: { code, message: `tokend says ${code}`, account: 'rd', ...extra } });
      handler = (req, res) => {
        if (req.url!.endsWith('/no-token'))
          res.writeHead(409, { 'content-type': 'application/json', [PROXY_ERROR_HEADER]: 'reauth_required' }).end(wire('reauth_required'));
        else if (req.url!.endsWith('/upstream-down'))
          res.writeHead(504, { [PROXY_ERROR_HEADER]: 'upstream_timeout', 'retry-after': '5' }).end(wire('upstream_timeout'));
        // The API's own 404, in the same shape as ours: still the API's.
        else res.writeHead(404, { 'content-type': 'application/json' }).end(wire('not_found'));
      };
      const noToken = await tokend.fetch('rd', '/no-token').catch((e: unknown) => e);
      expect(noToken).toBeInstanceOf(TokendError);
      expect(noToken).toMatchObject({ code: 'reauth_required', status: 409, account: 'rd', message: 'tokend says reauth_required' });
      expect(await tokend.fetch('rd', '/upstream-down').catch((e: unknown) => e)).toMatchObject({
        code: 'upstream_timeout',
        status: 504,
        retryAfter: 5,
      });
      const apiSays = await tokend.fetch('rd', '/missing');
      expect(apiSays.status).toBe(404);
      expect(await apiSays.json()).toMatchObject({ error: { code: 'not_found' } });
    });

    it("takes an absolute URL under the account's api_base, and refuses one outside without sending it", async () => {
      const urls: string[] = [];
      handler = (req, res) => {
        urls.push(req.url!);
        if (req.url === '/v1/accounts/rd')
          return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'rd', api_base: API_BASE }));
        echo(req, res);
      };
      expect((await seenBy(await tokend.fetch('rd', `${API_BASE}/bookings?take=5`))).url).toBe('/v1/proxy/rd/bookings?take=5');
      const outside = await tokend.fetch('rd', 'https://elsewhere.example/v2/bookings').catch((e: unknown) => e);
      expect(outside).toMatchObject({ code: 'invalid_request' });
      expect(urls).toEqual(['/v1/accounts/rd', '/v1/proxy/rd/bookings?take=5', '/v1/accounts/rd']);
    });

    it('aborts a download halfway at the signal: the reader gets an AbortError and the connection closes', async () => {
      let closed!: () => void;
      const connectionClosed = new Promise<void>((r) => (closed = r));
      handler = (req, res) => {
        res.writeHead(200);
        res.write(Buffer.alloc(1024));
        req.socket.once('close', () => closed());
      };
      const stop = new AbortController();
      const res = await tokend.fetch('rd', '/slow', { signal: stop.signal });
      const reader = res.body!.getReader();
      await reader.read();
      stop.abort();
      await expect(reader.read()).rejects.toMatchObject({ name: 'AbortError' });
      await connectionClosed;
      await expect(tokend.fetch('rd', '/slow', { signal: stop.signal })).rejects.toMatchObject({ name: 'AbortError' });
    });
  });

  describe('login routes', () => {
    it('lists logins by account, status and task, and hands a deep-link callback over as {url}', async () => {
      const seen: Seen[] = [];
      const login = { id: 'L1', account: 'rd', status: 'pending' };
      handler = (req, res) => {
        void describeRequest(req).then((s) => {
          seen.push(s);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(req.url!.split('?')[0] === '/v1/logins' ? { logins: [login] } : login));
        });
      };
      expect(await tokend.logins({ account: 'rd', status: 'pending', task: 'task 7/x' })).toEqual([login]);
      expect(await tokend.logins()).toEqual([login]);
      await tokend.completeLogin('L1', new URL('com.example.app:/oauth2redirect?code=c&state=s'));
      await tokend.login('rd', { task: 'task-7' });
      expect(seen.map((s) => [s.method, s.url, s.text])).toEqual([
        ['GET', '/v1/logins?account=rd&status=pending&task=task+7%2Fx', ''],
        ['GET', '/v1/logins', ''],
        ['POST', '/v1/logins/L1/callback', JSON.stringify({ url: 'com.example.app:/oauth2redirect?code=c&state=s' })],
        ['POST', '/v1/accounts/rd/login', JSON.stringify({ task: 'task-7' })],
      ]);
    });
  });
});

async function describeRequest(req: http.IncomingMessage): Promise<Seen> {
  const hash = createHash('sha256');
  const kept: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    if (bytes <= 1 << 20) kept.push(chunk);
  }
  return {
    method: req.method!,
    url: req.url!,
    headers: req.headers,
    bytes,
    sha256: hash.digest('hex'),
    text: bytes <= 1 << 20 ? Buffer.concat(kept).toString('utf8') : '',
  };
}
