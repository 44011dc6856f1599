import type {
  DpopProofRequest,
  DpopProofResponse,
  AccountList,
  AccountView,
  AuditList,
  Health,
  Labels,
  LoginFlow,
  LoginList,
  LoginStatus,
  LoginView,
  PatchAccountRequest,
  PutAccountRequest,
  RecoverResponse,
  RefreshResponse,
  RejectResponse,
  TokenResponse,
} from '../protocol/api.js';
import { importBody, type ImportTokens } from '../protocol/import-tokens.js';
import { resolvePaths } from '../protocol/paths.js';
import { ACCOUNT_LABEL_QUERY, matchesLabels } from '../protocol/labels.js';
import { ACCOUNT_WRITE_FLAGS, ROUTES } from '../protocol/routes.js';
import { TokendError } from './errors.js';
import { subscribe, type EventsOptions, type EventSubscription } from './event-subscription.js';
import { isAbsoluteUrl, pathUnderApiBase, proxyFetch, type TokendFetchInit } from './proxy-fetch.js';
import { SocketTransport } from './socket-transport.js';
import { waitForLogin, type WaitForLoginOptions } from './wait-for-login.js';

export interface TokendOptions {
  /** The daemon's socket. Default: where the CLI finds it (`TOKEND_SOCKET`, `TOKEND_HOME`, `$XDG_RUNTIME_DIR/tokend/tokend.sock`, …). */
  socket?: string;
  /** The environment the socket location and an autostarted daemon come from; default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Start the daemon when nothing listens, as the CLI does (default true; `TOKEND_NO_AUTOSTART=1` turns it off too). */
  autostart?: boolean;
  /** Who is asking, recorded in the daemon's audit log; default `tokend-sdk`. */
  userAgent?: string;
}

export interface TokenOptions {
  /** Seconds the token must stay valid (default: the daemon's, 30). */
  minTtl?: number;
  /** A narrower scope (space-separated), cached apart. */
  scope?: string;
  /** A resource / audience (RFC 8707), cached apart. */
  audience?: string;
  signal?: AbortSignal;
}

export interface RefreshOptions {
  /** The token your call was refused with: refresh only if the daemon still holds that one (coalesced). */
  ifToken?: string;
}

export interface AccountWriteOptions {
  /** The change moves the account to another provider or client: revoke and drop its grant instead of refusing (409 `conflict`). */
  replaceGrant?: boolean;
  /** False: do not contact the provider to check the account (offline setup). */
  check?: boolean;
}

export interface LoginOptions {
  /** Default: the account's flow, else the daemon's guess. */
  flow?: LoginFlow;
  /** Your own label for this login (a task id, a user id): returned with it, and `logins({ task })` finds it. */
  task?: string;
  /**
   * How long the login waits, in seconds (default: the account's `login_ttl_s`, else 10
   * minutes; a device login at most its code's own expiry); more than the daemon's
   * `login_ttl_max_s` (7 days by default) is refused (`invalid_request`).
   */
  ttlS?: number;
}

export interface LoginQuery {
  account?: string;
  status?: LoginStatus;
  task?: string;
}

export interface AccountQuery {
  /** Only the accounts carrying every one of these labels. */
  labels?: Labels;
}

/** One account `removeAccounts` removed. */
export interface RemovedAccount extends RevokeResult {
  name: string;
}

/** Which audit entries `audit()` reads. */
export interface AuditOptions {
  account?: string;
  /** One action: `token`, `import`, `login_succeeded`, `account_changed`, … (docs/api.md). */
  action?: string;
  /** From this time on: a Date, an ISO time, or a duration back from now (`15m`, `1h`, `7d`). */
  since?: Date | string;
  /** Before this time (same forms). */
  until?: Date | string;
  /** At most this many entries (default 100, at most 1000). */
  limit?: number;
  /** The `next` of the previous answer: the following page. */
  cursor?: string;
}

/** What `logout` and `removeAccount` answer. */
export interface RevokeResult {
  ok: true;
  /** The provider confirmed the revocation (RFC 7009); false when it has no endpoint or could not be reached. */
  revoked: boolean;
}

