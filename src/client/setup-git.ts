/**
 * `tokend setup git [--global] [--dry-run]`: put git-credential-tokend first in git's
 * helper list and keep the others after it, so hosts tokend does not serve fall through
 * to them (a miss prints nothing; gitcredentials(7): helpers are asked in order). Idempotent.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions } from './args.js';
import { EXIT, UsageError, type Command, type Io } from './io.js';

const BIN_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin');

export const SETUP_GIT_HELP = `usage: tokend setup git [--global] [--dry-run]

Makes git ask tokend first for credentials (credential.helper), keeping the helpers
you already have after it, for the hosts no tokend account serves. Running it again
changes nothing.

Without --global it writes the repository's .git/config, and must run inside a
repository. git asks globally configured helpers before a repository's, so the
repository's list starts with an empty entry (git's "forget the helpers so far"),
then tokend, then the helpers that were in effect.

  --global    write your global git config instead (~/.gitconfig, or
              $XDG_CONFIG_HOME/git/config when only that exists): every repository
  --dry-run   print the git config commands instead of running them

Exit status: 0 done (or already so), 1 git failed, 2 bad usage (including: not in a
repository without --global).
`;

/** Is `helper` (a credential.helper value) tokend's? */
function ours(helper: string): boolean {
  return /(^|\/)git-credential-tokend$|^tokend$/.test(helper.trim());
}

/** The helpers git will ask, in order: an empty value drops those before it (gitcredentials(7)). */
function inEffect(values: string[]): string[] {
  return values.slice(values.lastIndexOf('') + 1);
}

export const setupGit: Command = async (args, io) => {
  const { values } = parseOptions('setup git', args, { global: { type: 'boolean' }, 'dry-run': { type: 'boolean' } }, 0);
  if (values.help) {
    io.stdout(SETUP_GIT_HELP);
    return EXIT.ok;
  }
  const scope = values.global ? '--global' : '--local';
  const where = values.global ? 'your global git config' : "this repository's .git/config";
  const git = (...a: string[]) => spawnSync('git', a, { encoding: 'utf8', env: io.env });

  if (!values.global) {
    const repo = git('rev-parse', '--git-dir');
    if (repo.error) return cannotRunGit(io, repo.error);
    if (repo.status !== 0) {
      throw new UsageError('not in a git repository: run it inside one, or add --global to set up every repository (~/.gitconfig)', 'setup git');
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
  if (own instanceof Error) return cannotRunGit(io, own);
  if (effective instanceof Error) return cannotRunGit(io, effective);

  const current = inEffect(effective);
  if (current.length > 0 && ours(current[0])) {
    io.stderr(`tokend: git already asks tokend first (${where})\n`);
    return EXIT.ok;
  }
  const helper = path.join(BIN_DIR, 'git-credential-tokend');
  const others = current.filter((h) => !ours(h));
  // A repository's list comes after the global one, so it starts with a reset; --global keeps its own reset, if it has one.
  const reset = !values.global || own.includes('') ? [''] : [];
  const wanted = [...reset, helper, ...others];
  const commands = [
    ...(own.length ? [[scope, '--unset-all', 'credential.helper']] : []),
    ...wanted.map((h) => [scope, '--add', 'credential.helper', h]),
  ];
  if (values['dry-run']) {
    io.stdout(commands.map((c) => `git config ${c.map((w) => (/^[\w./:=-]+$/.test(w) ? w : JSON.stringify(w))).join(' ')}`).join('\n') + '\n');
    return EXIT.ok;
  }
  for (const c of commands) {
    const r = git('config', ...c);
    // --unset-all exits 5 when there was nothing to unset.
    if (r.status !== 0 && !(c[1] === '--unset-all' && r.status === 5)) {
      io.stderr(`tokend setup git: ${r.stderr.trim() || `git config ${c.join(' ')} failed`}\n`);
      return EXIT.error;
    }
  }
  io.stderr(`tokend: git now asks ${helper} first (${where})${others.length ? `, then ${others.join(', ')}` : ''}\n`);
  return EXIT.ok;
};

function cannotRunGit(io: Io, err: Error): number {
  io.stderr(`tokend setup git: cannot run git: ${err.message}\n`);
  return EXIT.error;
}
