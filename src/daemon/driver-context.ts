import type { AccountConfig } from '../protocol/api.js';
import type { DriverContext } from './drivers/driver.js';

// A DPoP account's key, made where a driver step first needs it (a login, a refresh), and the binding it gives a grant.
export { grantBinding, withDpopKey } from './dpop/provision.js';

/** What a driver step is given, whoever calls it (a refresh, a login, an account being added). */
export interface DriverContextOptions {
  account: string;
  config: AccountConfig;
  /**
   * The account's secrets, read once for the whole attempt (Store.getSecrets), or a lookup
   * of the ones a request gave (an account being added: only those it may send).
   */
  secrets: ReadonlyMap<string, string> | ((name: string) => string | undefined);
  signal: AbortSignal;
  /** The access token held now (AMP refreshes by presenting it; Real-Debrid revokes with it). */
  currentAccessToken?: string;
}

/** The one way a DriverContext is made: the client secret is the stored `client_secret`, like any other secret. */
export function driverContext(o: DriverContextOptions): DriverContext {
  const { secrets } = o;
  const secret = typeof secrets === 'function' ? secrets : (name: string) => secrets.get(name);
  const ctx: DriverContext = { name: o.account, config: o.config, clientSecret: secret('client_secret'), secret, signal: o.signal };
  if (o.currentAccessToken !== undefined) ctx.currentAccessToken = o.currentAccessToken;
  return ctx;
}