/**
 * Calls that may be sent twice without harm (reads, and a token, which the daemon serves
 * from memory or refreshes once for every caller): a connection that breaks under them (a
 * daemon restart) costs one reconnection, not an error. Writes are never sent twice: their
 * outcome is then unknown, and the app decides.
 */
const IDEMPOTENT = { idempotent: true } as const;

/**
 * The tokend daemon, from an app: tokens, accounts, logins, events, and a `fetch` that
 * calls an account's API without the app ever holding its token. Every method throws
 * a {@link TokendError} when the daemon says no or cannot be reached, never a raw socket error.
 */
export class Tokend {
  /** The socket this client talks to. */
  readonly socket: string;
  private readonly transport: SocketTransport;

  constructor(opts: TokendOptions = {}) {
    const env = opts.env ?? process.env;
    const paths = resolvePaths(env, opts.socket);
    this.socket = paths.socket;
    this.transport = new SocketTransport({
      socket: paths.socket,
      dataDir: paths.dataDir,
      logFile: paths.logFile,
      env,
      autostart: (opts.autostart ?? true) && env.TOKEND_NO_AUTOSTART !== '1',
      userAgent: opts.userAgent ?? 'tokend-sdk',
    });
  }

  /** A valid access token for `account` (`POST /v1/token`). Prefer {@link Tokend.fetch} where it fits: the token then never enters the app. */
  token(account: string, opts: TokenOptions = {}): Promise<TokenResponse> {
    const body = { account, min_ttl: opts.minTtl, scope: opts.scope, audience: opts.audience };
    return this.transport.json('POST', ROUTES.token, body, { signal: opts.signal, idempotent: true });
  }

  /** One account: status, expiry, scopes, the pending login (`login`) and how the last one ended (`last_login`). */
  info(account: string): Promise<AccountView> {
    return this.transport.json('GET', ROUTES.account(account), undefined, IDEMPOTENT);
  }

  /** Every account, or with `labels` those carrying each label given (`{ user: '123' }`). */
  async accounts(query: AccountQuery = {}): Promise<AccountView[]> {
    const words = Object.entries(query.labels ?? {}).map(([k, v]) => `${ACCOUNT_LABEL_QUERY}=${encodeURIComponent(`${k}=${v}`)}`);
    const path = words.length ? `${ROUTES.accounts}?${words.join('&')}` : ROUTES.accounts;
    const { accounts } = await this.transport.json<AccountList>('GET', path, undefined, IDEMPOTENT);
    // Checked here too: a daemon from before labels ignores the filter and answers every account.
    return words.length ? accounts.filter((a) => matchesLabels(a.labels, query.labels ?? {})) : accounts;
  }

  /**
   * Remove every account carrying each label of `query.labels` (as {@link Tokend.accounts}
   * finds them), one `DELETE` each: revoked, then deleted. Resolves with what it removed; an
   * account another caller removed meanwhile is skipped. An empty selector is refused
   * (`invalid_request`), so this never removes every account by mistake.
   */
  async removeAccounts(query: { labels: Labels }): Promise<RemovedAccount[]> {
    if (Object.keys(query?.labels ?? {}).length === 0)
      throw new TokendError(
        'invalid_request',
        'removeAccounts needs at least one label to select the accounts (it never removes them all)',
      );
    const removed: RemovedAccount[] = [];
    for (const a of await this.accounts(query)) {
      try {
        removed.push({ name: a.name, ...(await this.removeAccount(a.name)) });
      } catch (err) {
        if (!(err instanceof TokendError && err.code === 'not_found')) throw err;
      }
    }
    return removed;
  }

  /**
   * Refresh now, whatever the cached token's expiry. With `ifToken` (the token your API call
   * was refused with), coalesced: when the daemon already holds another valid token it
   * answers with that one and calls nobody, and a refresh in flight is joined, so a burst of
   * refused calls costs one refresh; the answer then carries the token to use
   * (`access_token`, `expires_in`, …). The token goes in the request body, never a URL.
   */
  refresh(account: string, opts: RefreshOptions = {}): Promise<RefreshResponse> {
    const body = opts.ifToken === undefined ? undefined : { if_token: opts.ifToken };
    return this.transport.json('POST', ROUTES.accountRefresh(account), body);
  }

