/**
 * How the test servers listen (the IdP, the fake providers, the API, the git server, the
 * forward proxy): on a random port of 127.0.0.1, with a `close()` that cuts the connections
 * still open (keep-alive, a request left hanging on purpose, a tunnel) instead of waiting for
 * them, so a test ends when it is done.
 */
import { once } from 'node:events';
import type { AddressInfo, Server, Socket } from 'node:net';

export interface LoopbackListener {
  port: number;
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Stop listening and destroy every open connection; resolves once the server is closed. Calling it again is harmless. */
  close(): Promise<void>;
}

export async function listenOnLoopback(server: Server): Promise<LoopbackListener> {
  const sockets = new Set<Socket>();
  // A TLS server reports the TCP socket before the handshake: destroying it ends the TLS connection too.
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      })),
  };
}
