/**
 * Taking up, at start-up, the logins a previous daemon left pending (stopped or killed):
 * what each stored login can still do. A device login polls again with its stored device
 * code until the code expires (RFC 8628 §3.5); a browser login on a loopback redirect
 * listens again on its port (RFC 8252 §7.3: the redirect URI the provider holds names it);
 * a deep-link login (RFC 8252 §7.1/§7.2) waits for the app to hand its callback over. A
 * login whose time passed, or that cannot go on, ends here with the reason.
 */
import type { AccountConfig } from '../protocol/api.js';
import type { Driver } from './drivers/driver.js';
import { isBoundTo } from './grant-identity.js';
import { CALLBACK_PATH } from './login-browser.js';
import type { LoginError } from './login-device.js';
import { stateOf, type LoginState } from './login-view.js';
import type { LoginRecord } from './store/types.js';

export type Resumption =
  | { kind: 'end'; status: 'expired' | 'failed'; error: LoginError }
  | { kind: 'device'; state: LoginState; cfg: AccountConfig; driver: Driver; deviceCode: string }
  | {
      kind: 'browser';
      state: LoginState;
      cfg: AccountConfig;
      driver: Driver;
      redirectUri: string;
      secrets: { state: string; code_verifier: string };
      /** The loopback listener's port to listen on again; undefined for a deep link. */
      loopbackPort: number | undefined;
    };

export interface ResumeDeps {
  getAccount: (name: string) => AccountConfig | undefined;
  getDriver: (name: string) => Driver | undefined;
  now: number;
}

const ended = (status: 'expired' | 'failed', code: string, message: string): Resumption => ({
  kind: 'end',
  status,
  error: { code, message },
});

/** What becomes of one login left pending by the previous daemon. */
export function planResume(rec: LoginRecord, deps: ResumeDeps): Resumption {
  const state = stateOf(rec);
  const secrets = rec.secrets ?? {};
  if (!state) {
    return ended('expired', 'daemon_stopped', 'tokend stopped before this login finished and cannot take it up; start a new login');
  }
  if (deps.now >= state.expires_at) {
    const code = state.flow === 'device' ? 'expired_token' : 'expired';
    return ended('expired', code, 'the login expired while tokend was stopped; run the login again');
  }
  const cfg = deps.getAccount(rec.account);
  if (!cfg) return ended('failed', 'account_removed', `account "${rec.account}" was removed during the login`);
  if (!isBoundTo(state.identity, cfg)) {
    return ended(
      'failed',
      'account_changed',
      `account "${rec.account}" was changed to another provider or client during the login; log in again`,
    );
  }
  const driver = deps.getDriver(cfg.driver);
  if (state.flow === 'device') {
    const deviceCode = secrets.device_code;
    if (!deviceCode || !driver?.pollDeviceLogin) return lost();
    return { kind: 'device', state, cfg, driver, deviceCode };
  }
  const redirectUri = state.redirect_uri;
  if (!secrets.state || !secrets.code_verifier || !redirectUri || !driver?.exchangeCode) return lost();
  return {
    kind: 'browser',
    state,
    cfg,
    driver,
    redirectUri,
    secrets: { state: secrets.state, code_verifier: secrets.code_verifier },
    loopbackPort: loopbackPortOf(redirectUri, cfg),
  };
}

function lost(): Resumption {
  return ended('expired', 'daemon_stopped', 'tokend stopped before this login finished and lost what it needs to go on; start a new login');
}

/** The port of tokend's own loopback redirect (`http://127.0.0.1:PORT/callback`), unless the account names that redirect itself. */
function loopbackPortOf(redirectUri: string, cfg: AccountConfig): number | undefined {
  if (cfg.redirect_uri === redirectUri) return undefined;
  const u = new URL(redirectUri);
  if (u.protocol !== 'http:' || u.hostname !== '127.0.0.1' || u.pathname !== CALLBACK_PATH || !u.port) return undefined;
  return Number(u.port);
}