  /**
   * The account's recover step now: a new grant without the refresh token (Cal.com's
   * force-refresh, AMP's obtain_token with the stored password, client credentials). It
   * replaces the grant (Cal.com's force-refresh also ends every token the platform held for
   * the user). Rejects with `conflict` where the account has no recover step.
   */
  recover(account: string): Promise<RecoverResponse> {
    return this.transport.json('POST', ROUTES.accountRecover(account));
  }

  /**
   * Your API call was refused with `token` (401, Cal.com's 498): the daemon stops serving it,
   * and the next `token()` gets a new one, one refresh for every caller that reports the same
   * token (`POST /v1/credential/reject`). Resolves with how many cached tokens were dropped
   * (0 when the daemon already serves another).
   */
  reject(account: string, token: string): Promise<RejectResponse> {
    return this.transport.json('POST', ROUTES.credentialReject, { account, access_token: token });
  }

  /**
   * Start the account from tokens your app already holds (`POST /v1/accounts/:name/import`):
   * a refresh token (Real-Debrid's with the client it was issued to), maybe its access token.
   * Proven with one refresh before anything is replaced: tokens the provider refuses reject
   * with `import_refused`, an unreachable provider with `upstream_unavailable`, and the
   * account stays exactly as it was.
   */
  importTokens(account: string, tokens: ImportTokens): Promise<AccountView> {
    return this.transport.json('POST', ROUTES.accountImport(account), importBody(tokens));
  }

  /** Revoke the grant at the provider and forget it; the account's config stays. */
  logout(account: string): Promise<RevokeResult> {
    return this.transport.json('POST', ROUTES.accountLogout(account));
  }

  /** Add or replace an account (`PUT`); `client_secret` goes to the daemon's encrypted store only. */
  addAccount(name: string, config: PutAccountRequest, opts: AccountWriteOptions = {}): Promise<AccountView> {
    return this.transport.json('PUT', withQuery(ROUTES.account(name), writeFlags(opts)), config);
  }

  /** Change the fields given and only those (`PATCH`); arrays replace the whole list. */
  updateAccount(name: string, patch: PatchAccountRequest, opts: AccountWriteOptions = {}): Promise<AccountView> {
    return this.transport.json('PATCH', withQuery(ROUTES.account(name), writeFlags(opts)), patch);
  }

  /** Revoke, then delete the account, its grant, its secrets and its config. */
  removeAccount(name: string): Promise<RevokeResult> {
    return this.transport.json('DELETE', ROUTES.account(name));
  }

  health(): Promise<Health> {
    return this.transport.json('GET', ROUTES.health, undefined, IDEMPOTENT);
  }

  /**
   * Start an interactive login, or join the one in progress. Show the person
   * `user_code` + `verification_uri` (device flow) or open `authorization_url` (browser
   * flow), then {@link Tokend.waitForLogin}.
   */
  login(account: string, opts: LoginOptions = {}): Promise<LoginView> {
    return this.transport.json('POST', ROUTES.accountLogin(account), { flow: opts.flow, task: opts.task, ttl_s: opts.ttlS });
  }

  getLogin(id: string): Promise<LoginView> {
    return this.transport.json('GET', ROUTES.login(id), undefined, IDEMPOTENT);
  }

  /** Logins, newest first, filtered by account, status and your `task` label. */
  async logins(query: LoginQuery = {}): Promise<LoginView[]> {
    return (await this.transport.json<LoginList>('GET', withQuery(ROUTES.logins, query), undefined, IDEMPOTENT)).logins;
  }

  /**
   * The audit log, newest first: who did what to which account and how it ended (never a
   * secret). Everything recorded before the call is in it. `next`, when there is more, is
   * the `cursor` of the following page.
   */
  audit(opts: AuditOptions = {}): Promise<AuditList> {
    const time = (t: Date | string | undefined) => (t instanceof Date ? t.toISOString() : t);
    const query = { ...opts, since: time(opts.since), until: time(opts.until) };
    return this.transport.json<AuditList>('GET', withQuery(ROUTES.audit, query), undefined, IDEMPOTENT);
  }

