/** The commands that manage accounts: add, set, import, list, status, refresh, recover, logout, remove. */
import type { AccountList, AccountView, Health, RecoverResponse, RefreshResponse } from '../protocol/api.js';
import { importBody } from '../protocol/import-tokens.js';
import { ACCOUNT_LABEL_QUERY } from '../protocol/labels.js';
import { ROUTES } from '../protocol/routes.js';
import { needsLogin } from '../protocol/rules.js';
import { ACCOUNT_OPTIONS, ACCOUNT_OPTIONS_HELP, accountBody, writeQuery } from './account-options.js';
import { accountLines, needsLoginNote, nextStep, refreshFailingNote } from './account-view.js';
import { parseOptions, requireName } from './args.js';
import { EXIT, UsageError, formatTable, type Command, type Io } from './io.js';
import { stamp } from './when.js';

export const ACCOUNT_HELP: Record<string, string> = {
  add: `usage: tokend add NAME [--preset P] [--client-id ID] [options]

Adds account NAME. On an existing NAME it replaces the whole configuration (options
not given go back to their defaults); \`tokend set\` changes only the options given.
Unless --no-check, the daemon checks the account at the provider first (discovery,
required secrets).

${ACCOUNT_OPTIONS_HELP}
Exit status: 0 saved, 1 the daemon refused it (a change of provider or client without
--replace-grant, a provider that does not answer, an invalid setting), 2 bad usage.
`,
  set: `usage: tokend set NAME [options]

Changes only the options given of account NAME; a repeatable option (--scope, --host)
replaces the whole list, but --label adds or changes only the labels given, and
--unlabel KEY removes one. To fix only the client secret:
  printf %s "$SECRET" | tokend set NAME --client-secret-stdin

${ACCOUNT_OPTIONS_HELP}
Exit status: 0 saved, 1 the daemon refused it (a change of provider or client without
--replace-grant, a provider that does not answer, an invalid setting, no such
account), 2 bad usage.
`,
  import: `usage: tokend import NAME (--refresh-token-stdin | --tokens-stdin) [--json]

Starts account NAME from tokens you already hold: reads them from stdin (never
from argv) and proves they work before anything is replaced: one refresh, or,
for a still-valid access token, the provider's check of it where there is one.
Only proven tokens are stored (encrypted); tokens the provider refuses, or a
provider that does not answer, leave the account exactly as it was.

  --refresh-token-stdin   stdin is one refresh token
  --tokens-stdin          stdin is JSON with the tokens a platform handed over:
                          {"accessToken","refreshToken","accessTokenExpiresAt"} (Cal.com,
                          expiry in ms) or {"access_token","refresh_token","expires_at"};
                          either token may be missing, not both. Real-Debrid's comes with
                          the client it was issued to: {"client_id","client_secret",
                          "refresh_token"}, as an app keeps them after its device login.
                          A DPoP account's tokens come with their key: "dpop_jwk" (the
                          private EC P-256 JWK), without which a refresh token is refused
  --json                  print the account as JSON on stdout

Exit status: 0 imported, 1 error (the provider refused the tokens: nothing was
changed), 2 bad usage.
`,
  list: `usage: tokend list [--label KEY=VALUE]... [--json]

Lists the accounts: name, status, when the current token expires, and the hosts each
serves. An account whose status is expired, no_grant, reauth_required or
login_pending needs \`tokend login NAME\` (\`tokend status NAME\` says more).

  --label KEY=VALUE   only the accounts carrying this label (repeatable: each must match)
  --json              print {"accounts": [...]}, each as \`tokend status NAME --json\` shows it

Exit status: 0 ok, 1 the daemon could not be reached, 2 bad usage.
`,
  status: `usage: tokend status [NAME] [--json]

Without NAME: the daemon (pid, version, uptime, socket) and every account. With NAME:
that account: status, token expiry, provider, client, scopes, hosts, the last error,
the login in progress (its code and URL) and how the last login ended.

  --json   print it as JSON on stdout

Exit status: 0 ok, 1 error (the daemon unreachable, no such account, or account NAME
is refresh_failing: no valid token, and its last attempt to get one failed), 2 bad
usage, 3 account NAME cannot serve a token until someone logs in (status expired,
no_grant, reauth_required or login_pending).
`,
  refresh: `usage: tokend refresh NAME [--json]

Refreshes account NAME's token now (rotating its refresh token when the provider
does), instead of when the daemon's timer would.

  --json   print {account, expires_at, generation} on stdout

Exit status: 0 ok, 1 error (the provider unreachable or refusing the client), 2 bad
usage, 3 the provider refused the grant: the account needs a login.
`,
  recover: `usage: tokend recover NAME [--json]

Runs account NAME's recover step now: a new grant without the refresh token and
without a login (Cal.com's force-refresh, which also ends every token the platform
held for the managed user; AMP's obtain_token with the stored password; client
credentials; the password grant). It replaces the account's grant.

  --json   print {account, expires_at, generation} on stdout

Exit status: 0 ok, 1 error (the account has no recover step, the provider refused
or is unreachable), 2 bad usage.
`,
  logout: `usage: tokend logout NAME [--json]

Revokes account NAME's grant at the provider (RFC 7009, where it has a revocation
endpoint) and forgets it. The account's configuration and client secret stay, so
\`tokend login NAME\` signs in again.

  --json   print {"account", "revoked"} on stdout (revoked: the provider confirmed it)

Exit status: 0 ok, 1 error (no such account, the daemon unreachable), 2 bad usage.
`,
  remove: `usage: tokend remove NAME [--json]

Revokes account NAME's grant where possible, then deletes the account: its
configuration, its secrets and its tokens.

  --json   print {"account", "revoked"} on stdout (revoked: the provider confirmed it)

Exit status: 0 ok, 1 error (no such account, the daemon unreachable), 2 bad usage.
`,
};

