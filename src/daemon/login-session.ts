/**
 * A login as the login manager (logins.ts) runs it: what it talks to, what it waits for, and
 * the error of a login that could not even start.
 */
import type { AccountConfig, LoginFlow } from '../protocol/api.js';
import type { Caller } from '../protocol/caller.js';
import { wireErrorOf } from './driver-errors.js';
import { DriverError, type Driver } from './drivers/driver.js';
import { ApiError } from './errors.js';
import type { Logger } from './log.js';
import type { LoginState } from './login-view.js';
import type { LoginLease } from './store/types.js';

/**
 * What a login talks to, fixed when it starts: the account's config, its client secret and
 * the identity of the provider and client (grant-identity.ts). A login that finishes after
 * the account moved elsewhere cannot install its grant, and never uses the new secret.
 */
export interface LoginTarget {
  account: string;
  cfg: AccountConfig;
  /** Every stored secret of the account, read when the login started. */
  secrets: Map<string, string>;
  identity: string;
  /** The caller's label for the login. */
  task?: string;
  /** Who asked for it (User-Agent), for the audit log. */
  caller?: string;
  /** Who asked for it, as the daemon verified it (caller/connection.ts). */
  by?: Caller;
}

/** How a login is started: the caller's label (`task`), how long it waits, and who asked (declared and verified). */
export interface LoginStartOptions {
  task?: string;
  ttlS?: number;
  caller?: string;
  by?: Caller;
}

/** What a browser login needs to receive its callback (its secrets are also stored, sealed, while it is pending). */
export interface BrowserWait {
  driver: Driver;
  redirectUri: string;
  secrets: { state: string; code_verifier: string };
}

/** A login this daemon runs (or completes for another daemon of the fleet). */
export interface Session {
  state: LoginState;
  target: LoginTarget;
  /** A browser login waiting for its callback. */
  browser?: BrowserWait;
  /** Aborted when the login finishes: stops polling, closes the loopback listener. */
  stop: AbortController;
  /** A code exchange or grant install is under way: expiry waits for it. */
  busy: boolean;
  /** The login's lease while this daemon polls it or exchanges its code (released once its end is stored). */
  lease?: LoginLease;
}

/** A login that could not even start is the request's error; no login object is recorded. */
export function startErrorOf(log: Logger, account: string, flow: LoginFlow, err: unknown): ApiError {
  if (err instanceof DriverError) {
    log.warn('could not start a login', { account, flow, kind: err.kind, status: err.status, error: err.message });
  } else if (!(err instanceof ApiError)) {
    log.error('starting a login crashed', { account, flow, error: err as Error });
  }
  return wireErrorOf(err, { account, doing: `start a ${flow} login` });
}
