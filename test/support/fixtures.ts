/**
 * The vitest fixtures of the integration tests: a call at the top of a file or a `describe`
 * registers the hooks that start what the tests need and stop it after them, and returns a
 * stand-in the tests use as the thing itself.
 *
 * ```ts
 * const idp = useIdp({ accessTokenTtl: 8 });                       // one IdP for the describe
 * const { d } = useDaemon({ lifetime: 'test', settings: { max_refreshes_per_minute: 1000 },
 *   account: { idp, grant: true } });                              // a daemon per test, account `work` with a grant
 * it('…', async () => { await d.cli(['token', 'work']); … });
 * ```
 */
import { spawn } from 'node:child_process';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { addConfAccount, postConfGrant, putConfAccount, startTestDaemon, type DaemonProcess, type TestDaemon } from './daemon.js';
import { startIdp, type IdpOptions, type TestIdp } from './idp.js';

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** It ran past `timeoutMs` and was killed. */
  killed: boolean;
  ms: number;
}

/**
 * Run a program with `stdin`. Past `timeoutMs` it is killed together with its children
 * (it runs in its own process group: a shim's tokend-fast too), so a stall fails the test
 * instead of hanging it.
 */
export function runProcess(
  cmd: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; stdin?: string | Buffer; timeoutMs?: number },
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(cmd, args, { env: opts.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      process.kill(-child.pid!, 'SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, killed, ms: Date.now() - started });
    });
    child.stdin.on('error', () => undefined); // a program that exits before reading all of stdin
    child.stdin.end(opts.stdin ?? '');
  });
}

/**
 * A stand-in for what a hook makes later. vitest runs beforeAll and beforeEach after a
 * describe's body has defined its tests, so a fixture cannot hand them the IdP or the daemon
 * itself: it hands this, which reads and writes through to the current one (`idp.issuer`,
 * `d.request(…)`, `amp.tokenTtl = 3`), and says so when a test uses it before the hook ran.
 */
function standIn<T extends object>(what: string, current: () => T | undefined): T {
  const target = (): T => {
    const t = current();
    if (t === undefined) throw new Error(`${what} is not started here: use it in a test or in a hook registered after the fixture`);
    return t;
  };
  return new Proxy({} as T, {
    get(_, key) {
      const t = target();
      const v = Reflect.get(t, key, t);
      return typeof v === 'function' ? v.bind(t) : v;
    },
    set: (_, key, value) => Reflect.set(target(), key, value),
    has: (_, key) => Reflect.has(target(), key),
  });
}

export interface FixtureTiming {
  /** A fresh one for each test (beforeEach / afterEach) instead of one for the describe. */
  each?: boolean;
}

/** A server (anything with `close()`) started before the tests of the enclosing describe and closed after them. */
export function useServer<T extends { close(): Promise<unknown> }>(
  start: () => Promise<T>,
  opts: FixtureTiming & { what?: string } = {},
): T {
  let current: T | undefined;
  const [before, after] = opts.each ? [beforeEach, afterEach] : [beforeAll, afterAll];
  before(async () => {
    current = await start();
  });
  after(async () => {
    await current?.close();
    current = undefined;
  });
  return standIn(opts.what ?? 'the server', () => current);
}

/** The real test IdP (test/support/idp.ts) for the enclosing describe. */
export function useIdp(opts: IdpOptions = {}): TestIdp {
  return useServer(() => startIdp(opts), { what: 'the IdP' });
}

/** An account for the test IdP's confidential client `conf` (addConfAccount), added once the daemon runs. */
export interface AccountSetup {
  idp: TestIdp;
  /** Default `work`. */
  name?: string;
  /** More `tokend add` options; a function when they name what a hook makes (a server's port). */
  args?: string[] | (() => string[]);
  /** Also import a grant the IdP issued (importConfGrant). */
  grant?: boolean;
}

export interface DaemonFixtureOptions {
  /** config.json's settings, written before it starts; none: no config.json until the daemon writes one. */
  settings?: Record<string, unknown>;
  /** Over the temporary home's environment. */
  env?: NodeJS.ProcessEnv;
  /**
   * 'describe' (the default): one daemon for the describe's tests. 'test': a fresh one before
   * each test. 'manual': each test starts its own with `start()` (its settings differ from
   * test to test). A daemon is stopped and its home removed after the describe or the test.
   */
  lifetime?: 'describe' | 'test' | 'manual';
  /** How one is started; default startTestDaemon. The login tests use fake-as.ts's startDaemon (fast device polling, no display). */
  launch?: (settings: Record<string, unknown> | undefined, env: NodeJS.ProcessEnv) => Promise<TestDaemon>;
  account?: AccountSetup;
}

export interface DaemonFixture {
  /** The current daemon. */
  readonly d: DaemonProcess;
  /** The current daemon with its home and environment (`t.home`, `t.env`, `t.d`). */
  readonly t: TestDaemon;
  /** Start a daemon now (the 'manual' lifetime): `settings` over the fixture's, `env` over its. */
  start(more?: { settings?: Record<string, unknown>; env?: NodeJS.ProcessEnv }): Promise<TestDaemon>;
}

/** Real `tokend daemon` processes for the tests of the enclosing describe, each under a temporary TOKEND_HOME. */
export function useDaemon(opts: DaemonFixtureOptions = {}): DaemonFixture {
  const launch = opts.launch ?? startTestDaemon;
  const lifetime = opts.lifetime ?? 'describe';
  const started: TestDaemon[] = [];
  const current = () => started.at(-1);

  async function start(more: { settings?: Record<string, unknown>; env?: NodeJS.ProcessEnv } = {}): Promise<TestDaemon> {
    const settings = opts.settings || more.settings ? { ...opts.settings, ...more.settings } : undefined;
    const t = await launch(settings, { ...opts.env, ...more.env });
    started.push(t);
    const account = opts.account;
    if (account) {
      const name = account.name ?? 'work';
      // Through the socket API: a test's setup, not a test of `tokend add`/`import` (two CLI
      // processes less per daemon; tests that pass `args` keep the CLI's option parsing).
      if (account.args === undefined) await putConfAccount(t.d, account.idp.issuer, name);
      else await addConfAccount(t.d, account.idp.issuer, name, typeof account.args === 'function' ? account.args() : account.args);
      if (account.grant) await postConfGrant(t.d, account.idp, name);
    }
    return t;
  }
  async function stopAll(): Promise<void> {
    for (let t = started.pop(); t; t = started.pop()) await t.cleanup();
  }

  if (lifetime === 'describe') {
    beforeAll(async () => {
      await start();
    });
    afterAll(stopAll);
  } else {
    if (lifetime === 'test') {
      beforeEach(async () => {
        await start();
      });
    }
    afterEach(stopAll);
  }
  return { d: standIn('the daemon', () => current()?.d), t: standIn('the daemon', current), start };
}

/** One daemon under a fresh TOKEND_HOME for the enclosing `describe`, as `suite.daemon` and `suite.env`. */
export function daemonForSuite(): { readonly daemon: DaemonProcess; readonly env: NodeJS.ProcessEnv } {
  const { d, t } = useDaemon();
  return {
    daemon: d,
    get env() {
      return t.env;
    },
  };
}