function help(io: Io, command: string): number {
  io.stdout(ACCOUNT_HELP[command]);
  return EXIT.ok;
}

function printJson(io: Io, value: unknown): void {
  io.stdout(JSON.stringify(value, null, 2) + '\n');
}

/**
 * add (PUT: the whole account) and set (PATCH: only the options given), with the same
 * options; the query carries --replace-grant and --no-check.
 */
function writing(command: 'add' | 'set'): Command {
  return async (args, io, client) => {
    const { values, positionals } = parseOptions(command, args, ACCOUNT_OPTIONS);
    if (values.help) return help(io, command);
    const name = requireName(positionals[0], command);
    const body = await accountBody(values, io, command);
    if (command === 'set' && Object.keys(body).length === 0) throw new UsageError('name at least one setting to change', command);
    const method = command === 'add' ? 'PUT' : 'PATCH';
    const view = await client().json<AccountView>(method, ROUTES.account(name) + writeQuery(values), body);
    // What the change did besides saving (a grant revoked and dropped, a secret dropped).
    for (const notice of view.notices ?? []) io.stderr(`tokend: ${notice}\n`);
    if (values.json) printJson(io, view);
    else if (command === 'add') io.stderr(`tokend: account "${name}" saved. Next: ${nextStep(view)}\n`);
    else io.stderr(`tokend: account "${name}" updated.${needsLogin(view.status) ? ` Next: ${nextStep(view)}` : ''}\n`);
    return EXIT.ok;
  };
}

const add = writing('add');
const set = writing('set');

