/**
 * HTTP/1.1 over the daemon's Unix socket, streaming both ways: a request body may be a
 * Node stream, and the response comes back with its body unread. The socket is connected
 * before anything is written, so "nothing listens" (start the daemon, try again) is told
 * apart from a failure halfway through a request. Such a failure (the daemon restarting)
 * reaches the caller as a TokendError `daemon_unreachable`, never as a raw socket error;
 * only a call that may be repeated without harm (`json` with `idempotent`) is sent once more.
 */
import http from 'node:http';
import net from 'node:net';
import { pipeline, type Readable } from 'node:stream';
import { CLIENT_HEADER } from '../protocol/routes.js';
import { withAutostart } from '../protocol/autostart.js';
import { checkSocketBeforeSending } from '../protocol/local-trust.js';
import { connectionError, daemonUnreachable, errorFromAnswer, TokendError } from './errors.js';

export interface TransportOptions {
  socket: string;
  /** Where an autostarted daemon keeps its data and its log. */
  dataDir: string;
  logFile: string;
  env: Readonly<Record<string, string | undefined>>;
  autostart: boolean;
  userAgent: string;
}

export interface SocketRequest {
  method: string;
  path: string;
  headers?: http.OutgoingHttpHeaders;
  /** Bytes (sent with a Content-Length) or a stream (sent chunked unless `headers` give a length). */
  body?: Uint8Array | Readable;
  /** Aborts the request, or the response body while it is being read. */
  signal?: AbortSignal;
}

/** Largest answer `json()` reads: the daemon's JSON answers are small. */
const MAX_JSON_ANSWER = 16 * 1024 * 1024;

export interface JsonOptions {
  signal?: AbortSignal;
  /**
   * Repeating the call does no harm (a read, `POST /v1/token`): when the connection breaks
   * before the answer is read, connect again once (starting the daemon where autostart
   * applies) and send it again.
   */
  idempotent?: boolean;
}

/** How long a call whose connection broke waits before it connects again. */
const RECONNECT_PAUSE_MS = 100;

/** The errors of a connection that broke once made (as opposed to one that could not be made): the kind a retry may cure. */
const brokenConnections = new WeakSet<object>();

export class SocketTransport {
  /** The start (or the wait for a daemon) under way, shared by every call that found nobody listening. */
  private starting?: Promise<void>;

  constructor(readonly o: TransportOptions) {}

  /** Send one request; resolves with the response, its body still to be read. */
  async request(r: SocketRequest): Promise<http.IncomingMessage> {
    r.signal?.throwIfAborted();
    const socket = await this.open();
    if (r.signal?.aborted) {
      socket.destroy();
      r.signal.throwIfAborted();
    }
    try {
      return await send(socket, r, this.o.userAgent);
    } catch (err) {
      throw this.broken(err, r.signal);
    }
  }

  /** A JSON exchange: the parsed 2xx answer, or the daemon's error as a TokendError. */
  async json<T>(method: string, path: string, body?: unknown, opts: JsonOptions = {}): Promise<T> {
    try {
      return await this.exchange<T>(method, path, body, opts.signal);
    } catch (err) {
      if (!opts.idempotent || !brokenConnections.has(err as object)) throw err;
      // Once more, on a new connection: to the daemon that replaced the old one, or to one
      // started now (autostart), or daemon_unreachable. Not at once: a killed daemon's
      // listening socket may outlive the connections it cut by an instant, and a connection
      // made then is cut too.
      await pause(RECONNECT_PAUSE_MS, opts.signal);
      return this.exchange<T>(method, path, body, opts.signal);
    }
  }

  /**
   * Connect. When that fails (nothing listens: a restart, a crash), every call of this
   * client that failed meanwhile waits for one start of the daemon (where autostart
   * applies): a restart under a busy app starts one daemon, not one per call, which would
   * race each other for the daemon's lock.
   */
  private async open(): Promise<net.Socket> {
    try {
      return await connect(this.o.socket);
    } catch {
      this.starting ??= this.connectOrStart()
        .then((socket) => void socket.destroy())
        .finally(() => (this.starting = undefined));
      await this.starting;
      return this.connectOrStart();
    }
  }

