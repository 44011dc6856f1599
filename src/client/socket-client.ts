/**
 * The CLI's and the helpers' way to the daemon: the SDK's transport (src/sdk/socket-transport.ts)
 * and its one error, TokendError (src/sdk/errors.ts), so the command line and apps connect,
 * autostart, and read the daemon's error body the same way. Node built-ins, src/protocol and
 * those two SDK modules only: nothing more at start-up (test/client-imports.test.ts).
 */
import type http from 'node:http';
import type { Readable } from 'node:stream';
import { resolvePaths, type TokendPaths } from '../protocol/paths.js';
import { SocketTransport } from '../sdk/socket-transport.js';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface ClientOptions {
  env?: NodeJS.ProcessEnv;
  socket?: string;
  /** Start the daemon when nothing listens (default: unless TOKEND_NO_AUTOSTART=1). */
  autostart?: boolean;
  userAgent?: string;
}

/** Largest answer `raw` reads: a helper's answer is a few credentials. */
const MAX_RAW_ANSWER = 16 * 1024 * 1024;

/** The daemon, for one command: its places, and requests over the SDK's transport. */
export class TokendClient {
  readonly paths: TokendPaths;
  readonly transport: SocketTransport;

  constructor(opts: ClientOptions = {}) {
    const env = opts.env ?? process.env;
    this.paths = resolvePaths(env, opts.socket);
    this.transport = new SocketTransport({
      socket: this.paths.socket,
      dataDir: this.paths.dataDir,
      logFile: this.paths.logFile,
      env,
      autostart: opts.autostart ?? env.TOKEND_NO_AUTOSTART !== '1',
      userAgent: opts.userAgent ?? 'tokend-cli',
    });
  }

  /** JSON request; a non-2xx answer, or no daemon, throws the SDK's TokendError. */
  json<T = unknown>(method: string, urlPath: string, body?: unknown): Promise<T> {
    return this.transport.json<T>(method, urlPath, body);
  }

  /** One request whose answer is read whole, whatever its status (the helpers' byte pipe). */
  async raw(
    method: string,
    urlPath: string,
    body: Buffer,
    contentType: string,
    extraHeaders?: Record<string, string>,
  ): Promise<RawResponse> {
    const res = await this.transport.request({ method, path: urlPath, headers: { 'content-type': contentType, ...extraHeaders }, body });
    return { status: res.statusCode ?? 0, headers: res.headers, body: await this.transport.bytes(res, MAX_RAW_ANSWER) };
  }

  /** One request with a streamed body; the answer comes back unread (`tokend api`). */
  stream(method: string, urlPath: string, headers: Record<string, string>, body?: Readable): Promise<http.IncomingMessage> {
    return this.transport.request({ method, path: urlPath, headers, body });
  }
}
