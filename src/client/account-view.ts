/**
 * How `tokend status` shows an account: its config, its grant, the login in progress
 * (the code and URL to finish it) and how the last login ended.
 */
import type { AccountView, LastLogin, LoginView } from '../protocol/api.js';
import { ruleFlags } from '../protocol/access-rules.js';
import { importHint, needsLogin } from '../protocol/rules.js';
import { relative, stamp } from './when.js';

const row = (label: string, value: string) => `${`${label}:`.padEnd(12)}${value}`;

/** The account as lines of `label: value`, without a trailing newline. */
export function accountLines(a: AccountView, now = Date.now()): string {
  return [
    row('account', a.name),
    row('status', a.status),
    row('expires', stamp(a.expires_at, now)),
    row('driver', `${a.driver}${a.preset ? ` (preset ${a.preset})` : ''}`),
    a.issuer ? row('issuer', a.issuer) : undefined,
    // Not every driver has a client (AMP signs in with a stored password).
    a.client_id ? row('client_id', `${a.client_id}${a.has_client_secret ? ' (with secret)' : ''}`) : undefined,
    a.flow ? row('flow', a.flow) : undefined,
    a.scopes.length ? row('scopes', a.scopes.join(' ')) : undefined,
    a.hosts.length ? row('hosts', a.hosts.join(' ')) : undefined,
    a.labels && Object.keys(a.labels).length
      ? row(
          'labels',
          Object.entries(a.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
        )
      : undefined,
    row('access', accessSummary(a)),
    a.dpop ? row('dpop', dpopSummary(a.dpop)) : undefined,
    a.last_error ? row('error', a.last_error) : undefined,
    a.retry_at ? row('retry at', stamp(a.retry_at, now)) : undefined,
    a.login ? row('login', pendingLogin(a.login, now)) : undefined,
    a.last_login ? row('last login', lastLogin(a.last_login, now)) : undefined,
  ]
    .filter((l) => l !== undefined)
    .join('\n');
}

/** The account's DPoP key, and the other key its grant is bound to when they differ. */
function dpopSummary(d: NonNullable<AccountView['dpop']>): string {
  const key = d.jkt ? `key ${d.jkt}` : 'no key yet';
  return d.grant_jkt ? `${key}; the grant is bound to another key (${d.grant_jkt}): not used, log in again` : key;
}

/** Who may take its token: `open`, or the mode and its rules as `tokend access` takes them. */
function accessSummary(a: AccountView): string {
  if (!a.access || a.access.mode === 'open') return 'open (any program of yours)';
  return `${a.access.mode}: ${a.access.callers.map(ruleFlags).join(', ') || 'no rule'}`;
}

/** A login in progress: what to do to finish it, and until when. */
export function pendingLogin(l: LoginView, now: number): string {
  const todo =
    l.flow === 'device'
      ? `enter the code ${l.user_code ?? '?'} at ${l.verification_uri ?? '?'}`
      : `open ${l.authorization_url ?? '?'} in a browser on this machine`;
  return `${l.status} (${l.flow}): ${todo}; expires ${relative(l.expires_at, now)}`;
}

/** How the last login ended: its status, the error code and message, its flow and when. */
export function lastLogin(l: LastLogin, now: number): string {
  const outcome = l.status === 'active' ? 'succeeded' : l.status;
  const why = l.error ? `, ${l.error.code}${l.error.message && l.error.message !== l.error.code ? `: ${l.error.message}` : ''}` : '';
  return `${outcome}${why} (${l.flow}, ${relative(l.updated_at, now)})`;
}

/**
 * The command that gets the account a token: a login; or just asking for one where no person
 * is needed (client credentials, a stored password, a grant already there); or, for Cal.com
 * managed users, importing the tokens the platform got when it created the user.
 */
export function nextStep(a: Pick<AccountView, 'name' | 'flow' | 'driver' | 'status' | 'has_refresh_token'>): string {
  if (a.driver === 'cal-com' && !a.has_refresh_token)
    return `\`tokend import ${a.name} --tokens-stdin\` (the managed user's tokens from the platform)`;
  if (a.flow === 'client-credentials' || a.flow === 'password' || a.status === 'active') return `\`tokend token ${a.name}\``;
  // Only an import the driver can do (protocol/rules.ts importHint).
  const imports = importHint(a.driver, a.name);
  return `\`tokend login ${a.name}\`${imports ? ` (or \`${imports}\`)` : ''}`;
}

/**
 * For `tokend status NAME`: why it exits 1 for an account whose every attempt to get a token
 * fails (`refresh_failing`: a login would not help, the cause shown as its error must go).
 */
export function refreshFailingNote(a: AccountView, now = Date.now()): string | undefined {
  if (a.status !== 'refresh_failing') return undefined;
  const next = a.retry_at ? `; the next attempt is ${relative(a.retry_at, now)}` : '';
  return `tokend: "${a.name}" cannot get a token now: its last attempt failed (the error above)${next}; fix the cause, then \`tokend refresh ${a.name}\``;
}

/** For `tokend status NAME`: why it exits 3, on stderr; undefined when the account can serve a token. */
export function needsLoginNote(a: AccountView): string | undefined {
  if (!needsLogin(a.status)) return undefined;
  if (a.login?.status === 'pending') {
    return `tokend: a login to "${a.name}" is in progress: finish it as shown above, or stop it with \`tokend login ${a.name} --cancel\``;
  }
  // A client-credentials account needs no person: its first token request gets the first token.
  if (a.flow === 'client-credentials') return `tokend: "${a.name}" has no token yet (${a.status}); next: ${nextStep(a)}`;
  return `tokend: "${a.name}" cannot serve a token until someone logs in; next: ${nextStep(a)}`;
}