  /** Connect, starting the daemon when nothing listens (and autostart is on); daemon_unreachable otherwise. */
  private connectOrStart(): Promise<net.Socket> {
    return withAutostart(() => connect(this.o.socket), {
      paths: this.o,
      env: this.o.env,
      autostart: this.o.autostart,
      unreachable: daemonUnreachable,
    });
  }

  /** A failure of the connection once made, as the SDK's error, remembered as one a retry may cure. */
  broken(err: unknown, signal?: AbortSignal): unknown {
    const e = connectionError(err, this.o.socket, signal);
    if (e !== err) brokenConnections.add(e as object);
    return e;
  }

  /** A whole (small) answer body as UTF-8; a connection that breaks meanwhile is a TokendError. */
  async text(res: http.IncomingMessage, limit: number, signal?: AbortSignal): Promise<string> {
    return (await this.bytes(res, limit, signal)).toString('utf8');
  }

  /** A whole (small) answer body, its first `limit` bytes (readBytes); a connection that breaks meanwhile is a TokendError. */
  async bytes(res: http.IncomingMessage, limit: number, signal?: AbortSignal): Promise<Buffer> {
    try {
      return await readBytes(res, limit);
    } catch (err) {
      throw this.broken(err, signal);
    }
  }

  private async exchange<T>(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const res = await this.request({
      method,
      path,
      headers: payload ? { 'content-type': 'application/json', accept: 'application/json' } : { accept: 'application/json' },
      body: payload,
      signal,
    });
    const status = res.statusCode ?? 0;
    const text = await this.text(res, MAX_JSON_ANSWER, signal);
    if (status < 200 || status >= 300) throw errorFromAnswer(status, text, header(res, 'retry-after'));
    try {
      return (text ? JSON.parse(text) : undefined) as T;
    } catch {
      throw new TokendError('internal', `the daemon answered ${status} with a body that is not JSON`, { status });
    }
  }
}

/** One response header as a string (the first, if repeated). */
export function header(res: http.IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Read a whole (small) body; past `limit` bytes the rest is dropped. */
async function readBytes(res: http.IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (size < limit) chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks).subarray(0, limit);
}

function connect(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // Another user's socket gets nothing: no secret, no request (local-trust.ts).
    checkSocketBeforeSending(socketPath);
    const socket = net.createConnection({ path: socketPath });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

function send(socket: net.Socket, r: SocketRequest, userAgent: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { [CLIENT_HEADER]: userAgent, ...r.headers, host: 'tokend' };
    if (r.body instanceof Uint8Array) headers['content-length'] = r.body.byteLength;
    // No agent: this request owns the connection it was given, and closes it when done.
    const req = http.request({ createConnection: () => socket, method: r.method, path: r.path, headers });
    let response: http.IncomingMessage | undefined;
    const signal = r.signal;
    const onAbort = () => {
      response?.destroy(signal!.reason);
      req.destroy(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const forget = () => signal?.removeEventListener('abort', onAbort);
    req.once('response', (res) => {
      response = res;
      res.once('close', forget);
      resolve(res);
    });
    req.once('error', (err) => {
      forget();
      reject(err);
    });
    if (r.body === undefined || r.body instanceof Uint8Array) {
      req.end(r.body);
    } else {
      // An answer that comes before the body is all sent (an error, say) ends the upload;
      // the failure it causes here is then not the caller's concern.
      pipeline(r.body, req, (err) => {
        if (err && !response) req.destroy(err);
      });
    }
  });
}

/** Wait `ms`; rejects with the signal's reason when it fires first. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    if (signal?.aborted) return aborted();
    signal?.addEventListener('abort', aborted, { once: true });
  });
}
