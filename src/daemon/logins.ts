/**
 * Interactive logins: device flow (RFC 8628) and browser flow (RFC 6749 §4.1 + RFC 7636
 * PKCE on an RFC 8252 loopback redirect), their lifecycle (pending → active | failed |
 * expired), persistence, joining, and events.
 *
 * The store holds what the API shows, so a status survives a restart, and a login that was
 * pending when the daemon stopped is taken up by the next start (login-resume.ts). In a
 * fleet the stored logins are every daemon's (login-fleet.ts): a callback completes a login
 * another daemon started, a device login whose daemon died is polled by another, and one
 * lease per login (Store.holdLogin) keeps it to one poller or one code exchange at a time. A pending
 * login's secrets (device code; state, PKCE verifier and the authorization URL that carries
 * the state) are stored sealed only, and removed when it ends; authorization codes and
 * tokens never are.
 */
import { randomUUID } from 'node:crypto';
import type { AccountConfig, LoginFlow, LoginStatus, LoginView } from '../protocol/api.js';
import { recordedCaller } from '../protocol/caller.js';
import { loginEnded, loginStarted, type AuditSink } from './audit.js';
import type { Broker } from './broker.js';
import type { ConfigStore } from './config.js';
import { driverContext, grantBinding, withDpopKey } from './driver-context.js';
import type { DeviceAuthorization, Driver, DriverContext, TokenSet } from './drivers/driver.js';
import { E, ApiError, unknownAccount } from './errors.js';
import { identityKey } from './grant-identity.js';
import type { EventBus } from './events.js';
import { browserSecrets, openLoopback, stateMatches, type Loopback } from './login-browser.js';
import { answerOf, checkRedirect, notWaiting, pageFor, parseCallbackUrl, stateOfCallback, type CallbackOutcome } from './login-callback.js';
import { loginErrorOf, pollDeviceCode, type LoginError } from './login-device.js';
import { chooseFlow, loginTtlMs, noSuchLogin } from './login-choice.js';
import { Announced, announceLogin, watchFleetLogins } from './login-fleet.js';
import { planResume, type Resumption } from './login-resume.js';
import { startErrorOf, type BrowserWait, type LoginStartOptions, type LoginTarget, type Session } from './login-session.js';
import { fromRecord, qrOf, toRecord, view, type LoginState } from './login-view.js';
import type { Logger } from './log.js';
import type { LoginLease, LoginRecord, LoginSecrets, LoginStatusValue, Store } from './store/types.js';

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
/** The longest delay setTimeout keeps (2^31 - 1 ms); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Owns every interactive login of the daemon; at most one pending login per account. */
export class LoginManager {
  /** account → its pending login (or the start of one): a second request joins it. */
  private readonly byAccount = new Map<string, Promise<Session>>();
  private readonly live = new Map<string, Session>();
  /** Aborted on shutdown: stops starts in progress. */
  private readonly shutdown = new AbortController();
  private readonly now: () => number;
  private pruneTimer?: NodeJS.Timeout;
  private takeoverTimer?: NodeJS.Timeout;
  /** In a fleet: the login statuses subscribers heard of already (each once). */
  private readonly announced = new Announced();

