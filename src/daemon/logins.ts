/**
 * Interactive logins: device flow (RFC 8628) and browser flow (RFC 6749 §4.1 + RFC 7636
 * PKCE on an RFC 8252 loopback redirect), their lifecycle (pending → active | failed |
 * expired), persistence, joining, and events.
 *
 * The store holds what the API shows, so a status survives a restart, and a login that was
 * pending when the daemon stopped is `expired` afterwards. A pending login's secrets (device
 * code; state, PKCE verifier and the authorization URL that carries the state) are stored
 * sealed only, and removed when it ends; authorization codes and tokens never are.
 */
import { randomUUID } from 'node:crypto';
import { LoginView, type AccountConfig, type LoginFlow, type LoginStatus } from '../protocol/api.js';
import { loginEnded, loginStarted, type AuditSink } from './audit.js';
import type { Broker } from './broker.js';
import type { ConfigStore } from './config.js';
import { driverContext } from './driver-context.js';
import { DriverError, type DeviceAuthorization, type Driver, type DriverContext, type TokenSet } from './drivers/driver.js';
import { defaultLoginFlow, importHint } from '../protocol/rules.js';
import { wireErrorOf } from './driver-errors.js';
import { E, TokendError, unknownAccount } from './errors.js';
import { identityKey } from './grant-identity.js';
import type { EventBus } from './events.js';
import { browserSecrets, openLoopback, page, stateMatches, type CallbackAnswer } from './login-browser.js';
import { loginErrorOf, pollDeviceCode, type LoginError } from './login-device.js';
import type { Logger } from './log.js';
import type { LoginRecord, LoginSecrets, Store } from './store/types.js';

export interface LoginManagerDeps {
  store: Store;
  config: Pick<ConfigStore, 'getAccount' | 'settings'>;
  broker: Pick<Broker, 'installLogin'> & Partial<Pick<Broker, 'checkLoginTarget'>>;
  events: EventBus;
  log: Logger;
  getDriver: (name: string) => Driver | undefined;
  now?: () => number;
  /** The daemon's environment and platform, for the default flow when a request names none. */
  env?: Readonly<Record<string, string | undefined>>;
  platform?: string;
  /** How long a browser login waits for its callback; default {@link BROWSER_LOGIN_TTL_MS}. */
  browserTtlMs?: number;
  /** Where a login's start and end are recorded (GET /v1/audit). */
  audit?: AuditSink;
}

/** How long a browser login waits for its callback. */
export const BROWSER_LOGIN_TTL_MS = 10 * 60_000;

/** A login as the manager holds it: the API's fields, times in epoch ms. */
interface LoginState {
  id: string;
  account: string;
  flow: LoginFlow;
  task: string | null;
  status: LoginStatus;
  user_code: string | null;
  verification_uri: string | null;
  verification_uri_complete: string | null;
  authorization_url: string | null;
  created_at: number;
  updated_at: number;
  expires_at: number;
  error: LoginError | null;
  /** The device flow's QR code (see qrOf); memory only. */
  qr?: string | null;
}

/**
 * What a login talks to, fixed when it starts: the account's config, its client secret and
 * the identity of the provider and client (grant-identity.ts). A login that finishes after
 * the account moved elsewhere cannot install its grant, and never uses the new secret.
 */
interface LoginTarget {
  account: string;
  cfg: AccountConfig;
  /** Every stored secret of the account, read when the login started. */
  secrets: Map<string, string>;
  identity: string;
  /** The caller's label for the login. */
  task?: string;
  /** Who asked for it (User-Agent), for the audit log. */
  caller?: string;
}

/** What a browser login needs to receive its callback (its secrets are also stored, sealed, while it is pending). */
interface BrowserWait {
  driver: Driver;
  redirectUri: string;
  secrets: { state: string; code_verifier: string };
}

/** What became of one callback request. */
type CallbackOutcome = { kind: 'over' } | { kind: 'refused' } | { kind: 'busy' } | { kind: 'done'; login: LoginView };

