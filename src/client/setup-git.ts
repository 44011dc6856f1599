/**
 * `tokend setup git [--global] [--dry-run] [--json]`: put git-credential-tokend first in
 * git's helper list and keep the others after it, so hosts tokend does not serve fall
 * through to them (a miss prints nothing; gitcredentials(7): helpers are asked in order);
 * and, for accounts whose hosts patterns have a path, make git send the path
 * (`credential.<url>.useHttpPath`), without which those patterns never match. Idempotent.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AccountList, AccountView } from '../protocol/api.js';
import { resolveExecutable } from './access-command.js';
import { parseHostPattern } from '../protocol/host-pattern.js';
import { gitConfigUrls } from '../protocol/helpers/git.js';
import { ROUTES } from '../protocol/routes.js';
import { parseOptions } from './args.js';
import { CommandError, EXIT, UsageError, type Command, type Io } from './io.js';
import type { TokendClient } from './socket-client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The helper git should run. By default the sh shim in bin/, which finds the fastest way
 * itself and falls back to node when the native client cannot run (a tree copied to another
 * architecture, a home shared by machines of two). With `--native`, build/git-credential-tokend
 * (the native client under the helper's name: one process per call instead of two) when it
 * was built here and runs; it hands anything it cannot answer to the shim, but if it cannot
 * execute at all, git gets no answer: the price of the speed.
 */
