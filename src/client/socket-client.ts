import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolvePaths, type TokendPaths } from '../protocol/paths.js';

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

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const AUTOSTART_WAIT_MS = 5000;

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
    try {
      return await this.send(method, urlPath, body, contentType, extraHeaders);
    } catch (err) {
      if (!isNotListening(err)) throw new DaemonUnreachableError(`cannot talk to tokend at ${this.paths.socket}: ${(err as Error).message}`);
      if (!this.autostart) {
        throw new DaemonUnreachableError(
          `tokend is not running (nothing listens on ${this.paths.socket}); start it with \`tokend daemon\` or unset TOKEND_NO_AUTOSTART`,
        );
      }
      await this.startDaemon();
      return this.send(method, urlPath, body, contentType, extraHeaders);
    }
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

  /** Start `tokend daemon` detached, its stderr appended to the log file, and wait until it answers. */
  private async startDaemon(): Promise<void> {
    fs.mkdirSync(this.paths.dataDir, { recursive: true, mode: 0o700 });
    const logFd = fs.openSync(this.paths.logFile, 'a', 0o600);
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 'tokend'), 'daemon'], {
      detached: true,
      stdio: ['ignore', 'ignore', logFd],
      env: { ...this.env, TOKEND_SOCKET: this.paths.socket },
    });
    fs.closeSync(logFd);
    let exited: number | null = null;
    child.once('exit', (code) => (exited = code ?? 1));
    child.unref();
    const deadline = Date.now() + AUTOSTART_WAIT_MS;
    let lastError: unknown;
    while (Date.now() < deadline) {
      try {
        const res = await this.send('GET', '/v1/health', undefined, '');
        if (res.status === 200) return;
        lastError = new Error(`/v1/health answered ${res.status}`);
      } catch (err) {
        // Anything while it comes up (refused, reset mid-start) is "not yet".
        lastError = err;
      }
      // A second daemon racing us exits 1 while the first comes up: keep waiting for the socket.
      if (exited !== null && exited !== 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const why = lastError instanceof Error ? ` (last: ${(lastError as NodeJS.ErrnoException).code ?? lastError.message})` : '';
    throw new DaemonUnreachableError(
      `tokend did not start within ${AUTOSTART_WAIT_MS / 1000} s${why}; see ${this.paths.logFile}, or run \`tokend daemon\` to see why`,
    );
  }
}

function isNotListening(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTDIR';
}
