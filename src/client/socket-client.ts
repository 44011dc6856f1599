import http from 'node:http';
import { resolvePaths, type TokendPaths } from '../protocol/paths.js';
import { withAutostart } from '../protocol/autostart.js';
import { checkSocketBeforeSending } from '../protocol/local-trust.js';

/** The daemon answered with an error body `{error:{code,message}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The daemon could not be reached (and could not be started). */
export class DaemonUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DaemonUnreachableError';
  }
}

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

/** A thin HTTP-over-Unix-socket client of the daemon; imports only node built-ins and protocol. */
export class TokendClient {
  readonly paths: TokendPaths;
  private readonly env: NodeJS.ProcessEnv;
  private readonly autostart: boolean;
  private readonly userAgent: string;

  constructor(opts: ClientOptions = {}) {
    this.env = opts.env ?? process.env;
    this.paths = resolvePaths(this.env, opts.socket);
    this.autostart = opts.autostart ?? this.env.TOKEND_NO_AUTOSTART !== '1';
    this.userAgent = opts.userAgent ?? 'tokend-cli';
  }

  /** Send one request; start the daemon first if nothing listens and autostart is on. */
  async raw(
    method: string,
    urlPath: string,
    body?: Buffer | string,
    contentType = 'application/json',
    extraHeaders?: Record<string, string>,
  ): Promise<RawResponse> {
    return withAutostart(() => this.send(method, urlPath, body, contentType, extraHeaders), {
      paths: this.paths,
      env: this.env,
      autostart: this.autostart,
      unreachable: (message) => new DaemonUnreachableError(message),
    });
  }

  /** JSON request; a non-2xx answer throws ApiError with the daemon's code and message. */
  async json<T = unknown>(method: string, urlPath: string, body?: unknown): Promise<T> {
    const res = await this.raw(method, urlPath, body === undefined ? undefined : JSON.stringify(body));
    let parsed: unknown;
    try {
      parsed = res.body.length ? JSON.parse(res.body.toString('utf8')) : undefined;
    } catch {
      throw new ApiError(res.status, 'internal', `the daemon answered ${res.status} with a body that is not JSON`, undefined);
    }
    if (res.status >= 200 && res.status < 300) return parsed as T;
    const e = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(res.status, e?.code ?? 'internal', e?.message ?? `the daemon answered ${res.status}`, parsed);
  }

  private send(
    method: string,
    urlPath: string,
    body: Buffer | string | undefined,
    contentType: string,
    extraHeaders?: Record<string, string>,
  ): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      // Another user's socket gets nothing: no secret, no request (local-trust.ts).
      checkSocketBeforeSending(this.paths.socket);
      const headers: http.OutgoingHttpHeaders = { 'user-agent': this.userAgent, host: 'tokend', ...extraHeaders };
      if (body !== undefined) {
        headers['content-type'] = contentType;
        headers['content-length'] = Buffer.byteLength(body);
      }
      const req = http.request({ socketPath: this.paths.socket, method, path: urlPath, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }
}
