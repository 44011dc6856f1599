/**
 * `tokend login NAME`: asks the daemon to start (or join) an interactive login, tells the
 * person what to do, opens the browser for the browser flow, and waits for the outcome.
 * The flow itself (polling, the loopback listener, the code exchange) runs in the daemon,
 * so Ctrl-C stops only the waiting; `tokend login NAME --cancel` stops the login.
 */
import type { AccountView, LoginFlow, LoginView } from '../protocol/api.js';
import { ROUTES } from '../protocol/routes.js';
import { defaultLoginFlow } from '../protocol/rules.js';
import { parseOptions, requireName } from './args.js';
import { canOpenBrowser, openBrowser } from './browser.js';
import { EXIT, UsageError, type Command, type Io } from './io.js';
import { TokendError } from '../sdk/errors.js';
import type { TokendClient } from './socket-client.js';
import { durationOption, relative } from './when.js';

export const LOGIN_HELP = `usage: tokend login NAME [--flow device|browser] [--ttl T] [--no-browser] [--no-wait] [--json]
       tokend login NAME --cancel
       tokend login --callback URL [--json]

Signs in to account NAME at its provider and stores the new grant in the daemon. A
login that fails never deletes a grant that works.

  --flow F       device: enter a code on any device (RFC 8628); browser: sign in in a
                 browser on this machine, which returns to a one-shot listener on
                 127.0.0.1 (PKCE). Default: the account's flow, else browser when this
                 session has a display and is not over SSH, else device.
  --no-browser   never open a browser: print the URL (browser flow) or the page and
                 code (device flow) only
  --ttl T        how long the login waits: 90s, 30m, 12h, 2d (default: the account's
                 login_ttl_s, else 10 min; a device login at most its code's expiry)
  --no-wait      return once the login has started (the daemon finishes it)
  --json         print the login object on stdout (with --no-wait: at once, and
                 nothing else happens: no browser, no QR code)
  --cancel       stop NAME's login in progress, started from here or anywhere else
  --callback URL hand over a browser login's redirect URL (caught by an app, or
                 copied from a browser); the login is found by the URL's state

The device flow shows its page and code on stderr, with a QR code of the page when
stderr is a terminal (so \`tokend login NAME | cat\` still shows it), and offers to
open the page, code included, in a browser where one can open ($BROWSER is set, or
there is a display): press Enter while it waits on a terminal; without a terminal it
opens at once. The browser flow opens its URL at once.

A second \`tokend login NAME\` while one is in progress joins it (asking for the
other flow is refused). A login in progress survives a restart of the daemon. The browser is
$BROWSER (a command; %s stands for the URL), else open (macOS), wslview (WSL) or
xdg-open. Ctrl-C stops the waiting, not the login: it goes on in the daemon until it
ends or expires; \`tokend status NAME\` shows it and \`tokend login NAME --cancel\`
stops it.

Exit status: 0 signed in (with --no-wait: started; with --cancel: stopped, or no login
was in progress), 1 the login failed or expired, or could not start, 2 bad usage,
130 Ctrl-C while waiting.
`;

/** How often the CLI asks the daemon how the login is going. */
const WAIT_POLL_MS = 1000;
/** 128 + SIGINT: what a shell reports for a command ended by Ctrl-C. */
const EXIT_INTERRUPTED = 130;

const LOGIN_OPTIONS = {
  flow: { type: 'string' },
  'no-browser': { type: 'boolean' },
  'no-wait': { type: 'boolean' },
  json: { type: 'boolean' },
  cancel: { type: 'boolean' },
  callback: { type: 'string' },
  ttl: { type: 'string' },
} as const;