  constructor(private readonly deps: LoginManagerDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * At start-up: take up the logins a previous daemon left pending (login-resume.ts); those
   * whose time passed, or that cannot go on, end here. Old finished ones are pruned.
   * Returns how many were taken up.
   */
  async resumeStored(): Promise<number> {
    let resumed = 0;
    for (const rec of await this.deps.store.listLogins({ status: 'pending', own: true })) {
      let plan = this.byAccount.has(rec.account)
        ? ({
            kind: 'end',
            status: 'expired',
            error: { code: 'daemon_stopped', message: 'a newer login of the account was taken up' },
          } as const)
        : this.planOf(rec);
      if (plan.kind !== 'end') {
        try {
          // A device login another daemon of the fleet polls now (it took it up) stays its.
          if (await this.takeUp(plan)) resumed++;
          continue;
        } catch (err) {
          // One login that cannot go on never stops the daemon from starting.
          this.deps.log.error('could not take up a pending login', { account: rec.account, login_id: rec.id, error: err as Error });
          this.live.delete(rec.account);
          this.byAccount.delete(rec.account);
          plan = {
            kind: 'end',
            status: 'failed',
            error: { code: 'internal', message: 'tokend could not take this login up after a restart (see the daemon log)' },
          };
        }
      }
      await this.endStored(rec, plan, 'a login left pending by the previous daemon ended');
    }
    await this.prune();
    this.pruneTimer = setInterval(() => {
      this.prune().catch((err) => this.deps.log.warn('could not prune finished logins', { error: (err as Error).message }));
    }, 3_600_000);
    this.pruneTimer.unref();
    this.takeoverTimer = watchFleetLogins({
      store: this.deps.store,
      log: this.deps.log,
      now: this.now,
      stopped: () => this.shutdown.signal.aborted,
      runs: (rec) => Boolean(this.liveById(rec.id)) || this.byAccount.has(rec.account),
      plan: (rec) => this.planOf(rec),
      takeUp: (plan, lease) => this.takeUp(plan, lease),
      end: (rec, plan) => this.endStored(rec, plan, 'a pending login of the fleet ended'),
      heard: (id, status) => this.heard(id, status),
    });
    return resumed;
  }

  /** End a stored pending login no daemon can go on with; the store removes its secrets in the same commit. */
  private async endStored(rec: LoginRecord, plan: Extract<Resumption, { kind: 'end' }>, why: string): Promise<void> {
    const { secrets: _gone, ...ended } = rec;
    await this.deps.store.putLogin({ ...ended, status: plan.status, data: { ...rec.data, error: plan.error }, updated_at: this.now() });
    const task = typeof rec.data.task === 'string' ? rec.data.task : null;
    this.deps.audit?.record(loginEnded({ id: rec.id, account: rec.account, flow: rec.flow, status: plan.status, task }, plan.error));
    this.announced.first(rec.id, plan.status);
    announceLogin(this.deps.events, fromRecord({ ...ended, status: plan.status, data: { ...rec.data, error: plan.error } }));
    this.deps.log.info(why, { account: rec.account, login_id: rec.id, status: plan.status, error: plan.error.code });
  }

  /** Another daemon of the fleet wrote a login: announce its status once; a login this daemon holds open that ended there ends here. */
  private async heard(id: string, status: LoginStatusValue): Promise<void> {
    if (!this.announced.first(id, status)) return;
    const rec = await this.deps.store.getLogin(id);
    if (!rec) return;
    const s = this.liveById(id);
    if (s && rec.status !== 'pending') this.finish(s, rec.status, (rec.data.error as LoginError | undefined) ?? null, { remote: true });
    announceLogin(this.deps.events, { ...fromRecord(rec), status });
  }

  private planOf(rec: LoginRecord): Resumption {
    return planResume(rec, { getAccount: (a) => this.deps.config.getAccount(a), getDriver: this.deps.getDriver, now: this.now() });
  }

  private liveById(id: string): Session | undefined {
    for (const s of this.live.values()) if (s.state.id === id) return s;
    return undefined;
  }

  /**
   * Go on with a stored pending login in this daemon: poll (holding its lease: `lease`, or
   * taken here), or wait for its callback. False when another daemon of the fleet polls it.
   */
  private async takeUp(plan: Exclude<Resumption, { kind: 'end' }>, lease?: LoginLease): Promise<boolean> {
    const { state, cfg } = plan;
    if (plan.kind === 'device') {
      lease ??= await this.deps.store.holdLogin(state.id);
      if (!lease) return false;
      state.qr = await qrOf(state.verification_uri_complete ?? state.verification_uri);
    }
    const s: Session = { state, target: await this.targetOf(state, cfg), stop: new AbortController(), busy: false };
    this.live.set(state.account, s);
    this.byAccount.set(state.account, Promise.resolve(s));
    this.deps.log.info('login taken up', { account: state.account, login_id: state.id, flow: state.flow });
    if (plan.kind === 'device') {
      this.hold(s, lease!);
      void this.runDevice(s, plan.driver, plan.deviceCode, state.interval ?? undefined);
      return true;
    }
    await this.listen(s, { driver: plan.driver, redirectUri: plan.redirectUri, secrets: plan.secrets }, plan.loopbackPort);
    return true;
  }

  /** What a stored login talks to, read again: the account's config here and its secrets. */
  private async targetOf(state: LoginState, cfg: AccountConfig): Promise<LoginTarget> {
    return {
      account: state.account,
      cfg,
      secrets: await this.deps.store.getSecrets(state.account),
      identity: state.identity,
      ...(state.task ? { task: state.task } : {}),
    };
  }

  /**
   * Poll under the login's lease. A lease lost (the database ended its connection) stops
   * polling here without ending the login: another daemon, or this one, takes it up again.
   */
  private hold(s: Session, lease: LoginLease): void {
    s.lease = lease;
    lease.lost.addEventListener(
      'abort',
      () => {
        if (s.state.status !== 'pending' || s.busy) return;
        this.deps.log.warn('lost the lease of a device login; polling stops here until a daemon takes it up', {
          account: s.state.account,
          login_id: s.state.id,
        });
        if (this.live.get(s.state.account) === s) {
          this.live.delete(s.state.account);
          this.byAccount.delete(s.state.account);
        }
        s.stop.abort();
      },
      { once: true },
    );
  }

  /** The account's pending login, if any (the broker's 409 `login_pending`). */
  pendingFor(account: string): LoginView | undefined {
    const s = this.live.get(account);
    return s && s.state.status === 'pending' ? view(s.state) : undefined;
  }

  /** One login by id: live, or as stored. */
  async get(id: string): Promise<LoginView> {
    const s = this.liveById(id);
    if (s) return view(s.state);
    const rec = await this.deps.store.getLogin(id);
    if (!rec) throw E.notFound(`no login with id "${id.slice(0, 80)}"`);
    return fromRecord(rec);
  }

  /**
   * Start a login for `account`, or join the pending one (same object, no second code or
   * browser tab). `flow`: the request's; else the account's; else the daemon's guess. A
   * request for another flow than the pending login's is a 409 `login_pending`.
   * `ttlS`: how long the login waits (else the account's `login_ttl_s`, else the default).
   */
  async start(account: string, flow?: LoginFlow, opts: LoginStartOptions = {}): Promise<LoginView> {
    if (this.shutdown.signal.aborted) throw E.upstreamUnavailable('tokend is shutting down');
    const cfg = this.deps.config.getAccount(account);
    if (!cfg) throw unknownAccount(account);
    const ttlMs = loginTtlMs(account, cfg, opts.ttlS, this.deps.config.settings.login_ttl_max_s);
    const running = this.byAccount.get(account);
    if (running) {
      // A start that fails rejects every request that joined it: one provider call, one error.
      const s = await running;
      if (s.state.status === 'pending') return this.join(s, flow);
      return this.start(account, flow, opts);
    }
    const chosen = chooseFlow(account, cfg, flow, this.deps.env ?? process.env, this.deps.platform ?? process.platform);
    const driver = this.deps.getDriver(cfg.driver);
    if (!driver) throw E.internal(`account "${account}" uses an unknown driver "${cfg.driver}"`);
    const opening = (async () => {
      // Rule 8 in a fleet: no login (and no stored secret) for an identity the fleet's grant does not belong to.
      await this.deps.broker.checkLoginTarget?.(account, identityKey(cfg));
      const secrets = await withDpopKey(this.deps.store, account, cfg, await this.deps.store.getSecrets(account));
      const target: LoginTarget = {
        account,
        cfg,
        secrets,
        identity: grantBinding(cfg, secrets),
        ...(opts.task ? { task: opts.task } : {}),
        caller: opts.caller,
        by: opts.by,
      };
      return chosen === 'device' ? this.openDevice(target, driver, ttlMs) : this.openBrowser(target, driver, ttlMs);
    })();
    this.byAccount.set(account, opening);
    opening.catch(() => {
      if (this.byAccount.get(account) === opening) this.byAccount.delete(account);
    });
    return view((await opening).state);
  }

  /** A second request for the account's pending login: the same flow (or none named) joins it; another is a 409. */
  private join(s: Session, flow: LoginFlow | undefined): LoginView {
    const login = view(s.state);
    if (!flow || flow === s.state.flow) return login;
    throw E.loginPending(
      `account "${login.account}" already has a ${login.flow} login pending (${login.id}); finish it, or cancel it (\`tokend login ${login.account} --cancel\`) before starting a ${flow} login`,
      { account: login.account, login },
    );
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

  /**
   * Shutdown: stop every poller and listener. Pending logins stay pending in the store, their
   * secrets sealed: the next start takes them up (resumeStored).
   */
  close(): void {
    this.shutdown.abort();
    clearInterval(this.pruneTimer);
    clearInterval(this.takeoverTimer);
    for (const s of this.live.values()) s.stop.abort();
  }

  // ---- flows ----

  /**
   * RFC 8628 §3.1–3.2: ask for codes, record the login, poll in the background. It waits
   * until the device code expires (`expires_in`), or `ttlMs` when that is sooner.
   */
  private async openDevice(target: LoginTarget, driver: Driver, ttlMs: number | undefined): Promise<Session> {
    const { account } = target;
    if (!driver.startDeviceLogin || !driver.pollDeviceLogin) throw noSuchLogin(driver, account, 'device');
    let auth: DeviceAuthorization;
    try {
      auth = await this.step((signal) => driver.startDeviceLogin!(this.context(target, signal)), this.shutdown.signal);
    } catch (err) {
      throw startErrorOf(this.deps.log, account, 'device', err);
    }
    const id = randomUUID();
    let lease: LoginLease | undefined;
    try {
      // One poller in the fleet: this daemon, while it holds the lease.
      lease = await this.deps.store.holdLogin(id);
    } catch (err) {
      throw startErrorOf(this.deps.log, account, 'device', err);
    }
    if (!lease) throw E.internal('a new login was leased by another daemon');
    const now = this.now();
    const qr = await qrOf(auth.verification_uri_complete ?? auth.verification_uri);
    const s = await this.begin(
      target,
      {
        qr,
        id,
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
        expires_at: now + Math.min(auth.expires_in * 1000, ttlMs ?? Number.POSITIVE_INFINITY),
        error: null,
        identity: target.identity,
        redirect_uri: null,
        interval: auth.interval ?? null,
      },
      { device_code: auth.device_code },
    );
    this.hold(s, lease);
    void this.runDevice(s, driver, auth.device_code, auth.interval);
    return s;
  }

  private async runDevice(s: Session, driver: Driver, deviceCode: string, interval: number | undefined): Promise<void> {
    const { account } = s.state;
    try {
      const outcome = await pollDeviceCode({
        poll: () => this.step((signal) => driver.pollDeviceLogin!(this.context(s.target, signal), deviceCode), s.stop.signal),
        interval,
        unitMs: this.deps.config.settings.device_poll_unit_ms,
        expiresAt: s.state.expires_at,
        signal: s.stop.signal,
        now: this.now,
        onInterval: (seconds, why) => {
          this.deps.log.info('device login: polling more slowly', { account, login_id: s.state.id, interval_s: seconds, why });
          // RFC 8628 §3.5: slower "for this and all subsequent requests", after a restart too.
          s.state.interval = seconds;
          this.persist(s.state);
        },
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
  private async openBrowser(target: LoginTarget, driver: Driver, ttlMs: number | undefined): Promise<Session> {
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
      throw startErrorOf(this.deps.log, account, 'browser', err);
    }
    const now = this.now();
    const ttl = ttlMs ?? this.deps.browserTtlMs ?? BROWSER_LOGIN_TTL_MS;
    const s = await this.begin(
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
        identity: target.identity,
        redirect_uri: redirectUri,
        interval: null,
      },
      { state: secrets.state, code_verifier: secrets.code_verifier, authorization_url: authorizationUrl },
    );
    session = s;
    await this.listen(s, { driver, redirectUri, secrets }, loopback);
    return s;
  }

  /**
   * Wait for a browser login's callback until it expires: on the loopback listener
   * (`loopback`: open already, or the port of its redirect URI to listen on again after a
   * restart), or handed over through the API. A port another program took since ends the
   * login: the provider's answer could not reach tokend.
   */
  private async listen(s: Session, wait: BrowserWait, loopback: Loopback | number | undefined): Promise<void> {
    const { account, id } = s.state;
    s.browser = wait;
    let listener = typeof loopback === 'number' ? undefined : loopback;
    if (typeof loopback === 'number') {
      try {
        listener = await openLoopback(async (url) => pageFor(account, await this.receive(s, url)), loopback);
      } catch (err) {
        const why =
          (err as NodeJS.ErrnoException).code === 'EADDRINUSE'
            ? 'is taken by another program'
            : `cannot be listened on (${(err as Error).message})`;
        this.finish(s, 'failed', {
          code: 'redirect_port_taken',
          message: `port ${loopback} of this login's redirect (${wait.redirectUri}) ${why}, so the provider's answer cannot reach tokend; start a new login`,
        });
        return;
      }
    }
    this.armExpiry(s);
    s.stop.signal.addEventListener('abort', () => listener?.close(), { once: true });
    this.deps.log.debug('browser login listening', { account, login_id: id, redirect_uri: wait.redirectUri });
  }

  /** End a browser login at its `expires_at`; a timer can wait ~24.8 days at most, so a longer wait re-arms. */
  private armExpiry(s: Session): void {
    const left = Math.max(s.state.expires_at - this.now(), 0);
    const delay = Math.min(left, MAX_TIMER_MS);
    const timer = setTimeout(() => (delay < left ? this.armExpiry(s) : this.expireBrowser(s)), delay);
    timer.unref();
    s.stop.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
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
      const claimed = await this.claim(s);
      if (claimed !== 'ok') {
        s.busy = false;
        return { kind: claimed };
      }
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
      // Stopped mid-exchange: the login stays pending for the next start to take up.
      if (this.shutdown.signal.aborted) {
        await s.lease?.release();
        return { kind: 'over' };
      }
      this.finish(s, 'failed', loginErrorOf(err));
    }
    return { kind: 'done', login: view(s.state) };
  }

  /**
   * In a fleet, the code exchange of a browser login happens under its lease, once: a daemon
   * that cannot take it (another is exchanging) answers `busy`; one that finds the login ended
   * meanwhile (another daemon completed it) ends it here too and answers `over`.
   */
  private async claim(s: Session): Promise<'ok' | 'busy' | 'over'> {
    if (!this.deps.store.fleet || s.lease) return 'ok';
    const lease = await this.deps.store.holdLogin(s.state.id);
    if (!lease) return 'busy';
    const rec = await this.deps.store.getLogin(s.state.id).catch(async (err) => {
      await lease.release();
      throw err;
    });
    if (rec && rec.status !== 'pending') {
      await lease.release();
      this.finish(s, rec.status, (rec.data.error as LoginError | undefined) ?? null, { remote: true });
      return 'over';
    }
    s.lease = lease;
    return 'ok';
  }

  /**
   * `POST /v1/logins/:id/callback`: the callback URL an app's OS-level handler received for
   * a login whose account names its own `redirect_uri` (a deep link). It must be that
   * redirect (scheme, host and path), with our `state`.
   */
  async completeCallback(id: string, callbackUrl: string): Promise<LoginView> {
    const s = this.liveById(id) ?? (await this.startedElsewhere(await this.deps.store.getLogin(id)));
    if (!s) throw notWaiting(await this.get(id)); // 404 when there is no such login
    if (!s.browser || !s.target.cfg.redirect_uri) {
      throw E.invalidRequest(`login "${id}" receives its callback on tokend's own loopback listener, not through the API`, {
        account: s.state.account,
      });
    }
    return this.deliver(s, parseCallbackUrl(callbackUrl));
  }

  /**
   * `POST /v1/logins/callback`: a browser login's callback URL, whichever login it is for,
   * found by its `state` (the store keeps only a keyed hash of it). Any pending browser
   * login takes it, a loopback one too: an app that caught the redirect itself hands it over.
   */
  async completeByState(callbackUrl: string): Promise<LoginView> {
    const url = parseCallbackUrl(callbackUrl);
    const rec = await this.deps.store.findLoginByState(stateOfCallback(url));
    if (!rec) {
      throw new ApiError(
        'login_not_found',
        'url: no login of this tokend (or of its fleet) has the state in this URL (a stale or foreign callback?)',
      );
    }
    const s = this.liveById(rec.id) ?? (await this.startedElsewhere(rec));
    if (!s?.browser) throw notWaiting(fromRecord(rec));
    return this.deliver(s, url, { pendingWhileBusy: true });
  }

  /**
   * In a fleet, a pending browser login another daemon started (or one that died): this
   * daemon completes its callback with the stored, sealed PKCE verifier, under the login's
   * lease (claim). Not one of this daemon's live logins: it only lasts the exchange.
   */
  private async startedElsewhere(rec: LoginRecord | undefined): Promise<Session | undefined> {
    if (!this.deps.store.fleet || rec?.status !== 'pending' || rec.flow !== 'browser') return undefined;
    const plan = this.planOf(rec);
    if (plan.kind === 'end') {
      throw E.conflict(`login "${rec.id}" cannot be completed on this daemon: ${plan.error.message}`, { account: rec.account });
    }
    if (plan.kind !== 'browser') return undefined;
    const { state, cfg, driver, redirectUri, secrets } = plan;
    return {
      state,
      target: await this.targetOf(state, cfg),
      stop: new AbortController(),
      busy: false,
      browser: { driver, redirectUri, secrets },
    };
  }

  /**
   * A callback handed over through the API: the login's redirect URI, then its state
   * (receive). `pendingWhileBusy`: a callback that arrives while another one's code is being
   * exchanged gets the login as it is (`pending`), not a 409.
   */
  private async deliver(s: Session, url: URL, opts: { pendingWhileBusy?: boolean } = {}): Promise<LoginView> {
    checkRedirect(url, s.browser!.redirectUri, s.state.account);
    const outcome = await this.receive(s, url);
    if (outcome.kind === 'busy' && opts.pendingWhileBusy) return view(s.state);
    return answerOf(outcome, s.state.account) ?? (await this.get(s.state.id));
  }

  // ---- lifecycle ----

  /** Record a new pending login, its secrets sealed, and announce it. */
  private async begin(target: LoginTarget, state: LoginState, secrets: LoginSecrets): Promise<Session> {
    const s: Session = { state, target, stop: new AbortController(), busy: false };
    const written = this.persist(state, secrets);
    this.live.set(state.account, s);
    this.deps.audit?.record({ ...loginStarted(state, target.caller), by: target.by });
    this.announced.first(state.id, 'pending');
    announceLogin(this.deps.events, view(state), recordedCaller(target.caller, target.by));
    this.deps.log.info('login started', {
      account: state.account,
      login_id: state.id,
      flow: state.flow,
      expires_at: new Date(state.expires_at).toISOString(),
    });
    // Stored before it is answered: a daemon killed right after still leaves it for another to take up.
    await written;
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
      if (err instanceof ApiError && err.code === 'conflict') {
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

  /**
   * End a pending login once: persist, forget, stop its work, announce. `remote`: another
   * daemon of the fleet ended it (and stored and announced that): only forget and stop here.
   */
  private finish(
    s: Session,
    status: Exclude<LoginStatus, 'pending'>,
    error: LoginError | null,
    opts: { quiet?: boolean; remote?: boolean } = {},
  ): void {
    if (s.state.status !== 'pending') return;
    s.state = { ...s.state, status, error, updated_at: this.now() };
    const { account, id, flow } = s.state;
    const { lease } = s;
    // The lease goes once the end is stored: no other daemon takes up a login that just ended.
    if (!opts.remote) void this.persist(s.state).then(() => lease?.release());
    else void lease?.release();
    if (this.live.get(account) === s) {
      this.live.delete(account);
      this.byAccount.delete(account);
    }
    s.stop.abort();
    if (opts.quiet || opts.remote) return;
    this.deps.audit?.record(loginEnded(s.state, error));
    if (status === 'active') this.deps.log.info('login succeeded', { account, login_id: id, flow });
    else this.deps.log.warn('login did not succeed', { account, login_id: id, flow, status, error: error?.code, message: error?.message });
    this.announced.first(id, status);
    announceLogin(this.deps.events, view(s.state));
  }

  /**
   * Record the login as it is now (the store keeps the order of writes to one login; a
   * finished login's secrets go with that write); a failure never stops the login.
   */
  private persist(state: LoginState, secrets?: LoginSecrets): Promise<void> {
    return this.deps.store.putLogin({ ...toRecord(state), ...(secrets ? { secrets } : {}) }).catch((err) => {
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
}
