/**
 * The SDK under a busy app while the real daemon restarts (SIGTERM, as a service manager
 * does, and SIGKILL): whatever breaks reaches the app as a TokendError with a stable code,
 * never as the socket's own ECONNRESET or EPIPE; idempotent calls reconnect once, starting
 * the daemon where autostart applies; waitForLogin waits the restart out.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokend, TokendError } from '../src/sdk/index.js';
import { putConfAccount, postConfGrant, processAlive } from './support/daemon.js';
import { sleep, waitFor } from './support/fake-as.js';
import { useStack } from './support/stack.js';

interface Busy {
  /** Calls answered so far. */
  ok(): number;
  /** Everything a call rejected with. */
  readonly failures: unknown[];
  /** Stop the loops and wait for the calls under way. */
  stop(): Promise<void>;
}

/** `loops` callers, each sending the calls one after the other, as fast as they are answered, until stopped. */
function busyApp(calls: Array<() => Promise<unknown>>, loops = 4): Busy {
  let answered = 0;
  let stopped = false;
  const failures: unknown[] = [];
  const running = Array.from({ length: loops }, async (_, i) => {
    for (let n = i; !stopped; n++) {
      try {
        await calls[n % calls.length]!();
        answered++;
      } catch (err) {
        failures.push(err);
        await sleep(5); // a daemon that is down answers at once: do not spin
      }
    }
  });
  return {
    ok: () => answered,
    failures,
    stop: async () => {
      stopped = true;
      await Promise.all(running);
    },
  };
}

/** What each failure is: its class, code and retryable flag (a raw socket error shows as its own name and code). */
const kinds = (failures: unknown[]) => [
  ...new Set(
    failures.map((e) =>
      e instanceof TokendError
        ? `TokendError ${e.code} retryable=${e.retryable}`
        : `${(e as Error)?.name} ${(e as NodeJS.ErrnoException)?.code}`,
    ),
  ),
];

describe('the SDK across daemon restarts', () => {
  const stack = useStack();

  it('rejects only with TokendError daemon_unreachable (retryable) while a busy app lives through SIGTERM and SIGKILL restarts', async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    await postConfGrant(stack.t.d, stack.idp);
    const tokend = new Tokend({ env: stack.t.env, userAgent: 'sdk-restart' }); // no autostart (the test env)
    const busy = busyApp([
      () => tokend.token('work'),
      () => tokend.info('work'),
      () => tokend.accounts(),
      () => tokend.logins({ account: 'work' }),
      // A write is never sent twice: it may fail with the restart, as a TokendError too.
      () =>
        tokend.cancelLogin('no-such-login').catch((err) => {
          if (!(err instanceof TokendError && err.code === 'not_found')) throw err;
        }),
    ]);
    try {
      for (const signal of ['SIGTERM', 'SIGKILL', 'SIGTERM', 'SIGKILL'] as const) {
        const before = busy.ok();
        await waitFor(() => busy.ok() > before + 20, 'answers before the restart');
        await stack.t.d.stop(signal);
        await sleep(100);
        await stack.t.d.start();
      }
      const after = busy.ok();
      await waitFor(() => busy.ok() > after + 20, 'answers after the last restart');
    } finally {
      await busy.stop();
    }
    // Nothing listened for a while each time: those calls failed, and said so in one way.
    expect(busy.failures.length).toBeGreaterThan(0);
    expect(kinds(busy.failures)).toEqual(['TokendError daemon_unreachable retryable=true']);
    for (const err of busy.failures) expect((err as TokendError).status).toBe(0);
  });

  it('keeps serving idempotent calls in flight when the daemon is killed: they reconnect once and autostart it', async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    await postConfGrant(stack.t.d, stack.idp);
    const env = { ...stack.t.env };
    delete env.TOKEND_NO_AUTOSTART;
    const tokend = new Tokend({ env, userAgent: 'sdk-restart' });
    const killed = stack.t.d.pid!;
    const busy = busyApp([() => tokend.token('work'), () => tokend.info('work'), () => tokend.accounts(), () => tokend.logins()]);
    let autostarted: number | undefined;
    try {
      const before = busy.ok();
      await waitFor(() => busy.ok() > before + 20, 'answers before the kill');
      await stack.t.d.stop('SIGKILL');
      const after = busy.ok();
      await waitFor(() => busy.ok() > after + 20, 'answers after the kill');
    } finally {
      await busy.stop();
      // The daemon the SDK started is no child of this test: stop it before its home goes.
      const pid = (await tokend.health().catch(() => undefined))?.pid;
      autostarted = pid !== killed ? pid : undefined;
      if (autostarted) process.kill(autostarted, 'SIGTERM');
      await waitFor(() => !autostarted || !processAlive(autostarted), 'the autostarted daemon to stop');
    }
    expect(autostarted).toEqual(expect.any(Number));
    expect(busy.failures.map((e) => String((e as Error).message))).toEqual([]);
  });

  it('waitForLogin waits a restart out (SIGTERM or SIGKILL, polling fast): the login goes on in the new daemon and the wait reports it active, never a socket error', async () => {
    await putConfAccount(stack.t.d, stack.idp.issuer);
    const tokend = new Tokend({ env: stack.t.env });
    // How many answers the wait has had: it waits a restart out once it knows the login's expiry.
    let shown = 0;
    const getLogin = tokend.getLogin.bind(tokend);
    tokend.getLogin = async (id) => {
      const login = await getLogin(id);
      shown++;
      return login;
    };
    const withStream = tokend.events.bind(tokend);
    // An event stream that cannot be opened (nothing listens there): the wait polls from the start.
    const noStream = new Tokend({ env: { TOKEND_HOME: path.join(stack.t.home, 'nowhere') }, autostart: false });
    const cases = [
      ['SIGTERM', withStream],
      ['SIGKILL', withStream],
      ['SIGTERM', noStream.events.bind(noStream)],
      ['SIGKILL', noStream.events.bind(noStream)],
    ] as const;
    for (const [signal, events] of cases) {
      tokend.events = events;
      const login = await tokend.login('work', { flow: 'device' });
      // Without the event stream (it ends with the daemon, or never was), the wait polls
      // every 2 ms: polls are under way while the daemon goes.
      const before = shown;
      const waiting = tokend.waitForLogin(login.id, { pollMs: 2 }).then(
        (done) => done,
        (err: unknown) => err,
      );
      await waitFor(() => shown > before, 'the wait to see the login');
      await stack.t.d.stop(signal);
      await sleep(100);
      await stack.t.d.start();
      // The login outlives its daemon: the new one takes it up, and the approval ends it.
      const how = `${signal}, ${events === withStream ? 'with' : 'without'} the event stream`;
      await stack.idp.approveDevice(login.user_code!);
      const done = await waiting;
      expect(done, how).not.toBeInstanceOf(TokendError);
      expect(done, how).toMatchObject({ id: login.id, status: 'active' });
    }
  });
});
