import type { AccountView } from '../../protocol/api.js';
import { importHint } from '../../protocol/rules.js';
import { inSeconds, type Check, type DoctorContext } from './check.js';

/** "expires soon" for an account that has nothing to refresh with. */
const EXPIRES_SOON_MS = 5 * 60_000;

/** Every account the daemon serves: can it serve a token now, and if not, what fixes it. */
export async function accountChecks(ctx: DoctorContext): Promise<Check[]> {
  const [probe, accounts] = await Promise.all([ctx.probe, ctx.accounts]);
  if (!probe.up) return [{ id: 'accounts', status: 'info', message: 'not checked: the daemon is not running' }];
  if (!accounts.list) return [{ id: 'accounts', status: 'fail', message: `cannot list the accounts: ${accounts.error ?? 'no answer'}` }];
  if (accounts.list.length === 0) {
    return [{ id: 'accounts', status: 'info', message: 'no accounts yet', fix: 'tokend add NAME --issuer URL --client-id ID' }];
  }
  return accounts.list.map((a) => accountCheck(a, Date.now()));
}

/**
 * What a failure says must change when a login would not help: the issuer (its discovery
 * document cannot be read) or the client's credentials (the provider answered
 * `invalid_client`, RFC 6749 §5.2). Read from the daemon's message, which names the
 * endpoint and the OAuth error code; undefined for anything else.
 */
function configurationCause(error: string | null | undefined): 'issuer' | 'client' | undefined {
  if (!error) return undefined;
  if (/\bdiscovery endpoint\b|\bauthorization server metadata\b/.test(error)) return 'issuer';
  if (/\binvalid_client\b/.test(error)) return 'client';
  return undefined;
}

/** One account's verdict; `tokend login` is suggested only where a login can work. */
export function accountCheck(a: AccountView, now: number): Check {
  const id = `account:${a.name}`;
  const login = `tokend login ${a.name}`;
  const imports = importHint(a.driver, a.name);
  const orImport = imports ? `${login}   # or: ${imports} < FILE` : login;
  const setSecret = `printf %s "$SECRET" | tokend set ${a.name} --client-secret-stdin`;
  const err = a.last_error ? `: ${a.last_error}` : '';
  const left = a.expires_at ? Date.parse(a.expires_at) - now : undefined;
  // A token that is known to be valid still: a failure then only warns.
  const serving = a.status === 'active' && left !== undefined && left > 0;
  // Without an interactive login (RFC 6749 §4.4) the client's own credentials are all there is.
  const clientCredentials = a.flow === 'client-credentials';

  // A login cannot fix the configuration it would run with: while a token is still served
  // this is a warning, otherwise a failure, and the fix changes the account.
  // A failed login matters only while the account still waits for one (any status but active).
  const failure = a.last_error ?? (a.status !== 'active' ? (a.last_login?.error?.message ?? null) : null);
  const cause = configurationCause(failure);
  const severity = serving ? 'warn' : 'fail';
  if (cause === 'issuer') {
    return {
      id,
      status: severity,
      message: `tokend cannot read the discovery document of its issuer${a.issuer ? ` ${a.issuer}` : ''}: ${failure}; a login would fail the same way`,
      fix: `tokend set ${a.name} --issuer URL   # the provider's issuer, where URL/.well-known/openid-configuration answers`,
    };
  }
  if (clientCredentials && !a.has_client_secret) {
    return {
      id,
      status: 'fail',
      message: 'uses client credentials, but no client secret is stored: the provider cannot issue it a token',
      fix: setSecret,
    };
  }
  if (cause === 'client') {
    return { id, status: severity, message: `the provider refused its client credentials: ${failure}`, fix: setSecret };
  }

  switch (a.status) {
    case 'reauth_required':
      if (clientCredentials) {
        return {
          id,
          status: 'fail',
          message: `its grant was refused${err}; it uses client credentials, so no login is needed: drop the grant and the next request gets a new token`,
          fix: `tokend logout ${a.name}`,
        };
      }
      return { id, status: 'fail', message: `needs a new login${err}`, fix: login };
    case 'login_pending':
      return {
        id,
        status: 'warn',
        message: 'a login was started and waits for you to finish it in the browser or on the device page',
        fix: login,
      };
    case 'no_grant':
      if (clientCredentials) {
        if (a.last_error)
          return {
            id,
            status: 'warn',
            message: `client credentials: the last attempt to get a token failed${err}`,
            fix: `tokend refresh ${a.name}`,
          };
        return { id, status: 'ok', message: 'client credentials: a token is fetched on first use' };
      }
      return {
        id,
        status: 'fail',
        message: `has no grant yet: log in once${imports ? ' (or import the tokens you hold)' : ''}`,
        fix: orImport,
      };
    case 'refresh_failing':
      // No token now, and no login would help: the cause named in the error must go first.
      return {
        id,
        status: 'fail',
        message: `cannot get a token: its last attempt failed${err}`,
        fix: `tokend refresh ${a.name}   # once the cause is fixed`,
      };
    case 'expired':
      return {
        id,
        status: 'fail',
        message: `its token expired${a.expires_at ? ` at ${a.expires_at}` : ''} and there is no refresh token to renew it`,
        fix: orImport,
      };
    case 'active': {
      if (left !== undefined && left < EXPIRES_SOON_MS && !a.has_refresh_token && !clientCredentials) {
        return {
          id,
          status: 'warn',
          message: `active, but its token expires ${left > 0 ? `in ${inSeconds(left)}` : 'now'} and there is no refresh token to renew it`,
          fix: login,
        };
      }
      if (a.last_error) {
        return { id, status: 'warn', message: `active, but the last refresh failed${err}`, fix: `tokend refresh ${a.name}` };
      }
      const exp = left === undefined ? 'no expiry' : left > 0 ? `token valid for ${inSeconds(left)}` : 'token renewed on next use';
      return { id, status: 'ok', message: `active (${exp}${a.has_refresh_token ? ', refresh token stored' : ''})` };
    }
    default:
      return { id, status: 'warn', message: `status ${String(a.status)}${err}`, fix: `tokend status ${a.name}` };
  }
}