const importCommand: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions('import', args, {
    'refresh-token-stdin': { type: 'boolean' },
    'tokens-stdin': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (values.help) return help(io, 'import');
  const name = requireName(positionals[0], 'import');
  if (!values['refresh-token-stdin'] && !values['tokens-stdin']) {
    throw new UsageError('needs --refresh-token-stdin or --tokens-stdin (a token never goes in argv)', 'import');
  }
  const text = (await io.readStdin()).trim();
  if (!text) throw new UsageError('stdin was empty', 'import');
  let body: Record<string, unknown>;
  if (values['tokens-stdin']) {
    body = tokensFromJson(text);
  } else {
    if (/\s/.test(text)) throw new UsageError('--refresh-token-stdin: expected one token on stdin, got several words', 'import');
    body = { refresh_token: text };
  }
  const view = await client().json<AccountView>('POST', ROUTES.accountImport(name), body);
  if (values.json) printJson(io, view);
  else io.stderr(`tokend: imported; "${name}" is ${view.status}, token expires ${stamp(view.expires_at, Date.now())}\n`);
  return EXIT.ok;
};

/** `--tokens-stdin`: Cal.com's camelCase token object, or the OAuth names. */
function tokensFromJson(text: string): Record<string, unknown> {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new UsageError('--tokens-stdin: stdin is not JSON', 'import');
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new UsageError('--tokens-stdin: expected a JSON object', 'import');
  const body: Record<string, unknown> = importBody(o);
  if (!body.refresh_token && !body.access_token)
    throw new UsageError('--tokens-stdin: no refresh token and no access token in it', 'import');
  return body;
}

const list: Command = async (args, io, client) => {
  const { values } = parseOptions('list', args, { json: { type: 'boolean' }, label: { type: 'string', multiple: true } }, 0);
  if (values.help) return help(io, 'list');
  const query = new URLSearchParams((values.label ?? []).map((l) => [ACCOUNT_LABEL_QUERY, l]));
  const { accounts } = await client().json<AccountList>('GET', `${ROUTES.accounts}${query.size ? `?${query}` : ''}`);
  if (values.json) {
    printJson(io, { accounts });
    return EXIT.ok;
  }
  if (accounts.length === 0 && values.label) {
    io.stderr('tokend: no account carries every label given\n');
    return EXIT.ok;
  }
  if (accounts.length === 0) {
    io.stderr('tokend: no accounts yet; add one with `tokend add NAME --issuer URL --client-id ID`\n');
    return EXIT.ok;
  }
  const rows = [
    ['NAME', 'STATUS', 'EXPIRES', 'HOSTS'],
    ...accounts.map((a) => [a.name, a.status, a.expires_at ?? '-', a.hosts.join(',') || '-']),
  ];
  io.stdout(formatTable(rows));
  return EXIT.ok;
};

const status: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions('status', args, { json: { type: 'boolean' } });
  if (values.help) return help(io, 'status');
  const c = client();
  if (positionals[0] !== undefined) {
    const view = await c.json<AccountView>('GET', ROUTES.account(requireName(positionals[0], 'status')));
    if (values.json) printJson(io, view);
    else io.stdout(accountLines(view) + '\n');
    const failing = refreshFailingNote(view);
    const note = needsLoginNote(view) ?? failing;
    if (note && !values.json) io.stderr(note + '\n');
    // refresh_failing is an error, not a login to do: exit 3 stays for the statuses that need one.
    if (failing) return EXIT.error;
    return note ? EXIT.reauth : EXIT.ok;
  }
  const health = await c.json<Health>('GET', ROUTES.health);
  const { accounts } = await c.json<AccountList>('GET', ROUTES.accounts);
  if (values.json) {
    printJson(io, { daemon: { ...health, socket: c.paths.socket }, accounts });
    return EXIT.ok;
  }
  io.stdout(`daemon:     running, pid ${health.pid}, version ${health.version}, up ${health.uptime_s}s\nsocket:     ${c.paths.socket}\n`);
  for (const a of accounts) io.stdout('\n' + accountLines(a) + '\n');
  return EXIT.ok;
};

/** refresh and recover: one POST on the account, answered with the new token's expiry. */
function renewing(command: 'refresh' | 'recover', route: (name: string) => string, done: string): Command {
  return async (args, io, client) => {
    const { values, positionals } = parseOptions(command, args, { json: { type: 'boolean' } });
    if (values.help) return help(io, command);
    const name = requireName(positionals[0], command);
    const res = await client().json<RefreshResponse | RecoverResponse>('POST', route(name));
    if (values.json) printJson(io, res);
    else io.stderr(`tokend: ${done} "${name}"; expires ${stamp(res.expires_at, Date.now())}\n`);
    return EXIT.ok;
  };
}

const refresh = renewing('refresh', ROUTES.accountRefresh, 'refreshed');
const recover = renewing('recover', ROUTES.accountRecover, 'recovered');

/** logout and remove: revoke the grant, then forget it (logout) or the whole account (remove). */
function revoking(command: 'logout' | 'remove', method: string, route: (name: string) => string, done: string): Command {
  return async (args, io, client) => {
    const { values, positionals } = parseOptions(command, args, { json: { type: 'boolean' } });
    if (values.help) return help(io, command);
    const name = requireName(positionals[0], command);
    const res = await client().json<{ revoked: boolean }>(method, route(name));
    if (values.json) printJson(io, { account: name, revoked: res.revoked });
    io.stderr(`tokend: ${done} "${name}"${res.revoked ? ' (revoked at the provider)' : ''}\n`);
    return EXIT.ok;
  };
}

const logout = revoking('logout', 'POST', ROUTES.accountLogout, 'logged out of');
const remove = revoking('remove', 'DELETE', ROUTES.account, 'removed');

export const ACCOUNT_COMMANDS: Record<string, Command> = {
  add,
  set,
  import: importCommand,
  list,
  status,
  refresh,
  recover,
  logout,
  remove,
};
