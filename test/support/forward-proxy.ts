/**
 * A real forward proxy on 127.0.0.1, as a corporate network has one: CONNECT tunnels for
 * https (RFC 9110 §9.3.6) and absolute-form requests for plain http (RFC 9112 §3.2.2). It
 * records what went through it; it sees only the CONNECT target of a tunnel, never its bytes.
 */
import http from 'node:http';
import net from 'node:net';
import { listenOnLoopback } from './loopback.js';

export interface ForwardProxy {
  url: string;
  /** `CONNECT host:port`, or `GET http://…` (method and target, no headers). */
  seen: string[];
  close(): Promise<void>;
}

export async function startForwardProxy(): Promise<ForwardProxy> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const target = new URL(req.url ?? '');
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: `${target.pathname}${target.search}`, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    seen.push(`CONNECT ${req.url}`);
    const [host, port] = (req.url ?? '').split(':');
    const up = net.connect(Number(port), host === 'localhost' ? '127.0.0.1' : host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  const { url, close } = await listenOnLoopback(server);
  return { url, seen, close };
}
