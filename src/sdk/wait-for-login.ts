/**
 * Waiting for an interactive login to finish. The daemon announces the end of every login
 * on its event stream (`login.succeeded`, `login.failed`), so the wait subscribes first
 * and asks for the login only when an event says it changed. Without a stream (it could
 * not be opened, or the daemon went away) it polls. Either way the answer is the login as
 * `GET /v1/logins/:id` shows it, never the event alone.
 */
import type { LoginView } from '../protocol/api.js';
import type { TokendEvent } from '../protocol/events.js';
import { loginError, TokendError } from './errors.js';
import type { EventsOptions, EventSubscription } from './event-subscription.js';

export interface WaitForLoginOptions {
  /** Stop waiting: the promise rejects with the signal's reason (the login goes on in the daemon). */
  signal?: AbortSignal;
  /** How often to ask when there is no event stream (default 1000 ms). */
  pollMs?: number;
}

export interface LoginSource {
  getLogin(id: string): Promise<LoginView>;
  events(opts: EventsOptions): EventSubscription;
}

const DEFAULT_POLL_MS = 1000;
/** With a stream, look anyway this often, and just after the login's expiry: an event could be lost. */
const SAFETY_CHECK_MS = 30_000;

/** Resolves with the login once it is `active`; rejects with a TokendError (the login's error code) once it failed or expired. */
export async function waitForLogin(source: LoginSource, id: string, opts: WaitForLoginOptions = {}): Promise<LoginView> {
  const pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
  const signal = opts.signal;
  signal?.throwIfAborted();
  const events = source.events({ reconnect: false });
  try {
    let streaming = await events.ready.then(
      () => true,
      () => false,
    );
    let changed = false;
    let wake = () => {};
    if (streaming) {
      void (async () => {
        try {
          for await (const ev of events) {
            if (!endsLogin(ev, id)) continue;
            changed = true;
            wake();
          }
        } catch {
          // The stream broke: fall back to polling.
        }
        streaming = false;
        wake();
      })();
    }

    let expiresAt = -Infinity; // until the daemon has shown the login once
    for (;;) {
      changed = false;
      let login: LoginView | undefined;
      try {
        login = await source.getLogin(id);
      } catch (err) {
        // A daemon restarting (an upgrade, a service restart) is not the end of a login
        // that has time left: ask again until it answers or the login is past its expiry.
        if (!(err instanceof TokendError && err.code === 'daemon_unreachable' && Date.now() < expiresAt)) throw err;
      }
      if (login) {
        if (login.status === 'active') return login;
        if (login.status !== 'pending') throw loginError(login);
        expiresAt = Date.parse(login.expires_at);
        if (changed) continue;
      }
      const untilExpiry = expiresAt - Date.now() + 1000;
      const ms = streaming && login ? Math.max(pollMs, Math.min(untilExpiry, SAFETY_CHECK_MS)) : pollMs;
      await pause(ms, signal, (w) => (wake = w));
    }
  } finally {
    events.close();
  }
}

/** Wait `ms`, or until the waker `onWaker` receives is called; rejects when `signal` fires. */
function pause(ms: number, signal: AbortSignal | undefined, onWaker: (wake: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const settle = (err?: unknown) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', aborted);
      onWaker(() => {});
      if (err === undefined) resolve();
      else reject(err);
    };
    const aborted = () => settle(signal!.reason);
    const timer = setTimeout(() => settle(), ms);
    if (signal?.aborted) return aborted();
    signal?.addEventListener('abort', aborted, { once: true });
    onWaker(() => settle());
  });
}

function endsLogin(ev: TokendEvent, id: string): boolean {
  return (ev.type === 'login.succeeded' || ev.type === 'login.failed') && ev.login_id === id;
}