function gitHelperPath(native: boolean): string {
  const shim = path.join(ROOT, 'bin', 'git-credential-tokend');
  if (!native) return shim;
  const nativeHelper = path.join(ROOT, 'build', 'git-credential-tokend');
  // Built for this machine? It prints its usage and exits 2 as tokend-fast (scripts/build-native.mjs).
  const probe = spawnSync(path.join(ROOT, 'build', 'tokend-fast'), [], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
  return fs.existsSync(nativeHelper) && probe.status === 2 && String(probe.stderr).startsWith('usage: tokend-fast') ? nativeHelper : shim;
}

export const SETUP_GIT_HELP = `usage: tokend setup git [--global] [--native] [--dry-run] [--json]

Makes git ask tokend first for credentials (credential.helper), keeping the helpers
you already have after it, for the hosts no tokend account serves. For an account
whose --host pattern has a path (git.example.com/org), it also sets
credential.<url>.useHttpPath=true for that URL: git sends no path otherwise, and such
a pattern would never match. Running it again changes nothing.

An account whose access is not open (\`tokend access NAME\`) and that serves hosts gets
the rule \`--ancestor GIT\` (git as found in PATH, symlinks resolved), so git's helper
keeps getting its token; it says so.

Without --global it writes the repository's .git/config, and must run inside a
repository. git asks globally configured helpers before a repository's, so the
repository's list starts with an empty entry (git's "forget the helpers so far"),
then tokend, then the helpers that were in effect.

  --global    write your global git config instead (~/.gitconfig, or
              $XDG_CONFIG_HOME/git/config when only that exists): every repository
  --native    name build/git-credential-tokend, the C client built at install, instead
              of the sh helper in bin/: one process per call instead of two (about 1 ms
              here), but no fallback if that binary cannot run (run setup again after
              copying the install to another architecture); without a build, the sh one
  --dry-run   print the git config commands instead of running them
  --json      print what it did (or, with --dry-run, would do) as JSON on stdout:
              {"scope", "helpers", "use_http_path", "commands", "dry_run"}

git matches credential.<url> on the exact port: a pattern without a port covers the
scheme's default port only, and "*." one level of subdomain.

Exit status: 0 done (or already so), 1 git failed, 2 bad usage (including: not in a
repository without --global).
`;

/** Is `helper` (a credential.helper value) the native one `--native` names? */
function isNative(helper: string): boolean {
  return helper.trim().endsWith(path.join('build', 'git-credential-tokend'));
}

/** Is `helper` (a credential.helper value) tokend's? */
function ours(helper: string): boolean {
  return /(^|\/)git-credential-tokend$|^tokend$/.test(helper.trim());
}

/** The helpers git will ask, in order: an empty value drops those before it (gitcredentials(7)). */
function inEffect(values: string[]): string[] {
  return values.slice(values.lastIndexOf('') + 1);
}

/** A git command line as a person would type it. */
function shellLine(args: string[]): string {
  return `git ${args.map((w) => (/^[\w./:=@-]+$/.test(w) ? w : JSON.stringify(w))).join(' ')}`;
}

/**
 * The git config URLs that need `useHttpPath`: those of every account's hosts patterns
 * with a path, deduplicated, in account order; or why the accounts could not be read.
 */
async function pathScopedUrls(client: () => TokendClient): Promise<{ urls: string[] } | { error: string }> {
  let accounts: AccountList['accounts'];
  try {
    accounts = (await client().json<AccountList>('GET', ROUTES.accounts)).accounts;
  } catch (err) {
    return { error: (err as Error).message };
  }
  const urls: string[] = [];
  for (const a of accounts) {
    for (const raw of a.hosts) {
      const p = parseHostPattern(raw);
      if (!p?.pathPrefix || p.pathPrefix === '/') continue;
      for (const u of gitConfigUrls(p)) if (!urls.includes(u)) urls.push(u);
    }
  }
  return { urls };
}

export const setupGit: Command = async (args, io, client) => {
  const { values } = parseOptions(
    'setup git',
    args,
    { global: { type: 'boolean' }, native: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } },
    0,
  );
  if (values.help) {
    io.stdout(SETUP_GIT_HELP);
    return EXIT.ok;
  }
  const scope = values.global ? '--global' : '--local';
  const where = values.global ? 'your global git config' : "this repository's .git/config";
  const git = (...a: string[]) => spawnSync('git', a, { encoding: 'utf8', env: io.env });

  if (!values.global) {
    const repo = git('rev-parse', '--git-dir');
    if (repo.error) throw cannotRunGit(repo.error);
    if (repo.status !== 0) {
      throw new UsageError(
        'not in a git repository: run it inside one, or add --global to set up every repository (~/.gitconfig)',
        'setup git',
      );
    }
  }
  // -z: NUL after each value, so an empty value (a reset) survives.
  const read = (...a: string[]) => {
    const r = git('config', ...a, '-z', '--get-all', 'credential.helper');
    if (r.error) return r.error;
    // 1: the key is not set.
    if (r.status !== 0 && r.status !== 1) return new Error(r.stderr.trim() || 'git config failed');
    return r.stdout.split('\0').slice(0, -1);
  };
  const own = read(scope);
  // What git asks now: every scope, or (--global) that file alone.
  const effective = values.global ? own : read();
  if (own instanceof Error) throw cannotRunGit(own);
  if (effective instanceof Error) throw cannotRunGit(effective);

  // 1. The helper list: tokend first, the others after it.
  const current = inEffect(effective);
  const helper = gitHelperPath(values.native === true);
  if (values.native && !isNative(helper)) {
    io.stderr('tokend: build/git-credential-tokend is not built for this machine (no C compiler at install?); naming the sh helper\n');
  }
  // Done when tokend is first already, and of the kind asked for (the shim, or --native's).
  const helperDone = current.length > 0 && ours(current[0]) && isNative(current[0]) === isNative(helper);
  const others = current.filter((h) => !ours(h));
  // A repository's list comes after the global one, so it starts with a reset; --global keeps its own reset, if it has one.
  const reset = !values.global || own.includes('') ? [''] : [];
  const wanted = helperDone ? own : [...reset, helper, ...others];
  const commands: string[][] = helperDone
    ? []
    : [
        ...(own.length ? [['config', scope, '--unset-all', 'credential.helper']] : []),
        ...wanted.map((h) => ['config', scope, '--add', 'credential.helper', h]),
      ];

  // 2. useHttpPath for the URLs of path-scoped patterns (gitcredentials(7): git drops the
  // path of an http(s) URL before asking helpers unless useHttpPath is set).
  const scoped = await pathScopedUrls(client);
  const useHttpPath = 'urls' in scoped ? scoped.urls : null;
  const httpPathNew = (useHttpPath ?? []).filter(
    (url) => git('config', scope, '--type=bool', '--get', `credential.${url}.useHttpPath`).stdout.trim() !== 'true',
  );
  for (const url of httpPathNew) commands.push(['config', scope, `credential.${url}.useHttpPath`, 'true']);

  if (values['dry-run']) {
    if (values.json)
      printJson(io, {
        scope: scope.slice(2),
        helpers: wanted,
        use_http_path: useHttpPath,
        commands: commands.map(shellLine),
        dry_run: true,
      });
    else if (commands.length) io.stdout(commands.map(shellLine).join('\n') + '\n');
    if ('error' in scoped) accountsNote(io, scoped.error);
    if (!values.json) await allowGit(client, io, true);
    return EXIT.ok;
  }
  for (const c of commands) {
    const r = git(...c);
    // --unset-all exits 5 when there was nothing to unset.
    if (r.status !== 0 && !(c[2] === '--unset-all' && r.status === 5)) {
      throw new CommandError('failed', r.stderr.trim() || `${shellLine(c)} failed`, 'setup git');
    }
  }
  if (values.json)
    printJson(io, {
      scope: scope.slice(2),
      helpers: wanted,
      use_http_path: useHttpPath,
      commands: commands.map(shellLine),
      dry_run: false,
    });
  if (helperDone) io.stderr(`tokend: git already asks tokend first (${where})\n`);
  else io.stderr(`tokend: git now asks ${helper} first (${where})${others.length ? `, then ${others.join(', ')}` : ''}\n`);
  if (httpPathNew.length) io.stderr(`tokend: git now sends the repository path to helpers for ${httpPathNew.join(', ')} (useHttpPath)\n`);
  if ('error' in scoped) accountsNote(io, scoped.error);
  await allowGit(client, io, false);
  return EXIT.ok;
};

