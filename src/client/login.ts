/**
 * `tokend login NAME`: asks the daemon to start (or join) an interactive login, tells the
 * person what to do, opens the browser for the browser flow, and waits for the outcome.
 * The flow itself (polling, the loopback listener, the code exchange) runs in the daemon.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { AccountView, LoginFlow, LoginView } from '../protocol/api.js';
import { EXIT } from '../protocol/errors.js';
import { isAccountName } from '../protocol/names.js';
import { ROUTES } from '../protocol/routes.js';
import { defaultLoginFlow } from '../protocol/rules.js';
import type { Io } from './cli.js';
import type { TokendClient } from './socket-client.js';

export const LOGIN_HELP = `usage: tokend login NAME [--flow device|browser] [--no-browser] [--no-wait] [--json]

Signs in to account NAME at its provider and stores the new grant in the daemon.

  --flow F       device: enter a code on any device (RFC 8628); browser: sign in in a
                 browser on this machine, which returns to a one-shot listener on
                 127.0.0.1 (PKCE). Default: the account's flow, else browser when this
                 session has a display and is not over SSH, else device.
  --no-browser   print the URL instead of opening a browser
  --no-wait      return once the login has started (the daemon finishes it)
  --json         print the login object on stdout (with --no-wait: at once)

A second \`tokend login NAME\` while one is in progress joins it. The browser is
$BROWSER (a command; %s stands for the URL), else xdg-open / open.
Exit status: 0 signed in (or started, with --no-wait), 1 the login failed or expired,
2 bad usage.
`;

/** How often the CLI asks the daemon how the login is going. */
const WAIT_POLL_MS = 1000;

/** Run `tokend login`; returns the exit status. API errors propagate to cli.ts, which prints them. */
export async function runLogin(args: string[], io: Io, client: () => TokendClient): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        flow: { type: 'string' },
        'no-browser': { type: 'boolean' },
        'no-wait': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    return usage(io, (err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(LOGIN_HELP);
    return EXIT.ok;
  }
  const name = positionals[0];
  if (!name) return usage(io, 'login needs an account NAME');
  if (positionals.length > 1) return usage(io, `unexpected argument "${positionals[1]!.slice(0, 80)}"`);
  if (!isAccountName(name)) return usage(io, `"${name.slice(0, 80)}" is not a valid account name (1-64 letters, digits, ".", "_" or "-")`);
  if (values.flow !== undefined && values.flow !== 'device' && values.flow !== 'browser') {
    return usage(io, `--flow is device or browser, not "${values.flow.slice(0, 40)}"`);
  }

  const c = client();
  // The daemon may run without a display (systemd): the default comes from this terminal's
  // environment, unless the account names its flow (the daemon applies that one).
  let flow: LoginFlow | undefined = values.flow as LoginFlow | undefined;
  if (!flow) {
    const account = await c.json<AccountView>('GET', ROUTES.account(name));
    if (!account.flow) flow = defaultLoginFlow(io.env, process.platform);
  }
  const askedAt = Date.now();
  let login = await c.json<LoginView>('POST', ROUTES.accountLogin(name), flow ? { flow } : {});
  // Same machine, same clock: a login created before we asked is one we joined.
  const joined = Date.parse(login.created_at) < askedAt - 5;

  if (values['no-wait'] && values.json) {
    io.stdout(JSON.stringify(login, null, 2) + '\n');
    return EXIT.ok;
  }
  if (joined) io.stderr(`tokend: a login to "${name}" is already in progress; joining it.\n`);
  await instruct(login, io, { open: !values['no-browser'] && !joined });
  if (values['no-wait']) {
    io.stderr(`tokend: the login continues in the daemon until ${login.expires_at}; check it with \`tokend status ${name}\`.\n`);
    return EXIT.ok;
  }

  io.stderr(`Waiting for the sign-in to finish (the ${login.flow === 'device' ? 'code' : 'link'} expires ${until(login.expires_at)})…\n`);
  while (login.status === 'pending') {
    await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
    login = await c.json<LoginView>('GET', ROUTES.login(login.id));
  }
  if (values.json) io.stdout(JSON.stringify(login, null, 2) + '\n');
  if (login.status === 'active') {
    io.stderr(`Signed in to "${name}".\n`);
    return EXIT.ok;
  }
  const why = login.error ? `${login.error.message}${login.error.message.includes(login.error.code) ? '' : ` (${login.error.code})`}` : 'no reason given';
  io.stderr(`tokend: the login to "${name}" ${login.status === 'expired' ? 'expired' : 'failed'}: ${why}\n`);
  return EXIT.error;
}

