import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { byteSource } from './api-server.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TOKEND_BIN = path.join(ROOT, 'bin', 'tokend');

/**
 * Environment for a daemon or CLI under `home`: the user's own TOKEND_* places never leak in,
 * clients never autostart a daemon, logs at debug unless `extra` says otherwise.
 */
export function tokendEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TOKEND_HOME: home, TOKEND_NO_AUTOSTART: '1', TOKEND_LOG_LEVEL: 'debug', ...extra };
  for (const k of ['TOKEND_SOCKET', 'TOKEND_CONFIG_DIR', 'TOKEND_DATA_DIR', 'TOKEND_KEY_FILE', 'TOKEND_BIN']) delete env[k];
  return env;
}

/** A temporary TOKEND_HOME; `cleanup()` removes it. Short path: Unix socket paths max out at 108 bytes. */
export function tempHome(): { home: string; env: NodeJS.ProcessEnv; cleanup: () => void } {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-'));
  return { home, env: tokendEnv(home), cleanup: () => fs.rmSync(home, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }) };
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

/** Whether a process (a daemon the CLI autostarted, say) still runs. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stream `size` bytes to the daemon as node's http client does an upload, and collect the
 * answer. An error is returned with whatever answer came, not thrown: it may come before or
 * after the answer (EPIPE when the daemon cuts an upload), and a failure should show both.
 */
export function streamUpload(
  socket: string,
  method: string,
  urlPath: string,
  size: number,
  headers: http.OutgoingHttpHeaders = { 'content-length': size },
): Promise<{ status?: number; text: string; error?: string }> {
  return new Promise((resolve) => {
    const out: { status?: number; text: string; error?: string } = { text: '' };
    let answered: Promise<unknown> = Promise.resolve();
    const req = http.request({ socketPath: socket, method, path: urlPath, agent: false, headers }, (res) => {
      out.status = res.statusCode;
      res.on('data', (c) => (out.text += c));
      answered = once(res, 'close');
    });
    req.on('error', (e: NodeJS.ErrnoException) => (out.error = `${e.code}: ${e.message}`));
    req.on('close', () => void answered.then(() => resolve(out)));
    byteSource(size).pipe(req);
  });
}

/** One HTTP request over the daemon's Unix socket. */
export function socketRequest(
  socket: string,
  method: string,
  urlPath: string,
  body?: string | Buffer | object,
  headers: Record<string, string> = {},
  agent?: http.Agent,
): Promise<HttpResult> {
  const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: socket,
        method,
        path: urlPath,
        agent: agent ?? false,
        headers: {
          host: 'tokend',
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export interface HealthWaitOptions {
  /** Only an answer from this pid counts (a stale daemon on the same socket does not). */
  pid?: number;
  /** Default 15 s. */
  timeoutMs?: number;
  /** How often to ask; default 50 ms (the bench polls every 2 ms to time a cold start). */
  pollMs?: number;
  /** Stop waiting, with an error, once this says the process has exited. */
  exited?: () => boolean;
  /** Ask again at once when this resolves (the daemon logged that it listens), not after the poll's sleep. */
  nudge?: Promise<unknown>;
}

/** Poll `GET /v1/health` on `socket` until it answers 200; resolves the health body. */
export async function waitForHealth(socket: string, opts: HealthWaitOptions = {}): Promise<any> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  let nudged = false;
  for (;;) {
    if (opts.exited?.()) throw new Error(`the process exited before ${socket} answered /v1/health`);
    try {
      const r = await socketRequest(socket, 'GET', '/v1/health');
      if (r.status === 200 && (opts.pid === undefined || r.json?.pid === opts.pid)) return r.json;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`nothing answered /v1/health on ${socket} within ${opts.timeoutMs ?? 15_000} ms`);
    const nudge = nudged ? undefined : opts.nudge;
    await new Promise<void>((r) => {
      const timer = setTimeout(r, opts.pollMs ?? 50);
      // Once only: after it the poll sleeps again (a daemon that logged and does not answer yet).
      void nudge?.then(() => {
        nudged = true;
        clearTimeout(timer);
        r();
      });
    });
  }
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run `bin/tokend ARGS` as a real process. */
export function runCli(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; stdin?: string; bin?: string; timeoutMs?: number },
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [opts.bin ?? TOKEND_BIN, ...args], { env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(opts.stdin ?? '');
  });
}