/**
 * Accounts whose access is not open and that serve hosts: add the rule that lets git's helper
 * through (`{ancestor: GIT}`: the helper runs under git), and say so. An account that has it
 * already is left alone. Returns the accounts changed (or, with `dryRun`, to change).
 */
async function allowGit(client: () => TokendClient, io: Io, dryRun: boolean): Promise<string[]> {
  let accounts: AccountView[];
  try {
    accounts = (await client().json<AccountList>('GET', ROUTES.accounts)).accounts;
  } catch {
    return []; // already said by accountsNote
  }
  const closed = accounts.filter((a) => a.access && a.access.mode !== 'open' && a.hosts.length > 0);
  if (closed.length === 0) return [];
  const git = resolveExecutable('git', io.env, 'git', 'setup git');
  const changed: string[] = [];
  for (const a of closed) {
    const access = a.access!;
    if (access.callers.some((r) => 'ancestor' in r && r.ancestor === git)) continue;
    changed.push(a.name);
    if (dryRun) {
      io.stdout(`tokend access ${a.name} ${access.mode} --add --ancestor ${git}\n`);
      continue;
    }
    await client().json('PATCH', ROUTES.account(a.name), { access: { ...access, callers: [...access.callers, { ancestor: git }] } });
    io.stderr(`tokend: account "${a.name}" (access ${access.mode}) now also serves git's helper: added --ancestor ${git}\n`);
  }
  return changed;
}

function printJson(io: Io, value: unknown): void {
  io.stdout(JSON.stringify(value, null, 2) + '\n');
}

/** The accounts could not be read: the helper list is set, but path-scoped patterns are unchecked. */
function accountsNote(io: Io, error: string): void {
  io.stderr(
    `tokend: could not read the accounts (${error}), so hosts patterns with a path were not checked: ` +
      'run `tokend setup git` again once the daemon runs, or set `git config credential.<url>.useHttpPath true` for them\n',
  );
}

function cannotRunGit(err: Error): CommandError {
  return new CommandError('failed', `cannot run git: ${err.message}`, 'setup git');
}
