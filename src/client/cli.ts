import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { AccountList, AccountView, PutAccountRequest, RefreshResponse, TokenResponse } from '../protocol/api.js';
import { EXIT } from '../protocol/errors.js';
import { isAccountName } from '../protocol/names.js';
import { ROUTES } from '../protocol/routes.js';
import { ApiError, DaemonUnreachableError, TokendClient } from './socket-client.js';

/** Where a command writes: stdout carries only the data asked for (so `$(tokend token x)` works). */
export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  readStdin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
  /** Is stdout a terminal (QR codes, prompts)? */
  isTTY?: () => boolean;
}

class UsageError extends Error {}

const HELP = `tokend: keeps OAuth tokens fresh and hands them to local programs

usage: tokend <command> [options]

commands:
  daemon                     run the daemon in the foreground
  add NAME [options]         add or replace an account (see tokend add --help)
  login NAME [--flow device|browser] [--no-browser] [--no-wait] [--json]
                             sign in at the provider (device code or browser)
  import NAME --refresh-token-stdin
                             start an account from a known refresh token
  token NAME [--min-ttl S] [--scope S] [--audience A] [--json]
  token --url URL            print a valid access token (by name, or for a URL's account)
  exec NAME [--env VAR] -- COMMAND [ARG]...
                             run COMMAND with a token in $VAR (default TOKEN)
  git-credential get|store|erase
                             git's credential helper (also bin/git-credential-tokend)
  docker-credential get|store|erase|list
                             docker's credential helper (also bin/docker-credential-tokend)
  kubectl-credential [NAME]  a kubectl exec credential plugin (ExecCredential v1)
  bazel-credential get       a Bazel credential helper
  setup git [--global]       make git ask tokend first
  list [--json]              list accounts
  status [NAME] [--json]     daemon and account status
  refresh NAME               refresh an account's token now
  logout NAME                revoke and forget an account's grant, keep its config
  remove NAME                revoke, then delete the account
  service install|uninstall|status [--dry-run] [--json]
                             run tokend as a systemd / launchd user service
  doctor [--json]            check daemon, files, config, accounts, tool setup
                             and clocks; print the command that fixes each problem

exit status: 0 ok, 1 error, 2 bad usage, 3 the account needs a login.
environment: TOKEND_HOME, TOKEND_SOCKET, TOKEND_NO_AUTOSTART=1 (see README).
`;

const ADD_HELP = `usage: tokend add NAME [options]

  --issuer URL                 OpenID / OAuth issuer (discovery, RFC 8414 / OIDC)
  --client-id ID               OAuth client id (required)
  --client-secret-stdin        read the client secret from stdin (never from argv)
  --auth-method M              client_secret_basic | client_secret_post | none
  --scope S                    a scope (repeatable)
  --audience A                 resource / audience (RFC 8707)
  --flow F                     device | browser | client-credentials | password
  --host HOST                  a host pattern this account serves (repeatable)
  --username U                 username helpers present with the token
  --api-base URL               base URL for the proxy
  --token-endpoint URL         explicit endpoints, instead of or on top of discovery
  --device-endpoint URL
  --authorization-endpoint URL
  --revocation-endpoint URL
  --preset P                   provider defaults: github, gitlab, bitbucket, google,
                               microsoft, keycloak (explicit options win)
  --json                       print the account as JSON
`;