interface Session {
  state: LoginState;
  target: LoginTarget;
  /** A browser login waiting for its callback. */
  browser?: BrowserWait;
  /** Aborted when the login finishes: stops polling, closes the loopback listener. */
  stop: AbortController;
  /** A code exchange or grant install is under way: expiry waits for it. */
  busy: boolean;
}

/** Owns every interactive login of the daemon; at most one pending login per account. */
export class LoginManager {
  /** account → its pending login (or the start of one): a second request joins it. */
  private readonly byAccount = new Map<string, Promise<Session>>();
  private readonly live = new Map<string, Session>();
  /** Aborted on shutdown: stops starts in progress. */
  private readonly shutdown = new AbortController();
  private readonly now: () => number;
  private pruneTimer?: NodeJS.Timeout;

  constructor(private readonly deps: LoginManagerDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * At start-up: logins a previous daemon left pending cannot finish (their device code or
   * verifier died with it), so they become `expired`; old finished ones are pruned.
   */
  async expireStale(): Promise<number> {
    const now = this.now();
    const stale = await this.deps.store.listLogins({ status: 'pending' });
    for (const { secrets: _gone, ...rec } of stale) {
      const error: LoginError = { code: 'daemon_stopped', message: 'tokend stopped before this login finished; start a new login' };
      // Finished: the store removes its secrets in the same commit.
      await this.deps.store.putLogin({ ...rec, status: 'expired', data: { ...rec.data, error }, updated_at: now });
      this.deps.log.info('a login left pending by the previous daemon is now expired', { account: rec.account, login_id: rec.id });
    }
    await this.prune();
    this.pruneTimer = setInterval(() => {
      this.prune().catch((err) => this.deps.log.warn('could not prune finished logins', { error: (err as Error).message }));
    }, 3_600_000);
    this.pruneTimer.unref();
    return stale.length;
  }

  /** The account's pending login, if any (the broker's 409 `login_pending`). */
  pendingFor(account: string): LoginView | undefined {
    const s = this.live.get(account);
    return s && s.state.status === 'pending' ? view(s.state) : undefined;
  }

  /** One login by id: live, or as stored. */
  async get(id: string): Promise<LoginView> {
    for (const s of this.live.values()) if (s.state.id === id) return view(s.state);
    const rec = await this.deps.store.getLogin(id);
    if (!rec) throw E.notFound(`no login with id "${id.slice(0, 80)}"`);
    return fromRecord(rec);
  }

  /**
   * Start a login for `account`, or join the pending one (same object, no second code or
   * browser tab). `flow`: the request's; else the account's; else the daemon's guess.
   */
  async start(account: string, flow?: LoginFlow, opts: { task?: string; caller?: string } = {}): Promise<LoginView> {
    if (this.shutdown.signal.aborted) throw E.upstreamUnavailable('tokend is shutting down');
    const cfg = this.deps.config.getAccount(account);
    if (!cfg) throw unknownAccount(account);
    const running = this.byAccount.get(account);
    if (running) {
      // A start that fails rejects every request that joined it: one provider call, one error.
      const s = await running;
      if (s.state.status === 'pending') return view(s.state);
      return this.start(account, flow, opts);
    }
    const chosen = this.chooseFlow(account, cfg, flow);
    const driver = this.deps.getDriver(cfg.driver);
    if (!driver) throw E.internal(`account "${account}" uses an unknown driver "${cfg.driver}"`);
    const opening = (async () => {
      // Rule 8 in a fleet: no login (and no stored secret) for an identity the fleet's grant does not belong to.
      await this.deps.broker.checkLoginTarget?.(account, identityKey(cfg));
      const secrets = await this.deps.store.getSecrets(account);
      const target: LoginTarget = {
        account,
        cfg,
        secrets,
        identity: identityKey(cfg),
        ...(opts.task ? { task: opts.task } : {}),
        caller: opts.caller,
      };
      return chosen === 'device' ? this.openDevice(target, driver) : this.openBrowser(target, driver);
    })();
    this.byAccount.set(account, opening);
    opening.catch(() => {
      if (this.byAccount.get(account) === opening) this.byAccount.delete(account);
    });
    return view((await opening).state);
  }

  /**
   * Stop a pending login (`tokend login NAME --cancel`, or the account changed): it ends
   * `failed` with code `cancelled`, polling stops, the loopback listener closes. A login
   * that already finished is returned as it is.
   */
  async cancel(id: string, why = 'the login was cancelled'): Promise<LoginView> {
    for (const s of this.live.values()) {
      if (s.state.id !== id) continue;
      this.finish(s, 'failed', { code: 'cancelled', message: why });
      return view(s.state);
    }
    return this.get(id);
  }

  /** Cancel the account's pending login, if any (its config changed under it). */
  cancelFor(account: string, why: string): void {
    const s = this.live.get(account);
    if (s) this.finish(s, 'failed', { code: 'cancelled', message: why });
  }

  /** Logins, newest first: the live ones as they are now, the others as stored. */
  async list(q: { account?: string; status?: LoginStatus; task?: string } = {}): Promise<LoginView[]> {
    const stored = await this.deps.store.listLogins(q.status ? { status: q.status } : {});
    const live = new Map([...this.live.values()].map((s) => [s.state.id, view(s.state)]));
    const out: LoginView[] = [];
    for (const rec of stored) {
      const v = live.get(rec.id) ?? fromRecord(rec);
      if (q.account && v.account !== q.account) continue;
      if (q.task && v.task !== q.task) continue;
      if (q.status && v.status !== q.status) continue;
      out.push(v);
    }
    return out;
  }

  /**
   * Forget finished logins older than the retention setting; runs at start-up and every
   * hour while the daemon runs, so a vault that starts many logins does not grow the DB.
   */
  prune(): Promise<number> {
    const keepMs = this.deps.config.settings.login_retention_hours * 3_600_000;
    return this.deps.store.pruneLogins(this.now() - keepMs);
  }

  /** The account's last finished login (what `tokend status` shows of it), or undefined. */
  async lastFinished(account: string): Promise<LoginView | undefined> {
    const rec = await this.deps.store.lastFinishedLogin(account);
    return rec ? fromRecord(rec) : undefined;
  }

  /** Shutdown: stop every poller and listener; pending logins are recorded as expired. */
  close(): void {
    this.shutdown.abort();
    clearInterval(this.pruneTimer);
    for (const s of [...this.live.values()]) {
      this.finish(
        s,
        'expired',
        { code: 'daemon_stopped', message: 'tokend stopped before this login finished; start a new login' },
        { quiet: true },
      );
    }
  }

  // ---- flows ----

  private chooseFlow(account: string, cfg: AccountConfig, requested: LoginFlow | undefined): LoginFlow {
    if (requested) return requested;
    if (cfg.flow === 'device' || cfg.flow === 'browser') return cfg.flow;
    if (cfg.flow) {
      throw E.invalidRequest(
        `account "${account}" uses the ${cfg.flow} flow, which needs no interactive login; ask for a token (\`tokend token ${account}\`), or pass a flow (device or browser)`,
        { account },
      );
    }
    return defaultLoginFlow(this.deps.env ?? process.env, this.deps.platform ?? process.platform);
  }

  /** RFC 8628 §3.1–3.2: ask for codes, record the login, poll in the background. */
  private async openDevice(target: LoginTarget, driver: Driver): Promise<Session> {
    const { account } = target;
    if (!driver.startDeviceLogin || !driver.pollDeviceLogin) throw noSuchLogin(driver, account, 'device');
    let auth: DeviceAuthorization;
    try {
      auth = await this.step((signal) => driver.startDeviceLogin!(this.context(target, signal)), this.shutdown.signal);
    } catch (err) {
      throw this.startError(account, 'device', err);
    }
    const now = this.now();
    const qr = await qrOf(auth.verification_uri_complete ?? auth.verification_uri);
    const s = this.begin(
      target,
      {
        qr,
        id: randomUUID(),
        account,
        flow: 'device',
        task: target.task ?? null,
        status: 'pending',
        user_code: auth.user_code,
        verification_uri: auth.verification_uri,
        verification_uri_complete: auth.verification_uri_complete ?? null,
        authorization_url: null,
        created_at: now,
        updated_at: now,
        expires_at: now + auth.expires_in * 1000,
        error: null,
      },
      { device_code: auth.device_code },
    );
    void this.runDevice(s, driver, auth);
    return s;
  }

  private async runDevice(s: Session, driver: Driver, auth: DeviceAuthorization): Promise<void> {
    const { account } = s.state;
    try {
      const outcome = await pollDeviceCode({
        poll: () => this.step((signal) => driver.pollDeviceLogin!(this.context(s.target, signal), auth.device_code), s.stop.signal),
        interval: auth.interval,
        unitMs: this.deps.config.settings.device_poll_unit_ms,
        expiresAt: s.state.expires_at,
        signal: s.stop.signal,
        now: this.now,
        onInterval: (seconds, why) =>
          this.deps.log.info('device login: polling more slowly', { account, login_id: s.state.id, interval_s: seconds, why }),
      });
      switch (outcome.kind) {
        case 'tokens':
          s.busy = true;
          await this.succeed(s, outcome.tokens);
          return;
        case 'expired':
        case 'failed':
          this.finish(s, outcome.kind, outcome.error);
          return;
        case 'stopped':
          return;
      }
    } catch (err) {
      this.deps.log.error('device login crashed', { account, login_id: s.state.id, error: err as Error });
      this.finish(s, 'failed', loginErrorOf(err));
    }
  }

  /** RFC 8252 §7.3: a loopback listener, PKCE S256 (RFC 7636 §4.2) and state, then the authorization URL. */
  private async openBrowser(target: LoginTarget, driver: Driver): Promise<Session> {
    const { account } = target;
    if (!driver.authorizationUrl || !driver.exchangeCode) throw noSuchLogin(driver, account, 'browser');
    const secrets = browserSecrets();
    let session: Session | undefined;
    // RFC 8252 §7.3 loopback listener, unless the account names its own redirect (§7.1
    // private-use scheme, §7.2 claimed https): then the app hands the callback over.
    const loopback = target.cfg.redirect_uri
      ? undefined
      : await openLoopback(async (url) => pageFor(account, await this.receive(session, url)));
    const redirectUri = target.cfg.redirect_uri ?? loopback!.redirectUri;
    let authorizationUrl: string;
    try {
      authorizationUrl = await this.step(
        (signal) =>
          driver.authorizationUrl!(this.context(target, signal), {
            redirect_uri: redirectUri,
            state: secrets.state,
            code_challenge: secrets.code_challenge,
          }),
        this.shutdown.signal,
      );
    } catch (err) {
      loopback?.close();
      throw this.startError(account, 'browser', err);
    }
    const now = this.now();
    const ttl = this.deps.browserTtlMs ?? BROWSER_LOGIN_TTL_MS;
    const s = this.begin(
      target,
      {
        id: randomUUID(),
        account,
        flow: 'browser',
        task: target.task ?? null,
        status: 'pending',
        user_code: null,
        verification_uri: null,
        verification_uri_complete: null,
        authorization_url: authorizationUrl,
        created_at: now,
        updated_at: now,
        expires_at: now + ttl,
        error: null,
      },
      { state: secrets.state, code_verifier: secrets.code_verifier, authorization_url: authorizationUrl },
    );
    s.browser = { driver, redirectUri, secrets };
    session = s;
    const expiry = setTimeout(() => this.expireBrowser(s), ttl);
    expiry.unref();
    s.stop.signal.addEventListener('abort', () => {
      clearTimeout(expiry);
      loopback?.close();
    });
    this.deps.log.debug('browser login listening', { account, login_id: s.state.id, redirect_uri: redirectUri });
    return s;
  }

  private expireBrowser(s: Session): void {
    if (s.busy) {
      // A code exchange is under way: it ends the login either way.
      setTimeout(() => this.expireBrowser(s), 200).unref();
      return;
    }
    this.finish(s, 'expired', { code: 'expired', message: 'nobody completed the sign-in in the browser in time; run the login again' });
  }

  /**
   * The browser came back (RFC 6749 §4.1.2), to the loopback listener or through the app
   * (`POST /v1/logins/:id/callback`). A wrong or missing `state` is refused and the login
   * stays pending: anything on this machine can reach the listener or the API, and a stray
   * or forged request must neither finish the login nor plant its own code (§10.12). A
   * right state ends the login, with the provider's error or with the exchanged tokens.
   */
  private async receive(s: Session | undefined, url: URL): Promise<CallbackOutcome> {
    if (s?.state.status !== 'pending' || !s.browser) return { kind: 'over' };
    const { account } = s.state;
    const { driver, redirectUri, secrets } = s.browser;
    if (!stateMatches(url.searchParams.get('state'), secrets.state)) {
      this.deps.log.warn('browser login: refused a callback whose state does not match; the login stays pending', {
        account,
        login_id: s.state.id,
      });
      return { kind: 'refused' };
    }
    if (s.busy) return { kind: 'busy' };
    s.busy = true;
    try {
      const tokens = await this.step(
        (signal) =>
          driver.exchangeCode!(this.context(s.target, signal), url, {
            redirect_uri: redirectUri,
            state: secrets.state,
            code_verifier: secrets.code_verifier,
          }),
        s.stop.signal,
      );
      await this.succeed(s, tokens);
    } catch (err) {
      this.finish(s, 'failed', loginErrorOf(err));
    }
    return { kind: 'done', login: view(s.state) };
  }

  /**
   * `POST /v1/logins/:id/callback`: the callback URL an app's OS-level handler received for
   * a login whose account names its own `redirect_uri` (a deep link). It must be that
   * redirect (scheme, host and path), with our `state`.
   */
  async completeCallback(id: string, callbackUrl: string): Promise<LoginView> {
    const s = [...this.live.values()].find((x) => x.state.id === id);
    if (!s) {
      const done = await this.get(id); // 404 when there is no such login
      throw E.conflict(`login "${id.slice(0, 80)}" is ${done.status}, not waiting for a callback`, { account: done.account });
    }
    const redirect = s.target.cfg.redirect_uri;
    if (!s.browser || !redirect) {
      throw E.invalidRequest(`login "${id}" receives its callback on tokend's own loopback listener, not through the API`, {
        account: s.state.account,
      });
    }
    let url: URL;
    try {
      url = new URL(callbackUrl);
    } catch {
      throw E.invalidRequest('url: not a URL');
    }
    if (!sameRedirect(url, new URL(redirect))) {
      throw E.invalidRequest(`url: not the account's redirect_uri (${redirect}); the login stays pending`, { account: s.state.account });
    }
    const outcome = await this.receive(s, url);
    switch (outcome.kind) {
      case 'refused':
        throw E.invalidRequest('url: its state does not belong to this login; it was ignored and the login stays pending', {
          account: s.state.account,
        });
      case 'busy':
        throw E.conflict('this login is already being completed', { account: s.state.account });
      case 'over':
        return await this.get(id);
      case 'done':
        return outcome.login;
    }
  }

  // ---- lifecycle ----

  /** Record a new pending login, its secrets sealed, and announce it. */
  private begin(target: LoginTarget, state: LoginState, secrets: LoginSecrets): Session {
    const s: Session = { state, target, stop: new AbortController(), busy: false };
    this.persist(state, secrets);
    this.live.set(state.account, s);
    this.deps.audit?.record(loginStarted(state, target.caller));
    this.deps.events.emit('login.pending', state.account, {
      login_id: state.id,
      flow: state.flow,
      user_code: state.user_code,
      verification_uri: state.verification_uri,
      verification_uri_complete: state.verification_uri_complete,
      authorization_url: state.authorization_url,
      expires_at: new Date(state.expires_at).toISOString(),
    });
    this.deps.log.info('login started', {
      account: state.account,
      login_id: state.id,
      flow: state.flow,
      expires_at: new Date(state.expires_at).toISOString(),
    });
    return s;
  }

  /** Install the new grant (only now is the old one replaced), then mark the login active. */
  private async succeed(s: Session, tokens: TokenSet): Promise<void> {
    const { account } = s.state;
    if (s.state.status !== 'pending') {
      // Cancelled while the code was being exchanged: these tokens have no home.
      await this.revokeAbandoned(s.target, tokens);
      return;
    }
    if (!this.deps.config.getAccount(account)) {
      this.finish(s, 'failed', { code: 'account_removed', message: `account "${account}" was removed during the login` });
      return;
    }
    try {
      await this.deps.broker.installLogin(account, tokens, s.target.identity);
    } catch (err) {
      if (err instanceof TokendError && err.code === 'conflict') {
        // The account moved to another provider or client during the login: these tokens
        // belong to the one the login talked to; give them back there (best effort).
        this.finish(s, 'failed', { code: 'account_changed', message: err.message });
        await this.revokeAbandoned(s.target, tokens);
        return;
      }
      this.deps.log.error('could not store the grant of a login', { account, login_id: s.state.id, error: err as Error });
      this.finish(s, 'failed', { code: 'internal', message: 'tokend could not store the new grant (see the daemon log)' });
      return;
    }
    if (!tokens.refresh_token) {
      this.deps.log.warn('the login gave no refresh token: the account works until the access token expires (ask for offline_access?)', {
        account,
      });
    }
    this.finish(s, 'active', null);
  }

  /** End a pending login once: persist, forget, stop its work, announce. */
  private finish(s: Session, status: Exclude<LoginStatus, 'pending'>, error: LoginError | null, opts: { quiet?: boolean } = {}): void {
    if (s.state.status !== 'pending') return;
    s.state = { ...s.state, status, error, updated_at: this.now() };
    const { account, id, flow } = s.state;
    this.persist(s.state);
    if (this.live.get(account) === s) {
      this.live.delete(account);
      this.byAccount.delete(account);
    }
    s.stop.abort();
    if (opts.quiet) return;
    this.deps.audit?.record(loginEnded(s.state, error));
    if (status === 'active') {
      this.deps.log.info('login succeeded', { account, login_id: id, flow });
      this.deps.events.emit('login.succeeded', account, { login_id: id, flow });
    } else {
      this.deps.log.warn('login did not succeed', { account, login_id: id, flow, status, error: error?.code, message: error?.message });
      this.deps.events.emit('login.failed', account, { login_id: id, flow, status, error: error?.code, message: error?.message });
    }
  }

  /**
   * Record the login as it is now (the store keeps the order of writes to one login; a
   * finished login's secrets go with that write); a failure never stops the login.
   */
  private persist(state: LoginState, secrets?: LoginSecrets): void {
    this.deps.store.putLogin({ ...toRecord(state), ...(secrets ? { secrets } : {}) }).catch((err) => {
      // The login goes on in memory; only its survival across a restart is lost.
      this.deps.log.error('could not record a login in the database', { account: state.account, login_id: state.id, error: err as Error });
    });
  }

  // ---- plumbing ----

  private context(t: LoginTarget, signal: AbortSignal): DriverContext {
    return driverContext({ account: t.account, config: t.cfg, secrets: t.secrets, signal });
  }

  /** Revoke tokens a login obtained but could not keep, at the provider that issued them. */
  private async revokeAbandoned(t: LoginTarget, tokens: TokenSet): Promise<void> {
    const driver = this.deps.getDriver(t.cfg.driver);
    const token = tokens.refresh_token ?? tokens.access_token;
    if (!driver?.revoke) return;
    try {
      await this.step(
        (signal) => driver.revoke!(this.context(t, signal), token, tokens.refresh_token ? 'refresh_token' : 'access_token'),
        this.shutdown.signal,
      );
    } catch (err) {
      this.deps.log.warn('could not revoke the grant of an abandoned login', { account: t.account, error: (err as Error).message });
    }
  }

  /** One provider request, bounded by http_timeout_ms and by `stop`. */
  private step<T>(fn: (signal: AbortSignal) => Promise<T>, stop: AbortSignal): Promise<T> {
    const signal = AbortSignal.any([AbortSignal.timeout(this.deps.config.settings.http_timeout_ms), stop, this.shutdown.signal]);
    return fn(signal);
  }

  /** A login that could not even start is the request's error; no login object is recorded. */
  private startError(account: string, flow: LoginFlow, err: unknown): TokendError {
    if (err instanceof DriverError) {
      this.deps.log.warn('could not start a login', { account, flow, kind: err.kind, status: err.status, error: err.message });
    } else if (!(err instanceof TokendError)) {
      this.deps.log.error('starting a login crashed', { account, flow, error: err as Error });
    }
    return wireErrorOf(err, { account, doing: `start a ${flow} login` });
  }
}

/** The driver cannot do this login flow: the other flow when it can, else its own way to a grant (Cal.com: an import). */
function noSuchLogin(driver: Driver, account: string, flow: LoginFlow): TokendError {
  const other: LoginFlow = flow === 'device' ? 'browser' : 'device';
  const canOther = other === 'device' ? driver.startDeviceLogin && driver.pollDeviceLogin : driver.authorizationUrl && driver.exchangeCode;
  if (canOther) return E.invalidRequest(`the ${driver.name} driver cannot do ${flow} logins; try --flow ${other}`, { account });
  const next = driver.reauthHint?.(account) ?? `\`${importHint(driver.name, account) ?? `tokend status ${account}`}\``;
  return E.invalidRequest(`the ${driver.name} driver has no interactive login; run ${next}`, { account });
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function view(s: LoginState): LoginView {
  return {
    id: s.id,
    account: s.account,
    flow: s.flow,
    task: s.task,
    status: s.status,
    user_code: s.user_code,
    verification_uri: s.verification_uri,
    verification_uri_complete: s.verification_uri_complete,
    // Only while pending, as stored (fromRecord): it carries the state.
    authorization_url: s.status === 'pending' ? s.authorization_url : null,
    qr: s.status === 'pending' ? (s.qr ?? null) : null,
    created_at: iso(s.created_at),
    updated_at: iso(s.updated_at),
    expires_at: iso(s.expires_at),
    error: s.error,
  };
}

/**
 * The QR code a phone scans to open the verification URL, rendered here so the thin client
 * needs no library; uqr is loaded on the first device login, not at daemon start.
 */
async function qrOf(url: string | null): Promise<string | null> {
  if (!url) return null;
  try {
    const { renderUnicodeCompact } = await import('uqr');
    return renderUnicodeCompact(url, { border: 1 });
  } catch {
    return null; // too long for a QR code: the URL is printed anyway
  }
}

function toRecord(s: LoginState): LoginRecord {
  const { id, account, flow, status, created_at, updated_at } = s;
  // Named one by one, never spread: not authorization_url, which carries the state, a
  // secret (stored sealed, see begin()), nor the QR code, which is memory only.
  const { task, user_code, verification_uri, verification_uri_complete, expires_at, error } = s;
  const data = { task, user_code, verification_uri, verification_uri_complete, expires_at, error };
  return { id, account, flow, status, created_at, updated_at, data };
}

/** A stored login, validated on the way out; a pending one's authorization URL is among its sealed secrets. */
function fromRecord(rec: LoginRecord): LoginView {
  const d = rec.data;
  const authorizationUrl = rec.status === 'pending' ? rec.secrets?.authorization_url : undefined;
  const parsed = LoginView.safeParse({
    id: rec.id,
    account: rec.account,
    flow: rec.flow,
    task: d.task ?? null,
    status: rec.status,
    user_code: d.user_code ?? null,
    verification_uri: d.verification_uri ?? null,
    verification_uri_complete: d.verification_uri_complete ?? null,
    authorization_url: authorizationUrl ?? null,
    created_at: iso(rec.created_at),
    updated_at: iso(rec.updated_at),
    expires_at: typeof d.expires_at === 'number' ? iso(d.expires_at) : undefined,
    error: d.error ?? null,
  });
  if (!parsed.success) throw E.internal(`the stored login "${rec.id}" is unreadable`);
  return parsed.data;
}

/** The loopback listener's page for a callback outcome. */
function pageFor(account: string, o: CallbackOutcome): CallbackAnswer {
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

/** RFC 6749 §3.1.2: the callback must be our redirect URI: same scheme, authority and path (the query is the answer). */
function sameRedirect(got: URL, expected: URL): boolean {
  return got.protocol === expected.protocol && got.host === expected.host && got.pathname === expected.pathname;
}
