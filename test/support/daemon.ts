import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TOKEND_BIN = path.join(ROOT, 'bin', 'tokend');

/** A temporary TOKEND_HOME; `cleanup()` removes it. Short path: Unix socket paths max out at 108 bytes. */
export function tempHome(): { home: string; env: NodeJS.ProcessEnv; cleanup: () => void } {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TOKEND_HOME: home,
    TOKEND_NO_AUTOSTART: '1',
    TOKEND_LOG_LEVEL: 'debug',
  };
  delete env.TOKEND_SOCKET;
  delete env.TOKEND_CONFIG_DIR;
  delete env.TOKEND_DATA_DIR;
  delete env.TOKEND_KEY_FILE;
  return { home, env, cleanup: () => fs.rmSync(home, { recursive: true, force: true }) };
}

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
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

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run `bin/tokend ARGS` as a real process. */
export function runCli(args: string[], opts: { env: NodeJS.ProcessEnv; stdin?: string; bin?: string; timeoutMs?: number }): Promise<CliResult> {
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

/** A real `tokend daemon` child process under a temporary TOKEND_HOME. */
export class DaemonProcess {
  child?: ChildProcess;
  /** Everything the daemon wrote to stderr (its JSON log lines), across restarts. */
  logs = '';
  readonly socket: string;
  constructor(
    readonly home: string,
    readonly env: NodeJS.ProcessEnv,
  ) {
    this.socket = path.join(home, 'run', 'tokend.sock');
  }

  /** Spawn and wait until /v1/health answers. */
  async start(extraArgs: string[] = []): Promise<void> {
    const child = spawn(process.execPath, [TOKEND_BIN, 'daemon', ...extraArgs], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (c) => (this.logs += c));
    child.stderr!.on('data', (c) => (this.logs += c));
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`daemon exited with ${code} during start-up:\n${this.logs}`))),
    );
    const deadline = Date.now() + 15_000;
    const ready = (async () => {
      for (;;) {
        try {
          const r = await socketRequest(this.socket, 'GET', '/v1/health');
          if (r.status === 200 && r.json?.pid === child.pid) return;
        } catch {
          /* not yet */
        }
        if (Date.now() > deadline) throw new Error(`daemon did not become ready:\n${this.logs}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await Promise.race([ready, exited]);
    exited.catch(() => undefined);
  }

  /** Send a signal and wait for the process to exit; returns its exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const done = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const code = await done;
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

/** Write config.json's `settings` before the daemon starts (timeouts, backoff, rate limits for tests). */
export function writeSettings(home: string, settings: Record<string, unknown>): void {
  const dir = path.join(home, 'config');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ version: 1, settings, accounts: {} }, null, 2), { mode: 0o600 });
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
 * Give account NAME (added with addConfAccount) a real grant: a refresh token from the
 * IdP for client `conf`, imported through the real CLI. Returns what the IdP issued.
 */
export async function importConfGrant<T extends { refresh_token: string }>(
  d: DaemonProcess,
  idp: { issueRefreshToken(clientId: 'conf'): Promise<T> },
  name = 'work',
): Promise<T> {
  const issued = await idp.issueRefreshToken('conf');
  const r = await d.cli(['import', name, '--refresh-token-stdin'], issued.refresh_token);
  if (r.code !== 0) throw new Error(`tokend import failed (${r.code}): ${r.stderr}`);
  return issued;
}