/** Run `tokend login`; returns the exit status. API errors propagate to cli.ts, which prints them. */
export const runLogin: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions('login', args, LOGIN_OPTIONS);
  if (values.help) {
    io.stdout(LOGIN_HELP);
    return EXIT.ok;
  }
  if (values.callback !== undefined) return completeByUrl(values, positionals, io, client());
  const name = requireName(positionals[0], 'login');
  if (values.cancel) {
    const others = (['flow', 'ttl', 'no-browser', 'no-wait', 'json'] as const).filter((k) => values[k] !== undefined);
    if (others.length) throw new UsageError(`--cancel takes no other options (got --${others[0]})`, 'login');
    return cancelLogin(name, io, client());
  }
  if (values.flow !== undefined && values.flow !== 'device' && values.flow !== 'browser') {
    throw new UsageError(`--flow is device or browser, not "${values.flow.slice(0, 40)}"`, 'login');
  }
  const ttlS = values.ttl === undefined ? undefined : durationOption(values.ttl, '--ttl', 'login');

  const c = client();
  // The daemon may run without a display (systemd): the default comes from this terminal's
  // environment, unless the account names its flow (the daemon applies that one).
  let flow: LoginFlow | undefined = values.flow as LoginFlow | undefined;
  if (!flow) {
    const account = await c.json<AccountView>('GET', ROUTES.account(name));
    // A login in progress is joined whatever its flow: guessing another would be refused.
    if (!account.flow && account.login?.status !== 'pending') flow = defaultLoginFlow(io.env, process.platform);
  }
  const askedAt = Date.now();
  let login = await c.json<LoginView>('POST', ROUTES.accountLogin(name), { ...(flow ? { flow } : {}), ...(ttlS ? { ttl_s: ttlS } : {}) });
  // Same machine, same clock: a login created before we asked is one we joined.
  const joined = Date.parse(login.created_at) < askedAt - 5;

  if (values['no-wait'] && values.json) {
    io.stdout(JSON.stringify(login, null, 2) + '\n');
    return EXIT.ok;
  }
  const ctrlC = watchCtrlC();
  let stopOffer: () => void = () => {};
  try {
    if (joined) io.stderr(`tokend: a login to "${name}" is already in progress; joining it.\n`);
    stopOffer = await instruct(login, io, { open: !values['no-browser'] && !joined, wait: !values['no-wait'] });
    if (!values['no-wait'] && !ctrlC.pressed()) {
      io.stderr(
        `Waiting for the sign-in to finish (the ${login.flow === 'device' ? 'code' : 'link'} expires ${relative(login.expires_at, Date.now())})…\n`,
      );
      while (login.status === 'pending' && !ctrlC.pressed()) {
        await ctrlC.sleep(WAIT_POLL_MS);
        if (!ctrlC.pressed()) login = await c.json<LoginView>('GET', ROUTES.login(login.id));
      }
    }
    if (login.status === 'pending') {
      if (!ctrlC.pressed()) {
        io.stderr(`${inBackground(login)}\n`);
        return EXIT.ok;
      }
      io.stderr(`\ntokend: stopped waiting. ${inBackground(login)}\n`);
      return EXIT_INTERRUPTED;
    }
  } finally {
    stopOffer();
    ctrlC.dispose();
  }
  if (values.json) io.stdout(JSON.stringify(login, null, 2) + '\n');
  if (login.status === 'active') {
    io.stderr(`Signed in to "${name}".\n`);
    return EXIT.ok;
  }
  io.stderr(`tokend: the login to "${name}" ${login.status === 'expired' ? 'expired' : 'failed'}: ${reason(login)}\n`);
  return EXIT.error;
};

/** What a pending login does when nobody waits for it, and how to see or stop it. */
function inBackground(login: LoginView): string {
  const name = login.account;
  return (
    `The login to "${name}" goes on in the background until it ends or expires (${relative(login.expires_at, Date.now())}): ` +
    `\`tokend status ${name}\` shows it, \`tokend login ${name} --cancel\` stops it.`
  );
}

function reason(login: Pick<LoginView, 'error'>): string {
  const e = login.error;
  if (!e) return 'no reason given';
  return e.message.includes(e.code) ? e.message : `${e.message} (${e.code})`;
}

/**
 * `tokend login --callback URL`: hand a browser login's redirect to the daemon, which finds
 * the login by its state and exchanges the code; exit 0 once signed in, 1 if it failed.
 */
async function completeByUrl(
  values: { callback?: string; json?: boolean } & Record<string, unknown>,
  positionals: string[],
  io: Io,
  c: TokendClient,
): Promise<number> {
  const others = (['flow', 'ttl', 'no-browser', 'no-wait', 'cancel'] as const).filter((k) => values[k] !== undefined);
  if (others.length || positionals.length) {
    throw new UsageError(`--callback takes only --json (got ${others.length ? `--${others[0]}` : positionals[0]})`, 'login');
  }
  const login = await c.json<LoginView>('POST', ROUTES.loginCallbackByState, { url: values.callback });
  if (values.json) io.stdout(JSON.stringify(login, null, 2) + '\n');
  if (login.status === 'active') {
    io.stderr(`Signed in to "${login.account}".\n`);
    return EXIT.ok;
  }
  io.stderr(
    `tokend: the login to "${login.account}" ${login.status === 'pending' ? 'is still being completed' : `failed: ${reason(login)}`}\n`,
  );
  return login.status === 'pending' ? EXIT.ok : EXIT.error;
}