const COMMAND_HELP: Record<string, string> = {
  add: ADD_HELP,
  import: 'usage: tokend import NAME --refresh-token-stdin [--json]\n\nReads a refresh token from stdin, stores it encrypted, and refreshes once to check it.\n',
  token:
    'usage: tokend token NAME [--min-ttl SECONDS] [--scope S] [--audience A] [--json]\n       tokend token --url URL [...]\n\nPrints a valid access token on stdout (and nothing else).\n',
  login:
    'usage: tokend login NAME [--flow device|browser] [--no-browser] [--no-wait] [--json]\n\nSigns in at the provider: a device code (enter it on any device), or a browser with PKCE on a\n127.0.0.1 redirect. Waits until signed in (exit 0) or refused (exit 1). See docs/logins.md.\n',
  list: 'usage: tokend list [--json]\n',
  status: 'usage: tokend status [NAME] [--json]\n',
  refresh: 'usage: tokend refresh NAME [--json]\n\nRefreshes the account now, rotating its refresh token if the provider does.\n',
  logout: "usage: tokend logout NAME\n\nRevokes the account's grant at the provider (RFC 7009) and forgets it; the config stays.\n",
  remove: 'usage: tokend remove NAME\n\nRevokes the grant where possible and deletes the account, its secrets and its config.\n',
};

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, positionals = 1) {
  let out;
  try {
    out = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (!(out.values as { help?: boolean }).help && out.positionals.length > positionals) {
    throw new UsageError(`unexpected argument "${out.positionals[positionals]}"`);
  }
  return out;
}

function requireName(name: string | undefined, cmd: string): string {
  if (!name) throw new UsageError(`${cmd} needs an account NAME`);
  if (!isAccountName(name)) {
    throw new UsageError(`"${name.slice(0, 80)}" is not a valid account name (1-64 letters, digits, ".", "_" or "-")`);
  }
  return name;
}

function fmtTime(iso: string | null): string {
  if (!iso) return '-';
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  return s >= 0 ? `${iso} (in ${s}s)` : `${iso} (${-s}s ago)`;
}

function accountLines(a: AccountView): string {
  return [
    `account:   ${a.name}`,
    `status:    ${a.status}`,
    `expires:   ${fmtTime(a.expires_at)}`,
    `driver:    ${a.driver}${a.preset ? ` (preset ${a.preset})` : ''}`,
    a.issuer ? `issuer:    ${a.issuer}` : undefined,
    `client_id: ${a.client_id}${a.has_client_secret ? ' (with secret)' : ''}`,
    a.scopes.length ? `scopes:    ${a.scopes.join(' ')}` : undefined,
    a.hosts.length ? `hosts:     ${a.hosts.join(' ')}` : undefined,
    a.last_error ? `error:     ${a.last_error}` : undefined,
  ]
    .filter(Boolean)
    .join('\n');
}

type Handler = (args: string[], io: Io, client: () => TokendClient) => Promise<number>;

const commands: Record<string, Handler> = {
  async add(args, io, client) {
    const { values, positionals } = parse(args, {
      issuer: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret-stdin': { type: 'boolean' },
      'auth-method': { type: 'string' },
      scope: { type: 'string', multiple: true },
      audience: { type: 'string' },
      flow: { type: 'string' },
      host: { type: 'string', multiple: true },
      username: { type: 'string' },
      'api-base': { type: 'string' },
      'token-endpoint': { type: 'string' },
      'device-endpoint': { type: 'string' },
      'authorization-endpoint': { type: 'string' },
      'revocation-endpoint': { type: 'string' },
      preset: { type: 'string' },
      driver: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) return help(io, 'add');
    const name = requireName(positionals[0], 'add');
    if (!values['client-id']) throw new UsageError('add needs --client-id');
    const body: Record<string, unknown> = {
      driver: values.driver,
      preset: values.preset,
      issuer: values.issuer,
      client_id: values['client-id'],
      token_endpoint_auth_method: values['auth-method'],
      scopes: values.scope?.flatMap((s) => s.split(/\s+/).filter(Boolean)),
      audience: values.audience,
      flow: values.flow,
      hosts: values.host,
      username: values.username,
      api_base: values['api-base'],
      token_endpoint: values['token-endpoint'],
      device_authorization_endpoint: values['device-endpoint'],
      authorization_endpoint: values['authorization-endpoint'],
      revocation_endpoint: values['revocation-endpoint'],
    };
    if (values['client-secret-stdin']) {
      const secret = (await io.readStdin()).replace(/\r?\n$/, '');
      if (!secret) throw new UsageError('--client-secret-stdin: stdin was empty');
      body.client_secret = secret;
    }
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    const view = await client().json<AccountView>('PUT', ROUTES.account(name), body as PutAccountRequest);
    if (values.json) io.stdout(JSON.stringify(view, null, 2) + '\n');
    else io.stderr(`tokend: account "${name}" saved. Next: \`tokend login ${name}\` or \`tokend import ${name} --refresh-token-stdin\`\n`);
    return EXIT.ok;
  },

  async import(args, io, client) {
    const { values, positionals } = parse(args, { 'refresh-token-stdin': { type: 'boolean' }, json: { type: 'boolean' } });
    if (values.help) return help(io, 'import');
    const name = requireName(positionals[0], 'import');
    if (!values['refresh-token-stdin']) throw new UsageError('import needs --refresh-token-stdin (a token never goes in argv)');
    const token = (await io.readStdin()).trim();
    if (!token) throw new UsageError('--refresh-token-stdin: stdin was empty');
    if (/\s/.test(token)) throw new UsageError('--refresh-token-stdin: expected one token on stdin, got several words');
    const view = await client().json<AccountView>('POST', ROUTES.accountImport(name), { refresh_token: token });
    if (values.json) io.stdout(JSON.stringify(view, null, 2) + '\n');
    else io.stderr(`tokend: imported; "${name}" is ${view.status}, token expires ${fmtTime(view.expires_at)}\n`);
    return EXIT.ok;
  },

  async token(args, io, client) {
    const { values, positionals } = parse(args, {
      'min-ttl': { type: 'string' },
      scope: { type: 'string' },
      audience: { type: 'string' },
      url: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) return help(io, 'token');
    const body: Record<string, unknown> = {};
    if (values.url) body.url = values.url;
    else body.account = requireName(positionals[0], 'token');
    if (values['min-ttl'] !== undefined) {
      const n = Number(values['min-ttl']);
      if (!Number.isInteger(n) || n < 0) throw new UsageError('--min-ttl takes whole seconds');
      body.min_ttl = n;
    }
    if (values.scope) body.scope = values.scope;
    if (values.audience) body.audience = values.audience;
    const tok = await client().json<TokenResponse>('POST', ROUTES.token, body);
    io.stdout(values.json ? JSON.stringify(tok, null, 2) + '\n' : tok.access_token + '\n');
    return EXIT.ok;
  },

  async list(args, io, client) {
    const { values } = parse(args, { json: { type: 'boolean' } }, 0);
    if (values.help) return help(io, 'list');
    const { accounts } = await client().json<AccountList>('GET', ROUTES.accounts);
    if (values.json) {
      io.stdout(JSON.stringify({ accounts }, null, 2) + '\n');
      return EXIT.ok;
    }
    if (accounts.length === 0) {
      io.stderr('tokend: no accounts yet; add one with `tokend add NAME --issuer URL --client-id ID`\n');
      return EXIT.ok;
    }
    const rows = [['NAME', 'STATUS', 'EXPIRES', 'HOSTS'], ...accounts.map((a) => [a.name, a.status, a.expires_at ?? '-', a.hosts.join(',') || '-'])];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    io.stdout(rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n');
    return EXIT.ok;
  },

  async status(args, io, client) {
    const { values, positionals } = parse(args, { json: { type: 'boolean' } });
    if (values.help) return help(io, 'status');
    const c = client();
    if (positionals[0]) {
      const view = await c.json<AccountView>('GET', ROUTES.account(requireName(positionals[0], 'status')));
      io.stdout(values.json ? JSON.stringify(view, null, 2) + '\n' : accountLines(view) + '\n');
      return view.status === 'reauth_required' ? EXIT.reauth : EXIT.ok;
    }
    const health = await c.json<Record<string, unknown>>('GET', ROUTES.health);
    const { accounts } = await c.json<AccountList>('GET', ROUTES.accounts);
    if (values.json) {
      io.stdout(JSON.stringify({ daemon: { ...health, socket: c.paths.socket }, accounts }, null, 2) + '\n');
    } else {
      io.stdout(`daemon:    running, pid ${health.pid}, version ${health.version}, up ${health.uptime_s}s\nsocket:    ${c.paths.socket}\n`);
      for (const a of accounts) io.stdout('\n' + accountLines(a) + '\n');
    }
    return EXIT.ok;
  },

  async refresh(args, io, client) {
    const { values, positionals } = parse(args, { json: { type: 'boolean' } });
    if (values.help) return help(io, 'refresh');
    const name = requireName(positionals[0], 'refresh');
    const res = await client().json<RefreshResponse>('POST', ROUTES.accountRefresh(name));
    if (values.json) io.stdout(JSON.stringify(res, null, 2) + '\n');
    else io.stderr(`tokend: refreshed "${name}"; expires ${fmtTime(res.expires_at)}\n`);
    return EXIT.ok;
  },

  async logout(args, io, client) {
    const { values, positionals } = parse(args, {});
    if (values.help) return help(io, 'logout');
    const name = requireName(positionals[0], 'logout');
    const res = await client().json<{ revoked: boolean }>('POST', ROUTES.accountLogout(name));
    io.stderr(`tokend: logged out of "${name}"${res.revoked ? ' (revoked at the provider)' : ''}\n`);
    return EXIT.ok;
  },

  async remove(args, io, client) {
    const { values, positionals } = parse(args, {});
    if (values.help) return help(io, 'remove');
    const name = requireName(positionals[0], 'remove');
    const res = await client().json<{ revoked: boolean }>('DELETE', ROUTES.account(name));
    io.stderr(`tokend: removed "${name}"${res.revoked ? ' (grant revoked at the provider)' : ''}\n`);
    return EXIT.ok;
  },

  'git-credential': async (args) => (await import('./helper-commands.js')).gitCredential(args),
  'docker-credential': async (args) => (await import('./helper-commands.js')).dockerCredential(args),
  'kubectl-credential': async (args, io) => (await import('./helper-commands.js')).kubectlCredential(args, io),
  'bazel-credential': async (args) => (await import('./helper-commands.js')).bazelCredential(args),
  exec: async (args, io, client) => (await import('./helper-commands.js')).execWithToken(args, io, client),
  async setup(args, io) {
    const [what, ...rest] = args;
    if (what !== 'git') throw new UsageError('usage: tokend setup git [--global] [--dry-run]');
    return (await import('./helper-commands.js')).setupGit(rest, io);
  },

  async login(args, io, client) {
    const { runLogin } = await import('./login.js');
    return runLogin(args, io, client);
  },

  async service(args, io) {
    const { runService } = await import('./service.js');
    return runService(args, { stdout: io.stdout, stderr: io.stderr, env: io.env });
  },

  async doctor(args, io) {
    const { runDoctor } = await import('./doctor.js');
    return runDoctor(args, { stdout: io.stdout, stderr: io.stderr, env: io.env });
  },
};

function help(io: Io, cmd?: string): number {
  io.stdout(cmd && COMMAND_HELP[cmd] ? COMMAND_HELP[cmd] : HELP);
  return EXIT.ok;
}

/** Run one CLI command; returns the exit status (DESIGN.md, CLI). */
export async function run(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') return help(io, rest[0]);
  if (cmd === '--version' || cmd === '-V') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    io.stdout(pkg.version + '\n');
    return EXIT.ok;
  }
  const handler = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
  if (!handler) {
    io.stderr(`tokend: unknown command "${cmd.slice(0, 80)}"\n\n${HELP}`);
    return EXIT.usage;
  }
  let c: TokendClient | undefined;
  const client = () => (c ??= new TokendClient({ env: io.env, userAgent: `tokend-cli/${cmd}` }));
  try {
    return await handler(rest, io, client);
  } catch (err) {
    if (err instanceof UsageError || (err as Error)?.name === 'UsageError') {
      io.stderr(`tokend ${cmd}: ${(err as Error).message}\n(see tokend ${cmd} --help)\n`);
      return EXIT.usage;
    }
    if (err instanceof ApiError) {
      io.stderr(`tokend: ${err.message}\n`);
      // 3 means "a login is needed": refused grant, no grant, or a login still in progress.
      return err.code === 'reauth_required' || err.code === 'login_pending' ? EXIT.reauth : EXIT.error;
    }
    if (err instanceof DaemonUnreachableError) {
      io.stderr(`tokend: ${err.message}\n`);
      return EXIT.error;
    }
    io.stderr(`tokend: ${(err as Error)?.message ?? String(err)}\n`);
    return EXIT.error;
  }
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    if (process.stdin.isTTY) {
      process.stderr.write('(reading from stdin; end with Ctrl-D)\n');
    }
    const chunks: Buffer[] = [];
    let size = 0;
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 64 * 1024) {
        reject(new UsageError('stdin is larger than 64 KiB'));
        process.stdin.destroy();
        return;
      }
      chunks.push(c);
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

/** Entry point of bin/tokend for every command but `daemon`. */
export async function main(argv: string[]): Promise<void> {
  const code = await run(argv, {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    readStdin,
    env: process.env,
    isTTY: () => Boolean(process.stdout.isTTY),
  });
  process.exitCode = code;
}
