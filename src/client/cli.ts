/**
 * The `tokend` command line (every command but `daemon`, which bin/tokend sends to the
 * daemon's own entry point). Rare commands are imported when used, so the common path
 * starts fast.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ACCOUNT_COMMANDS } from './account-commands.js';
import { clip, parseOptions } from './args.js';
import { CommandError, EXIT, UsageError, asksJson, printJsonError, reportUsage, type Command, type Io } from './io.js';
import { processIo } from './process-io.js';
import { TokendError } from '../sdk/errors.js';
import { TokendClient } from './socket-client.js';
import { tokenCommand } from './token-command.js';
import { packageVersion } from './version.js';

const HELP = `tokend: keeps OAuth tokens fresh and hands them to local programs

usage: tokend COMMAND [options]      (tokend COMMAND --help: what it does, its options)

accounts:
  add NAME [options]          add an account, or replace one as a whole
  set NAME [options]          change some of an account's settings
  login NAME                  sign in at the provider (device code or browser)
  login NAME --cancel         stop a login in progress
  login --callback URL        hand over a browser login's redirect URL
  import NAME --refresh-token-stdin | --tokens-stdin
                              start an account from tokens you hold
  list                        accounts with status and expiry
  status [NAME]               the daemon, or one account (exit 3: it needs a login)
  refresh NAME                refresh an account's token now
  recover NAME                a new grant without a login (Cal.com force-refresh, AMP)
  logout NAME                 revoke and forget its grant, keep the account
  remove NAME                 revoke, then delete the account
  audit [NAME] [--since 1h]   who did what to which account, and how it ended
  approvals [allow|deny ID]   requests of "ask" accounts waiting for you; decide one
  access NAME [open|callers|ask] [--exe P]…
                              which programs may take its token

tokens:
  token NAME                  print a valid access token (token --url URL: by URL)
  exec NAME -- COMMAND...     run COMMAND with a token in $TOKEN, never in argv
  api NAME PATH               call the account's API through the daemon (it adds the token)

tools:
  git-credential ACTION       git's credential helper (also git-credential-tokend)
  docker-credential ACTION    docker's credential helper (also docker-credential-tokend)
  kubectl-credential [NAME]   a kubectl exec credential plugin (ExecCredential v1)
  bazel-credential get        a Bazel credential helper (also bazel-credential-tokend)
  setup git [--global]        make git ask tokend first
  setup cli [--undo]          link the tokend command to the C client built here

running:
  daemon                      run the daemon in the foreground
  listen-key [--rotate]       the key apps send to the loopback listener (daemon --listen)
  key [move --to keyring|file]
                              where the master key lives (key file or OS keyring); move it
  service install|uninstall|status
                              run tokend as a systemd / launchd user service
  doctor [--json]             check everything; print the command that fixes each problem
  completion bash|zsh|fish    a shell completion script (commands, options, account names)
  version                     print the version (also --version, -v)

exit status: 0 ok, 1 error, 2 bad usage, 3 the account needs a login.
environment: TOKEND_HOME, TOKEND_SOCKET, TOKEND_NO_AUTOSTART=1 (see README).
`;

const VERSION_HELP = `usage: tokend version [--json]

Prints this install's version on stdout (also: tokend --version, tokend -v).

  --json   print {"version"} on stdout

Exit status: 0, 2 bad usage.
`;

const SETUP_HELP = `usage: tokend setup git [--global] [--dry-run] [--json]
       tokend setup cli [--undo] [--dry-run] [--json]

Sets a tool up to use tokend: git (\`tokend setup git --help\`), or the \`tokend\`
command itself, linked to the C client built at install (\`tokend setup cli --help\`).
Exit status: 0 done, 1 error, 2 bad usage.
`;

/** A command loaded on first use: the common path (token, status) starts without it. */
const lazy =
  (load: () => Promise<Command>): Command =>
  async (args, io, client) =>
    (await load())(args, io, client);