/** What the person has to do, on stderr; opens the browser for the browser flow. */
async function instruct(login: LoginView, io: Io, opts: { open: boolean }): Promise<void> {
  if (login.flow === 'device') {
    io.stderr(
      `To sign in to "${login.account}", open ${login.verification_uri}\nand enter the code:  ${login.user_code}\n` +
        (login.verification_uri_complete ? `(or open ${login.verification_uri_complete})\n` : ''),
    );
    // RFC 8628 §3.3.1: a QR code of the complete URI lets a phone skip typing the code.
    if (login.qr && io.isTTY?.()) io.stderr(`\n${login.qr}\n`);
    return;
  }
  const url = login.authorization_url ?? '';
  if (opts.open) {
    io.stderr(`Opening a browser to sign in to "${login.account}"…\n`);
    if (await openBrowser(url, io.env, process.platform)) {
      io.stderr(`If it did not open, visit this URL in a browser on this machine:\n  ${url}\n`);
      return;
    }
    io.stderr('Could not open a browser.\n');
  }
  io.stderr(`To sign in to "${login.account}", open this URL in a browser on this machine:\n  ${url}\n`);
}

function until(iso: string): string {
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (s >= 120) return `in ${Math.round(s / 60)} min`;
  return s > 0 ? `in ${s} s` : 'now';
}

function usage(io: Io, message: string): number {
  io.stderr(`tokend login: ${message}\n(see tokend login --help)\n`);
  return EXIT.usage;
}


/**
 * The commands that open `url`, in order: each entry of `$BROWSER` (separated like PATH, as
 * Python's webbrowser reads it; a command line where `%s` stands for the URL, else the URL
 * is the last argument, as gh does), then the platform's opener.
 */
export function browserCommands(url: string, env: Readonly<Record<string, string | undefined>>, platform: string): string[][] {
  const out: string[][] = [];
  for (const entry of (env.BROWSER ?? '').split(path.delimiter)) {
    const argv = splitCommand(entry);
    if (argv.length === 0) continue;
    const hasPlaceholder = argv.some((a) => a.includes('%s'));
    out.push(hasPlaceholder ? argv.map((a) => a.replace(/%(%|s)/g, (_, c: string) => (c === 's' ? url : '%'))) : [...argv, url]);
  }
  if (platform === 'darwin') out.push(['open', url]);
  else if (platform === 'win32') out.push(['rundll32', 'url.dll,FileProtocolHandler', url]);
  else out.push(['xdg-open', url]);
  return out;
}

/** Split a command line into words: blanks separate, '…' and "…" quote, \ escapes (outside '…'). No shell runs. */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = null;
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** Try each browser command; true once one started and did not fail at once. The URL never passes through a shell. */
export async function openBrowser(url: string, env: NodeJS.ProcessEnv, platform: string): Promise<boolean> {
  for (const argv of browserCommands(url, env, platform)) {
    if (await launch(argv, env)) return true;
  }
  return false;
}

/** Start `argv` detached; it counts as opened unless it cannot start or exits non-zero within a second. */
function launch(argv: string[], env: NodeJS.ProcessEnv): Promise<boolean> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: 'ignore', env });
    } catch {
      resolve(false);
      return;
    }
    const timer = setTimeout(() => {
      child.unref();
      resolve(true);
    }, 1000);
    child.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      child.unref();
      resolve(code === 0);
    });
  });
}