/**
 * `tokend login NAME --cancel`: find the account's pending login and stop it. Nothing
 * pending is not an error (exit 0): afterwards no login runs, as asked.
 */
async function cancelLogin(name: string, io: Io, c: TokendClient): Promise<number> {
  const account = await c.json<AccountView>('GET', ROUTES.account(name));
  const pending = account.login?.status === 'pending' ? account.login : undefined;
  if (!pending) {
    io.stderr(`tokend: no login to "${name}" is in progress; nothing to cancel\n`);
    return EXIT.ok;
  }
  let ended: LoginView;
  try {
    ended = await c.json<LoginView>('POST', ROUTES.loginCancel(pending.id));
  } catch (err) {
    // 404: it ended (succeeded, failed, expired) between our two requests.
    if (err instanceof TokendError && err.status === 404) {
      io.stderr(`tokend: the login to "${name}" ended before it could be cancelled; see \`tokend status ${name}\`\n`);
      return EXIT.ok;
    }
    throw err;
  }
  if (ended.status === 'active') io.stderr(`tokend: the login to "${name}" had already succeeded; nothing was cancelled\n`);
  else if (ended.error?.code === 'cancelled') io.stderr(`tokend: cancelled the login to "${name}"\n`);
  else io.stderr(`tokend: the login to "${name}" had already ended: ${ended.status}, ${reason(ended)}\n`);
  return EXIT.ok;
}

/** Ctrl-C while a login runs in the daemon: note it instead of dying, so we can say what goes on. */
function watchCtrlC(): { pressed: () => boolean; sleep: (ms: number) => Promise<void>; dispose: () => void } {
  let pressed = false;
  let wake = () => {};
  const onSigint = () => {
    pressed = true;
    wake();
  };
  process.on('SIGINT', onSigint);
  return {
    pressed: () => pressed,
    sleep: (ms) =>
      new Promise((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      }),
    dispose: () => process.off('SIGINT', onSigint),
  };
}

/**
 * What the person has to do, on stderr. The browser flow opens the browser; the device
 * flow offers to open its verification page (the complete URI, code included, RFC 8628
 * §3.3.1) where a browser can open, as gh does: "Press Enter" while we wait on a terminal,
 * else at once. Returns what stops listening for Enter.
 */
async function instruct(login: LoginView, io: Io, opts: { open: boolean; wait: boolean }): Promise<() => void> {
  if (login.flow === 'device') {
    io.stderr(
      `To sign in to "${login.account}", open ${login.verification_uri}\nand enter the code:  ${login.user_code}\n` +
        (login.verification_uri_complete ? `(or open ${login.verification_uri_complete})\n` : ''),
    );
    // RFC 8628 §3.3.1: a QR code of the complete URI lets a phone skip typing the code. It
    // goes where the person reads, stderr: `tokend login x | cat` still shows it.
    if (login.qr && io.stderrIsTTY?.()) io.stderr(`\n${login.qr}\n`);
    const page = login.verification_uri_complete ?? login.verification_uri;
    if (!opts.open || !page || !canOpenBrowser(io.env, process.platform)) return () => {};
    const stop = opts.wait
      ? io.onEnter?.(() => {
          stop?.();
          void openPage(page, io);
        })
      : undefined;
    if (stop) {
      io.stderr(`Press Enter to open ${page} in your browser.\n`);
      return stop;
    }
    await openPage(page, io);
    return () => {};
  }
  const url = login.authorization_url ?? '';
  if (opts.open) {
    io.stderr(`Opening a browser to sign in to "${login.account}"…\n`);
    if (await openBrowser(url, io.env, process.platform)) {
      io.stderr(`If it did not open, visit this URL in a browser on this machine:\n  ${url}\n`);
      return () => {};
    }
    io.stderr('Could not open a browser.\n');
  }
  io.stderr(`To sign in to "${login.account}", open this URL in a browser on this machine:\n  ${url}\n`);
  return () => {};
}

/** Open the device flow's page; say so, or that it did not work. */
async function openPage(url: string, io: Io): Promise<void> {
  io.stderr(`Opening ${url} in your browser…\n`);
  if (!(await openBrowser(url, io.env, process.platform))) io.stderr('Could not open a browser; open the URL above yourself.\n');
}
