/**
 * A browser login's callback (RFC 6749 §4.1.2) as tokend receives it: on its loopback
 * listener (the page the browser sees), or from an app that caught the redirect itself
 * (`POST /v1/logins/:id/callback`, `POST /v1/logins/callback`: the checks and the errors).
 */
import type { LoginView } from '../protocol/api.js';
import { E, type ApiError } from './errors.js';
import { page, type CallbackAnswer } from './login-browser.js';

/** What became of one callback request. */
export type CallbackOutcome = { kind: 'over' } | { kind: 'refused' } | { kind: 'busy' } | { kind: 'done'; login: LoginView };

/** The callback URL an app handed over, parsed; a 400 when it is not one. */
export function parseCallbackUrl(callbackUrl: string): URL {
  try {
    return new URL(callbackUrl);
  } catch {
    throw E.invalidRequest('url: not a URL');
  }
}

/** The `state` of a callback URL (RFC 6749 §4.1.2), by which `POST /v1/logins/callback` finds its login. */
export function stateOfCallback(url: URL): string {
  const state = url.searchParams.get('state');
  if (!state) throw E.invalidRequest('url: it has no state parameter, so no login can be found for it');
  if (state.length > 512) throw E.invalidRequest('url: its state is longer than any tokend sends');
  return state;
}

/** RFC 6749 §3.1.2: the callback must be our redirect URI: same scheme, authority and path (the query is the answer). */
export function sameRedirect(got: URL, expected: URL): boolean {
  return got.protocol === expected.protocol && got.host === expected.host && got.pathname === expected.pathname;
}

/** The redirect URI check of a callback handed over through the API: a 400, and the login stays pending. */
export function checkRedirect(url: URL, redirectUri: string, account: string): void {
  if (!sameRedirect(url, new URL(redirectUri))) {
    throw E.invalidRequest(`url: not this login's redirect_uri (${redirectUri}); the login stays pending`, { account });
  }
}

/** What the API answers for a callback handed over: the login once done, else the error that says why not. */
export function answerOf(o: CallbackOutcome, account: string): LoginView | undefined {
  switch (o.kind) {
    case 'refused':
      throw E.invalidRequest('url: its state does not belong to this login; it was ignored and the login stays pending', { account });
    case 'busy':
      throw E.conflict('this login is already being completed', { account });
    case 'over':
      return undefined;
    case 'done':
      return o.login;
  }
}

/** A callback for a login that is no longer waiting for one: 409, naming how it ended. */
export function notWaiting(done: LoginView): ApiError {
  return E.conflict(`login "${done.id}" is ${done.status}, not waiting for a callback`, { account: done.account });
}

/** The loopback listener's page for a callback outcome. */
export function pageFor(account: string, o: CallbackOutcome): CallbackAnswer {
  switch (o.kind) {
    case 'over':
      return {
        status: 410,
        html: page('This sign-in is over', 'This login has already finished. Run the login again if you still need one.'),
        last: false,
      };
    case 'refused':
      return {
        status: 400,
        html: page(
          'Sign-in refused',
          `This answer does not belong to the sign-in to ${account} that tokend started (its state does not match), so it was ignored. Use the link tokend printed to sign in.`,
        ),
        last: false,
      };
    case 'busy':
      return { status: 409, html: page('Already signing in', `The sign-in to ${account} is already being completed.`), last: false };
    case 'done':
      if (o.login.status === 'active') {
        return { status: 200, html: page(`Signed in to ${account}`, 'You can close this tab and go back to the terminal.'), last: true };
      }
      return {
        status: 400,
        html: page(`Could not sign in to ${account}`, o.login.error?.message ?? 'the sign-in did not finish'),
        last: true,
      };
  }
}