const commands: Record<string, Command> = {
  ...ACCOUNT_COMMANDS,
  token: tokenCommand,
  async version(args, io) {
    const { values } = parseOptions('version', args, { json: { type: 'boolean' } }, 0);
    if (values.help) io.stdout(VERSION_HELP);
    else io.stdout(values.json ? `${JSON.stringify({ version: packageVersion() }, null, 2)}\n` : `${packageVersion()}\n`);
    return EXIT.ok;
  },
  'git-credential': lazy(async () => (await import('./helper-commands.js')).gitCredential),
  'docker-credential': lazy(async () => (await import('./helper-commands.js')).dockerCredential),
  'kubectl-credential': lazy(async () => (await import('./helper-commands.js')).kubectlCredential),
  'bazel-credential': lazy(async () => (await import('./helper-commands.js')).bazelCredential),
  exec: lazy(async () => (await import('./exec.js')).execWithToken),
  api: lazy(async () => (await import('./api-command.js')).apiCommand),
  'listen-key': lazy(async () => (await import('./listen-key.js')).listenKeyCommand),
  key: lazy(async () => (await import('./key-command.js')).keyCommand),
  audit: lazy(async () => (await import('./audit-command.js')).auditCommand),
  approvals: lazy(async () => (await import('./approvals-command.js')).approvalsCommand),
  access: lazy(async () => (await import('./access-command.js')).accessCommand),
  async setup(args, io, client) {
    const [what, ...rest] = args;
    if (what === 'git') return (await import('./setup-git.js')).setupGit(rest, io, client);
    if (what === 'cli') return (await import('./setup-cli.js')).setupCli(rest, io, client);
    if (what === '--help' || what === '-h') {
      io.stdout(SETUP_HELP);
      return EXIT.ok;
    }
    throw new UsageError(
      what === undefined ? 'say what to set up: git or cli' : `cannot set up "${clip(what, 40)}"; only git or cli`,
      'setup',
    );
  },
  login: lazy(async () => (await import('./login.js')).runLogin),
  service: lazy(async () => (await import('./service.js')).runService),
  completion: lazy(async () => (await import('./completion.js')).completionCommand),
  doctor: async (args, io) => (await import('./doctor.js')).runDoctor(args, { stdout: io.stdout, stderr: io.stderr, env: io.env }),
  // bin/tokend runs `tokend daemon` itself; this is for `tokend help daemon`, whose text lives with the daemon.
  daemon: (args) =>
    new Promise((resolve) => {
      const bin = fileURLToPath(new URL('../../bin/tokend', import.meta.url));
      const child = spawn(process.execPath, [bin, 'daemon', ...args], { stdio: 'inherit' });
      child.on('exit', (code) => resolve(code ?? EXIT.error));
      child.on('error', () => resolve(EXIT.error));
    }),
};

const VERSION_WORDS = new Set(['--version', '-v', '-V']);

/** Run one CLI command; returns the exit status (0 ok, 1 error, 2 bad usage, 3 needs a login). */
export async function run(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h') {
    io.stdout(HELP);
    return EXIT.ok;
  }
  if (cmd === 'help') return rest[0] === undefined ? run([], io) : run([rest[0], '--help'], io);
  if (VERSION_WORDS.has(cmd)) return run(['version'], io);
  const json = asksJson(rest);
  if (!Object.hasOwn(commands, cmd)) {
    return reportUsage(io, '', `${cmd.startsWith('-') ? 'unknown option' : 'unknown command'} "${clip(cmd, 40)}"`, json);
  }
  let c: TokendClient | undefined;
  const client = () => (c ??= new TokendClient({ env: io.env, userAgent: `tokend-cli/${cmd}` }));
  try {
    return await commands[cmd](rest, io, client);
  } catch (err) {
    return report(err, cmd, io, json);
  }
}

/**
 * Say what went wrong, on stderr, and with --json as `{"error":{"code","message"}}` on
 * stdout too; the exit status follows from what kind of failure it was.
 */
function report(err: unknown, cmd: string, io: Io, json: boolean): number {
  if (err instanceof UsageError) return reportUsage(io, err.command ?? cmd, err.message, json);
  // The daemon's answer, or none (daemon_unreachable, daemon_not_found): the SDK's one error.
  if (err instanceof TokendError) {
    io.stderr(`tokend: ${err.message}\n`);
    if (json) printJsonError(io, wireError(err));
    if (err.code === 'conflict' && !err.message.includes('--replace-grant')) {
      io.stderr('(to make this change anyway, and drop the grant with it, repeat the command with --replace-grant)\n');
    }
    // 3 means "a login is needed": refused grant, no grant, or a login still in progress.
    return err.code === 'reauth_required' || err.code === 'login_pending' ? EXIT.reauth : EXIT.error;
  }
  const [code, message] =
    err instanceof CommandError
      ? [err.code, err.command ? `${err.command}: ${err.message}` : err.message]
      : ['internal', (err as Error)?.message ?? String(err)];
  io.stderr(`tokend: ${message}\n`);
  if (json) printJsonError(io, { code, message });
  return EXIT.error;
}

/** The error as the daemon's wire body spells it (`account`, `retry_after`, `login` when it gave them). */
function wireError(err: TokendError): { code: string; message: string; [field: string]: unknown } {
  return { code: err.code, message: err.message, account: err.account, retry_after: err.retryAfter, login: err.login };
}

/** Entry point of bin/tokend for every command but `daemon`. */
export async function main(argv: string[]): Promise<void> {
  process.exitCode = await run(argv, processIo());
}
