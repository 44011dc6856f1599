/**
 * The caller of each connection on the Unix socket. When a connection is accepted, before
 * node reads a byte of it, the kernel names its peer (SO_PEERCRED): a peer of another uid is
 * cut there, whatever the socket file's mode. The rest (executable, script, unit, parents) is
 * read from /proc only when a route first asks for it, and kept for the connection: a
 * keep-alive client pays for it once, and a connection no route asks about not at all. The
 * connections of one process share the first read of it, checked again for each
 * (identity-cache.ts).
 */
import type { IncomingMessage } from 'node:http';
import type { Server, Socket } from 'node:net';
import type { Logger } from '../log.js';
import type { PeerAddon } from './addon.js';
import { CallerCache } from './identity-cache.js';
import { programKey, type CallerIdentity } from './proc.js';

const PEER = Symbol('tokend.peer');
interface Peer {
  pid: number;
  at: number;
  callers: CallerCache;
  /** Read on first use; null when the peer could not be verified (gone, its pid reused). */
  identity?: CallerIdentity | null;
}
type PeerSocket = Socket & { [PEER]?: Peer };

/** A refused uid is logged at most this often (a flood of connections is one line a minute). */
const REFUSAL_LOG_MS = 60_000;

/**
 * Check every connection `server` accepts: registered ahead of node's HTTP parser, so a peer
 * of another uid (or one the kernel cannot name) is destroyed before anything is read.
 */
export function guardConnections(
  server: Server,
  addon: PeerAddon,
  log: Logger,
  callers = new CallerCache(),
  uid = process.getuid?.(),
): void {
  let lastLogged = 0;
  server.prependListener('connection', function checkPeer(socket: PeerSocket) {
    const fd = (socket as Socket & { _handle?: { fd?: number } })._handle?.fd;
    const cred = fd === undefined || fd < 0 ? null : addon.peer(fd);
    if (cred && (uid === undefined || cred.uid === uid)) {
      socket[PEER] = { pid: cred.pid, at: cred.at, callers };
      return;
    }
    socket.destroy();
    const now = Date.now();
    if (now - lastLogged >= REFUSAL_LOG_MS) {
      lastLogged = now;
      log.warn('refused a connection from another user', cred ? { uid: cred.uid, pid: cred.pid } : { reason: 'no peer credentials' });
    }
  });
}

const KEY_CALLER = Symbol('tokend.keyCaller');
type KeyedRequest = IncomingMessage & { [KEY_CALLER]?: CallerIdentity };
/** One identity per app name, so a keep-alive app's rows group as one program (audit.ts). */
const keyCallers = new Map<string, CallerIdentity>();

/**
 * On the loopback listener there is no peer process to read: the app key a request showed is
 * its caller (loopback-listener.ts). The daemon key names no app (the administrator's).
 */
export function setKeyCaller(req: IncomingMessage, app: string): void {
  let id = keyCallers.get(app);
  if (!id) {
    const caller = { key: app, parents: [] };
    id = { caller, start: 0, tty: false, program: programKey(caller) };
    if (keyCallers.size < 1000) keyCallers.set(app, id);
  }
  (req as KeyedRequest)[KEY_CALLER] = id;
}

/** The app key a request showed on the loopback listener, as its caller; undefined on the Unix socket (nothing is read). */
export function keyCallerOf(req: IncomingMessage): CallerIdentity | undefined {
  return (req as KeyedRequest)[KEY_CALLER];
}

/** The connection each peer identity was read for (one identity per Unix-socket connection). */
const connections = new WeakMap<CallerIdentity, Socket>();

/** The verified caller of `req`: its app key on the listener, else its connection's peer; undefined without the addon, or when it could not be verified. */
export function callerOf(req: IncomingMessage | undefined): CallerIdentity | undefined {
  const keyed = req && keyCallerOf(req);
  if (keyed) return keyed;
  const socket = req?.socket as PeerSocket | undefined;
  const peer = socket?.[PEER];
  if (!peer) return undefined;
  if (peer.identity === undefined) {
    peer.identity = peer.callers.identify(peer.pid, peer.at) ?? null;
    if (peer.identity) connections.set(peer.identity, socket!);
  }
  return peer.identity ?? undefined;
}

/**
 * The Unix-socket connection a peer identity came on, so a wait on its behalf (an approval,
 * caller/approvals.ts) ends when the caller hangs up; undefined for a listener app key
 * (shared by every connection of that app).
 */
export function connectionOf(who: CallerIdentity): Socket | undefined {
  return connections.get(who);
}