export interface DaemonStartOptions {
  /** Options for node itself, before bin/tokend (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** How long start-up may take; default 15 s. */
  timeoutMs?: number;
  /** How often to ask /v1/health while it starts; default 50 ms. */
  pollMs?: number;
  /**
   * Send stdout and stderr straight to this file instead of collecting them in `logs`: a
   * daemon under load then never waits for this process to drain a pipe (the bench).
   */
  logFile?: string;
}

/** A real `tokend daemon` child process under a temporary TOKEND_HOME. */
export class DaemonProcess {
  child?: ChildProcess;
  /** Everything the daemon wrote to stderr (its JSON log lines), across restarts; empty with `logFile`. */
  logs = '';
  /** Milliseconds from spawn to the first /v1/health answer, of the last successful start(). */
  readyMs?: number;
  readonly socket: string;
  constructor(
    readonly home: string,
    readonly env: NodeJS.ProcessEnv,
  ) {
    this.socket = path.join(home, 'run', 'tokend.sock');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Spawn and wait until /v1/health answers; a daemon that does not come up is killed. */
  async start(extraArgs: string[] = [], opts: DaemonStartOptions = {}): Promise<void> {
    const t0 = performance.now();
    const logFd = opts.logFile === undefined ? undefined : fs.openSync(opts.logFile, 'a', 0o600);
    const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), TOKEND_BIN, 'daemon', ...extraArgs], {
      env: this.env,
      stdio: logFd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFd, logFd],
    });
    if (logFd !== undefined) fs.closeSync(logFd);
    this.child = child;
    // "tokend started" is logged once it listens: ask /v1/health then rather than up to a poll later.
    let listening: () => void = () => undefined;
    const nudge = new Promise<void>((r) => (listening = r));
    const logsBefore = this.logs.length;
    const onLog = (c: Buffer) => {
      this.logs += c;
      if (this.logs.includes('"msg":"tokend started"', logsBefore)) listening();
    };
    child.stdout?.on('data', onLog);
    child.stderr?.on('data', onLog);
    const logText = () => (opts.logFile === undefined ? this.logs : fs.readFileSync(opts.logFile, 'utf8').slice(-3000));
    let hasExited = false;
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => {
        hasExited = true;
        reject(new Error(`daemon exited with ${code} during start-up:\n${logText()}`));
      }),
    );
    exited.catch(() => undefined); // an exit after start-up is not an error here
    const ready = waitForHealth(this.socket, {
      pid: child.pid,
      timeoutMs: opts.timeoutMs,
      pollMs: opts.pollMs,
      exited: () => hasExited,
      nudge,
    });
    try {
      await Promise.race([ready.catch(() => Promise.reject(new Error(`daemon did not become ready:\n${logText()}`))), exited]);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    this.readyMs = performance.now() - t0;
  }

  /** Send a signal and wait for the process to exit (SIGKILL after `killAfterMs`, when given); returns its exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', killAfterMs?: number): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const done = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    const code = await done;
    clearTimeout(timer);
    this.child = undefined;
    return code;
  }

  request(method: string, urlPath: string, body?: string | Buffer | object, headers?: Record<string, string>) {
    return socketRequest(this.socket, method, urlPath, body, headers);
  }

  cli(args: string[], stdin?: string): Promise<CliResult> {
    return runCli(args, { env: this.env, stdin });
  }
}

/**
 * Write config.json's `settings` (timeouts, backoff, rate limits for tests), and `accounts`
 * when given, before the daemon starts.
 */
export function writeSettings(home: string, settings: Record<string, unknown>, accounts: Record<string, unknown> = {}): void {
  const dir = path.join(home, 'config');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ version: 1, settings, accounts }, null, 2), { mode: 0o600 });
}

