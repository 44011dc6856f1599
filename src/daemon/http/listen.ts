/**
 * Where the daemon listens: its Unix socket (or the one systemd hands it), the optional
 * loopback TCP listener, and closing both on shutdown. A failure throws with a message that
 * names the place; main.ts reports it and exits.
 */
import fs from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import { listenerGuard, loadOrCreateListenKey, type ListenAddress } from './loopback-listener.js';
import { createHttpServer } from './entry.js';

type Entry = Parameters<typeof createHttpServer>[0];

/** Unix sockets refuse (EAGAIN) instead of queueing past the backlog: make room for bursts. */
const BACKLOG = 4096;

/** Is something answering on this Unix socket? (sock-daemon: ping before taking over.) */
function socketAnswers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(socket);
    conn.once('connect', () => {
      conn.destroy();
      resolve(true);
    });
    conn.once('error', () => resolve(false));
  });
}

function listening(server: http.Server, listen: () => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => resolve());
    listen();
  });
}

/**
 * Listen on the inherited socket-activation `fd`, or bind `socket` (a stale one nobody
 * answers on is replaced) and make it 0600. Returns the path it bound, to remove at the end.
 */
async function listenOnSocket(server: http.Server, at: { fd?: number; socket: string }): Promise<string | undefined> {
  const { fd, socket } = at;
  if (fd === undefined && fs.existsSync(socket)) {
    if (await socketAnswers(socket)) {
      throw new Error(`another daemon answers on ${socket} (it uses a different data folder); stop it or choose another --socket`);
    }
    fs.rmSync(socket, { force: true });
  }
  try {
    await listening(server, () => server.listen(fd !== undefined ? { fd, backlog: BACKLOG } : { path: socket, backlog: BACKLOG }));
  } catch (err) {
    throw new Error(`cannot listen on ${socket}: ${(err as Error).message}`);
  }
  if (fd !== undefined) return undefined;
  // The socket lives in a 0700 folder and is bound under umask 077; make it 0600 exactly.
  fs.chmodSync(socket, 0o600);
  return socket;
}

/** The loopback TCP listener: the same entry behind the daemon key's guard (loopback-listener.ts). */
async function listenOnLoopback(entry: Entry, at: ListenAddress, keyFile: string, appKeysFile?: string): Promise<http.Server> {
  loadOrCreateListenKey(keyFile);
  const tcp = createHttpServer(entry, listenerGuard({ keyFile, appKeysFile, port: at.port }));
  await listening(tcp, () => tcp.listen({ host: at.host, port: at.port }));
  return tcp;
}

export interface Listening {
  server: http.Server;
  /** The loopback listener, when asked for. */
  tcp?: http.Server;
  /** The socket path this daemon bound (none under socket activation), to remove when it stops. */
  boundSocket?: string;
}

/**
 * Serve `entry` on the socket and, with `loopback`, on the loopback listener too. When the
 * second cannot listen, the first is closed again (and its socket removed) before this throws.
 */
export async function listenAll(
  entry: Entry,
  at: { fd?: number; socket: string; loopback?: { address: ListenAddress; spec: string; keyFile: string; appKeysFile?: string } },
  /** Checks the socket's connections as they are accepted (caller/connection.ts), before it listens. */
  guard?: (server: net.Server) => void,
): Promise<Listening> {
  const server = createHttpServer(entry);
  guard?.(server);
  const boundSocket = await listenOnSocket(server, at);
  if (!at.loopback) return { server, boundSocket };
  try {
    return { server, boundSocket, tcp: await listenOnLoopback(entry, at.loopback.address, at.loopback.keyFile, at.loopback.appKeysFile) };
  } catch (err) {
    server.close();
    if (boundSocket) fs.rmSync(boundSocket, { force: true });
    throw new Error(`cannot listen on ${at.loopback.spec}: ${(err as Error).message}`);
  }
}

/**
 * Stop accepting; requests in flight (a refresh a client waits for) get up to `graceMs` to
 * finish, and only then are the connections cut.
 */
export function closeServers(servers: Array<http.Server | undefined>, graceMs: number): Promise<void> {
  const open = servers.filter((s): s is http.Server => s !== undefined);
  return new Promise<void>((resolve) => {
    let left = open.length;
    if (left === 0) resolve();
    for (const s of open) {
      s.close(() => {
        if (--left === 0) resolve();
      });
      s.closeIdleConnections();
    }
    setTimeout(() => {
      for (const s of open) s.closeAllConnections();
      resolve();
    }, graceMs).unref();
  });
}
