/**
 * A tiny fake OAuth authorization server on 127.0.0.1 for what oidc-provider never does
 * (RFC 8628 §3.5; oidc-provider never sends slow_down): `slow_down` (with or without a new `interval`), 429, 5xx, and
 * endpoints that hang. It speaks RFC 8628 §3.1–3.5 and the refresh grant; no discovery,
 * so accounts use it through explicit endpoints.
 *
 * ```ts
 * const as = await startFakeAs();
 * as.device = { kind: 'ok', interval: 2 };
 * as.script(['pending', { kind: 'slow_down' }, 'tokens']);   // successive device-code polls; the last repeats
 * … as.polls.map((p) => p.at) …
 * await as.close();
 * ```
 *
 * The second half of this file is the kit every login test shares: a daemon with fast
 * device polling, SSE capture, waiting, and a CLI whose output can be read while it runs.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { listenOnLoopback } from './loopback.js';
import { startTestDaemon, TOKEND_BIN, type CliResult, type DaemonProcess, type TestDaemon } from './daemon.js';
import { DaemonEvent } from '../../src/protocol/events.js';

/** What `POST /device` answers. */
export type DeviceAnswer = { kind: 'ok'; interval?: number; expires_in?: number } | { kind: '429'; retryAfter?: string } | { kind: 'hang' };

/** What one device-code poll of `POST /token` answers. */
export type TokenAnswer =
  | 'pending'
  | 'tokens'
  | 'denied'
  | 'expired'
  | 'hang'
  | '500'
  | { kind: 'slow_down'; interval?: number }
  | { kind: '429'; retryAfter?: string };

export interface Poll {
  /** Date.now() when the request arrived. */
  at: number;
  device_code: string;
  answer: string;
}

export interface FakeAs {
  url: string;
  tokenEndpoint: string;
  deviceEndpoint: string;
  /** The device endpoint's next answers (default: ok, no interval, expires_in 600). */
  device: DeviceAnswer;
  /** Delay before the device endpoint answers, in ms (to widen races). */
  deviceDelayMs: number;
  /** Set the answers of the next device-code polls; the last one repeats. */
  script(answers: TokenAnswer[]): void;
  /** Device authorization requests seen. */
  deviceRequests: number;
  /** Every device-code poll, in arrival order. */
  polls: Poll[];
  /** Everything secret it handed out (device codes and tokens), for leak checks. */
  issued: string[];
  /** The user code of the last device authorization. */
  lastUserCode?: string;
  close(): Promise<void>;
}

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export async function startFakeAs(): Promise<FakeAs> {
  const server = http.createServer();
  const { url, close } = await listenOnLoopback(server);

  let answers: TokenAnswer[] = ['pending'];
  let next = 0;
  const deviceCodes = new Set<string>();

  const as: FakeAs = {
    url,
    tokenEndpoint: `${url}/token`,
    deviceEndpoint: `${url}/device`,
    device: { kind: 'ok' },
    deviceDelayMs: 0,
    script(a) {
      answers = a;
      next = 0;
    },
    deviceRequests: 0,
    polls: [],
    issued: [],
    close,
  };

  const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
    res.end(JSON.stringify(body));
  };
  const secret = (prefix: string) => {
    const v = `${prefix}-${randomBytes(12).toString('hex')}`;
    as.issued.push(v);
    return v;
  };
  const tokens = (res: http.ServerResponse) =>
    json(res, 200, {
      access_token: secret('fake-at'),
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: secret('fake-rt'),
      scope: 'api',
    });

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0];
      const form = new URLSearchParams(body);
      if (req.method === 'POST' && path === '/device') {
        as.deviceRequests++;
        const d = as.device;
        setTimeout(() => {
          if (d.kind === 'hang') return;
          if (d.kind === '429') {
            return json(res, 429, { error: 'slow_down' }, d.retryAfter !== undefined ? { 'retry-after': d.retryAfter } : {});
          }
          const user_code = `FAKE-${randomBytes(2).toString('hex').toUpperCase()}`;
          as.lastUserCode = user_code;
          const device_code = secret('fake-dc');
          deviceCodes.add(device_code);
          json(res, 200, {
            device_code,
            user_code,
            verification_uri: `${url}/activate`,
            verification_uri_complete: `${url}/activate?user_code=${user_code}`,
            expires_in: d.expires_in ?? 600,
            ...(d.interval !== undefined ? { interval: d.interval } : {}),
          });
        }, as.deviceDelayMs);
        return;
      }
      if (req.method === 'POST' && path === '/token') {
        const grant = form.get('grant_type');
        if (grant === 'refresh_token') return tokens(res);
        if (grant !== DEVICE_GRANT) return json(res, 400, { error: 'unsupported_grant_type' });
        const device_code = form.get('device_code') ?? '';
        if (!deviceCodes.has(device_code)) return json(res, 400, { error: 'invalid_grant', error_description: 'unknown device code' });
        const a = answers[Math.min(next++, answers.length - 1)]!;
        as.polls.push({ at: Date.now(), device_code, answer: typeof a === 'string' ? a : a.kind });
        if (a === 'hang') return;
        if (a === 'pending') return json(res, 400, { error: 'authorization_pending' });
        if (a === 'denied') return json(res, 400, { error: 'access_denied', error_description: 'the user said no' });
        if (a === 'expired') return json(res, 400, { error: 'expired_token' });
        if (a === '500') {
          res.writeHead(500, { 'content-type': 'text/html' });
          return res.end('<h1>oops</h1>');
        }
        if (a === 'tokens') {
          deviceCodes.delete(device_code); // one use (RFC 8628 §3.5: the code is spent)
          return tokens(res);
        }
        if (a.kind === 'slow_down')
          return json(res, 400, { error: 'slow_down', ...(a.interval !== undefined ? { interval: a.interval } : {}) });
        return json(res, 429, { error: 'rate_limited' }, a.retryAfter !== undefined ? { 'retry-after': a.retryAfter } : {});
      }
      json(res, 404, { error: 'not_found' });
    });
  });
  return as;
}