/** A daemon started under its own temporary TOKEND_HOME. */
export interface TestDaemon {
  d: DaemonProcess;
  home: string;
  /** What it runs with: for the CLIs, helpers and SDK clients that talk to it. */
  env: NodeJS.ProcessEnv;
  /** Kill it and remove its home. */
  cleanup(): Promise<void>;
}

/**
 * Start a daemon under a fresh temporary home: config.json's `settings` written first when
 * given, `env` over the home's environment (a variable given as undefined is removed).
 */
export async function startTestDaemon(settings?: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<TestDaemon> {
  const h = tempHome();
  if (settings) writeSettings(h.home, settings);
  const fullEnv: NodeJS.ProcessEnv = { ...h.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete fullEnv[k];
  const d = new DaemonProcess(h.home, fullEnv);
  try {
    await d.start();
  } catch (err) {
    h.cleanup();
    throw err;
  }
  return {
    d,
    home: h.home,
    env: fullEnv,
    async cleanup() {
      await d.stop('SIGKILL');
      h.cleanup();
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Add account NAME for the test IdP's confidential client `conf` through the real CLI. */
export async function addConfAccount(d: DaemonProcess, issuer: string, name = 'work', extra: string[] = []): Promise<void> {
  const r = await d.cli(
    ['add', name, '--issuer', issuer, '--client-id', 'conf', '--client-secret-stdin', '--scope', 'openid offline_access api', ...extra],
    'conf-secret\n',
  );
  if (r.code !== 0) throw new Error(`tokend add failed (${r.code}): ${r.stderr}`);
}

/**
 * What addConfAccount does, through the socket API in this process (`PUT /v1/accounts/NAME`,
 * the body `tokend add` sends for those options) instead of a CLI process: for fixtures that
 * only need the account there. Tests of `tokend add` itself run the CLI. `more`: the body's
 * fields for `tokend add`'s other options (`--host H` is `{ hosts: [H] }`, `--api-base U`
 * is `{ api_base: U }`: src/client/account-options.ts `accountBody`).
 */
export async function putConfAccount(d: DaemonProcess, issuer: string, name = 'work', more: Record<string, unknown> = {}): Promise<void> {
  const body = { issuer, client_id: 'conf', client_secret: 'conf-secret', scopes: ['openid', 'offline_access', 'api'], ...more };
  const r = await d.request('PUT', `/v1/accounts/${encodeURIComponent(name)}`, body);
  if (r.status !== 201 && r.status !== 200) throw new Error(`PUT /v1/accounts/${name} failed (${r.status}): ${r.text}`);
}

/**
 * What importConfGrant does, through `POST /v1/accounts/NAME/import` in this process instead
 * of `tokend import`: for fixtures. Returns what the IdP issued.
 */
export function postConfGrant<T extends { refresh_token: string }>(
  d: DaemonProcess,
  idp: { issueRefreshToken(clientId: 'conf'): Promise<T> },
  name = 'work',
): Promise<T> {
  return importConfGrant(d, idp, name, 'api');
}

/**
 * Give account NAME (added with addConfAccount) a real grant: a refresh token from the
 * IdP for client `conf`, imported through the real CLI (or with `via: 'api'`, postConfGrant).
 * Returns what the IdP issued.
 */
export async function importConfGrant<T extends { refresh_token: string }>(
  d: DaemonProcess,
  idp: { issueRefreshToken(clientId: 'conf'): Promise<T> },
  name = 'work',
  via: 'cli' | 'api' = 'cli',
): Promise<T> {
  const issued = await idp.issueRefreshToken('conf');
  if (via === 'api') {
    const r = await d.request('POST', `/v1/accounts/${encodeURIComponent(name)}/import`, { refresh_token: issued.refresh_token });
    if (r.status !== 200) throw new Error(`POST /v1/accounts/${name}/import failed (${r.status}): ${r.json?.error?.message ?? r.status}`);
  } else {
    const r = await d.cli(['import', name, '--refresh-token-stdin'], issued.refresh_token);
    if (r.code !== 0) throw new Error(`tokend import failed (${r.code}): ${r.stderr}`);
  }
  return issued;
}
