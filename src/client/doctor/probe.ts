import http from 'node:http';
import type { AccountList, AccountView, Health } from '../../protocol/api.js';
import { ROUTES } from '../../protocol/routes.js';
import { TokendError } from '../../sdk/errors.js';
import type { TokendClient } from '../socket-client.js';

// What the doctor asks the daemon, each with a deadline: it never starts the daemon
// (autostart off; with systemd socket activation the probe is a first client like any other).

/** How long the daemon gets to answer one request (TOKEND_TEST_DOCTOR_TIMEOUT_MS: shorter, for tests only). */
export const DAEMON_TIMEOUT_MS = Number(process.env.TOKEND_TEST_DOCTOR_TIMEOUT_MS) || 5000;

export type Probe = { up: true; health: Health } | { up: false; reason: 'no_socket' | 'refused' | 'timeout' | 'error'; detail: string };

/**
 * GET /v1/health with a deadline: a daemon that accepts but never answers (stopped,
 * wedged) must not hang the doctor, so this is a plain request we can destroy.
 */
export function probeDaemon(socket: string): Promise<Probe> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (p: Probe) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(p);
    };
    const req = http.request(
      {
        socketPath: socket,
        method: 'GET',
        path: ROUTES.health,
        headers: { host: 'tokend', 'user-agent': 'tokend-cli/doctor' },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => finish({ up: false, reason: 'error', detail: err.message }));
        res.on('end', () => {
          let body: Partial<Health> | undefined;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<Health>;
          } catch {
            body = undefined;
          }
          if (res.statusCode === 200 && body && typeof body.pid === 'number') finish({ up: true, health: body as Health });
          else
            finish({
              up: false,
              reason: 'error',
              detail: `GET /v1/health answered ${res.statusCode} without the expected body: is this a tokend socket?`,
            });
        });
      },
    );
    const timer = setTimeout(() => {
      finish({ up: false, reason: 'timeout', detail: `no answer on ${socket} within ${DAEMON_TIMEOUT_MS / 1000} s` });
      req.destroy();
    }, DAEMON_TIMEOUT_MS);
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR')
        finish({ up: false, reason: 'no_socket', detail: `there is no socket at ${socket}` });
      else if (err.code === 'ECONNREFUSED')
        finish({ up: false, reason: 'refused', detail: `nothing listens on ${socket} (a stale socket file)` });
      else finish({ up: false, reason: 'error', detail: `cannot talk to ${socket}: ${err.message}` });
    });
    req.end();
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** The daemon's accounts (GET /v1/accounts), or why they could not be read. */
export async function daemonAccounts(client: TokendClient): Promise<{ list?: AccountView[]; error?: string }> {
  try {
    return { list: (await withTimeout(client.json<AccountList>('GET', ROUTES.accounts), DAEMON_TIMEOUT_MS, 'GET /v1/accounts')).accounts };
  } catch (err) {
    return { error: err instanceof TokendError ? `${err.message} (${err.code})` : (err as Error).message };
  }
}