// ---- the login tests' kit ----------------------------------------------------------------
/** The test interval unit: 5 s of RFC 8628 polling becomes 500 ms. */
export const UNIT_MS = 100;

export type { TestDaemon };

/** The tests pick flows explicitly; a display or an SSH session of the machine running them must not matter. */
const NO_DISPLAY: NodeJS.ProcessEnv = Object.fromEntries(
  ['DISPLAY', 'WAYLAND_DISPLAY', 'SSH_CONNECTION', 'SSH_TTY', 'SSH_CLIENT', 'BROWSER'].map((k) => [k, undefined]),
);

/** A started daemon under a fresh TOKEND_HOME with fast device polling, and no display unless `env` gives one. */
export function startDaemon(settings: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = {}): Promise<TestDaemon> {
  return startTestDaemon({ max_refreshes_per_minute: 1000, device_poll_unit_ms: UNIT_MS, ...settings }, { ...NO_DISPLAY, ...env });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The login object once it is no longer pending. */
export async function settled(d: DaemonProcess, id: string, timeoutMs = 15_000): Promise<any> {
  return waitFor(
    async () => {
      const r = await d.request('GET', `/v1/logins/${id}`);
      return r.json?.status !== 'pending' ? r.json : undefined;
    },
    `login ${id} to finish`,
    timeoutMs,
  );
}

export interface EventTap {
  events: Array<{ type: string; account: string; [k: string]: unknown }>;
  close(): void;
}

/**
 * Subscribes to `GET /v1/events` and collects every event; resolves once the stream is ready.
 * Every event must parse against its schema (src/protocol/events.ts): one that does not (a
 * new emit without a schema, a field the schema does not allow) fails the test run.
 */
export function tapEvents(socket: string): Promise<EventTap> {
  return new Promise((resolve, reject) => {
    const events: EventTap['events'] = [];
    const req = http.request({ socketPath: socket, path: '/v1/events', headers: { host: 'tokend' } }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).trim())
            .join('\n');
          const type = /^event:\s*(.*)$/m.exec(block)?.[1];
          if (type === 'ready') resolve({ events, close: () => req.destroy() });
          else if (data) events.push(checkedEvent(JSON.parse(data)));
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The event as sent, once its schema accepts it; throws (failing the test) when it does not. */
export function checkedEvent(ev: EventTap['events'][number]): EventTap['events'][number] {
  const parsed = DaemonEvent.safeParse(ev);
  if (!parsed.success) throw new Error(`event ${JSON.stringify(ev)} does not match its schema: ${parsed.error.message}`);
  // The schema is strict about what it names, and nothing else may ride along unseen.
  const extra = Object.keys(ev).filter((k) => !(k in parsed.data));
  if (extra.length) throw new Error(`event ${ev.type} carries fields its schema does not name: ${extra.join(', ')}`);
  return ev;
}

export interface RunningCli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  done: Promise<CliResult>;
}

/** Runs `bin/tokend ARGS` and gives access to its output while it runs (for waiting commands). */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): RunningCli {
  const child = spawn(process.execPath, [TOKEND_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (err += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  return { child, stdout: () => out, stderr: () => err, done };
}

/** `tokend login NAME --no-wait --json …` → the login object. */
export async function startLogin(d: DaemonProcess, name: string, flow: 'device' | 'browser', extra: string[] = []): Promise<any> {
  const r = await d.cli(['login', name, '--no-wait', '--json', '--flow', flow, ...extra]);
  if (r.code !== 0) throw new Error(`tokend login failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}