  /** Stop a pending login; it ends `failed` with code `cancelled`. */
  cancelLogin(id: string): Promise<LoginView> {
    return this.transport.json('POST', ROUTES.loginCancel(id));
  }

  /**
   * Hand over the redirect your app received for a browser login: `completeLogin(url)`
   * finds the login by the `state` in the URL (any pending browser login, a loopback one
   * too, also after a daemon restart; an unknown state is `login_not_found`);
   * `completeLogin(id, url)` names it, for a login whose `redirect_uri` is the app's own (a
   * deep link such as `com.example.app:/oauth2redirect?code=…&state=…`). Resolves with the
   * login once the code is exchanged (`active`, or `failed` with the provider's error).
   */
  completeLogin(callbackUrl: string | URL): Promise<LoginView>;
  completeLogin(id: string, callbackUrl: string | URL): Promise<LoginView>;
  completeLogin(idOrUrl: string | URL, callbackUrl?: string | URL): Promise<LoginView> {
    if (callbackUrl === undefined) return this.transport.json('POST', ROUTES.loginCallbackByState, { url: String(idOrUrl) });
    return this.transport.json('POST', ROUTES.loginCallback(String(idOrUrl)), { url: String(callbackUrl) });
  }

  /**
   * Wait until the login finishes: resolves with it once `active`, rejects with a
   * TokendError carrying the login's error code (`access_denied`, `expired_token`,
   * `cancelled`, …) and the login itself when it failed or expired.
   */
  waitForLogin(id: string, opts: WaitForLoginOptions = {}): Promise<LoginView> {
    return waitForLogin({ getLogin: (i) => this.getLogin(i), events: (o) => this.events(o) }, id, opts);
  }

  /**
   * The daemon's events (`account.reauth_required`, `token.refreshed`, `login.*`, …) as
   * they happen: `for await (const ev of tokend.events({ signal }))`. Never a secret.
   */
  events(opts: EventsOptions = {}): EventSubscription {
    return subscribe(this.transport, opts);
  }

  /**
   * `fetch`, as the account: the daemon sends the request to the account's `api_base` with
   * its token, so the app never holds it. `pathOrUrl` is a path under `api_base` (`/user`)
   * or an absolute URL under it. Resolves with the API's answer, whatever its status;
   * throws a TokendError when tokend itself could not (no token: `reauth_required`, an
   * unknown account, the API unreachable).
   */
  async fetch(account: string, pathOrUrl: string | URL, init?: TokendFetchInit): Promise<Response> {
    const apiBase = isAbsoluteUrl(pathOrUrl) ? (await this.info(account)).api_base : undefined;
    return proxyFetch(this.transport, account, pathUnderApiBase(account, pathOrUrl, apiBase), init);
  }

  /**
   * A DPoP proof (RFC 9449) for one request of a DPoP account, signed by the key only the
   * daemon holds, with the access token it is bound to: send `Authorization: DPoP
   * ${access_token}` and `DPoP: ${proof}`. A proof is for one request: ask again for the next
   * (and with the `nonce` the API answered in `DPoP-Nonce`, when it asks for one).
   */
  dpopProof(
    account: string,
    req: { method: string; url: string | URL; nonce?: string },
    opts: { signal?: AbortSignal } = {},
  ): Promise<DpopProofResponse> {
    const body: DpopProofRequest = {
      account,
      htm: req.method.toUpperCase(),
      htu: String(req.url),
      ...(req.nonce ? { nonce: req.nonce } : {}),
    };
    return this.transport.json('POST', ROUTES.dpopProof, body, { signal: opts.signal });
  }
}

function writeFlags(opts: AccountWriteOptions): Record<string, string | undefined> {
  return {
    [ACCOUNT_WRITE_FLAGS.replaceGrant]: opts.replaceGrant === undefined ? undefined : String(opts.replaceGrant),
    [ACCOUNT_WRITE_FLAGS.check]: opts.check === undefined ? undefined : String(opts.check),
  };
}

function withQuery(path: string, params: object): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
