/**
 * Small rules daemon and client must apply identically, kept free of zod so the thin
 * client can import them.
 */

/**
 * Loopback hosts: the only ones plain http may reach (RFC 8252 §8.3; a token never goes
 * to a remote host in clear). Accepts a URL's `hostname` (`[::1]`) or a bare host.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === 'localhost' || h === '::1' || h === '[::1]') return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The default login flow (README, CLI reference): the browser when the session can show one (a
 * display, or macOS) and is not an SSH session, else the device flow, which works from
 * anywhere. The CLI applies it to its own environment and sends the result; the daemon
 * applies it to its own when a request names no flow.
 */
export function defaultLoginFlow(env: Readonly<Record<string, string | undefined>>, platform: string): 'browser' | 'device' {
  const ssh = Boolean(env.SSH_CONNECTION || env.SSH_TTY || env.SSH_CLIENT);
  const display = platform === 'darwin' || Boolean(env.DISPLAY || env.WAYLAND_DISPLAY);
  return display && !ssh ? 'browser' : 'device';
}

/**
 * The `tokend import` an account of `driver` can take, for hints; undefined where there is
 * nothing to import (AMP obtains its token with the password). Cal.com's platform hands over
 * a token object; Real-Debrid refreshes only with the client the refresh token was issued
 * to, so its refresh token comes with that client's id and secret, as JSON.
 */
export function importHint(driver: string, account: string): string | undefined {
  if (driver === 'amp') return undefined;
  if (driver === 'cal-com' || driver === 'real-debrid') return `tokend import ${account} --tokens-stdin`;
  return `tokend import ${account} --refresh-token-stdin`;
}

/** Account statuses in which no token can be served until someone logs in (CLI exit 3). */
export const NEEDS_LOGIN_STATUSES = ['expired', 'no_grant', 'reauth_required', 'login_pending'] as const;

/** True when an account in `status` needs a login before it can serve a token. */
export function needsLogin(status: string): boolean {
  return (NEEDS_LOGIN_STATUSES as readonly string[]).includes(status);
}
