/**
 * `tokend setup cli [--undo] [--dry-run] [--json]`: point the `tokend` command on PATH (npm's
 * link to bin/tokend) at build/tokend, the native client under the command's name, so
 * `tokend token NAME` starts one process instead of sh and then the native client; `--undo`
 * points it back. The native client hands everything else, and every fallback, to bin/tokend
 * (native/tokend-fast.c, cli_main). The link is made only when that binary runs here: a tree
 * copied to another architecture keeps (or gets back, with --undo) the sh script, which finds
 * its own way.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions } from './args.js';
import { CommandError, EXIT, type Command, type Io } from './io.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = path.join(ROOT, 'bin', 'tokend');
const NATIVE = path.join(ROOT, 'build', 'tokend');

export const SETUP_CLI_HELP = `usage: tokend setup cli [--undo] [--dry-run] [--json]

Points the \`tokend\` command on your PATH (the link npm made to bin/tokend) at
build/tokend, the C client the install built on this machine, run under the
command's name. \`tokend token NAME\` and \`tokend kubectl-credential NAME\` then start
one process instead of two (sh, then the C client); every other command, and a
daemon that does not answer, still goes through bin/tokend and node.

It links only a binary that runs here. After copying the install to another
architecture (or a home shared by two), run \`tokend setup cli --undo\` there (or
\`npm rebuild -g tokend\`, then setup cli again): a link to a binary that cannot run
has no fallback. \`npm uninstall -g tokend\` removes the link either way; an upgrade
(\`npm install -g\` again) puts npm's link to bin/tokend back: run setup cli again.

  --undo      point the command back at bin/tokend, the sh script
  --dry-run   print the ln command instead of running it
  --json      print what it did (or would do) as JSON on stdout:
              {"link", "target", "changed", "dry_run"}

Exit status: 0 done (or already so), 1 no \`tokend\` on PATH leads to this install, or
build/tokend is not built or does not run here.
`;

/** Does the native client run on this machine? It prints its usage and exits 2 with no arguments (scripts/build-native.mjs). */
function nativeRunsHere(): boolean {
  if (!fs.existsSync(NATIVE)) return false;
  const probe = spawnSync(path.join(ROOT, 'build', 'tokend-fast'), [], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
  return probe.status === 2 && String(probe.stderr).startsWith('usage: tokend-fast');
}

const real = (p: string) => {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
};

/** The first `tokend` on PATH: a symlink to this install's bin/tokend or build/tokend, or why there is none to change. */
function findCommand(env: NodeJS.ProcessEnv): { link: string } | { why: string } {
  const ours = new Set([real(SCRIPT), real(NATIVE)].filter((p) => p !== undefined));
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const link = path.join(dir, 'tokend');
    let st: fs.Stats;
    try {
      st = fs.lstatSync(link);
    } catch {
      continue;
    }
    const to = real(link);
    if (!st.isSymbolicLink() || to === undefined || !ours.has(to)) {
      return { why: `the first tokend on PATH, ${link}, is not a link to this install (${SCRIPT})` };
    }
    return { link };
  }
  return { why: `no tokend on PATH (npm links one at install; \`npm link\` does for a checkout)` };
}

/** The new link's text: npm's own (relative) with its last two parts swapped, else the absolute path. */
function linkText(link: string, target: string): string {
  const was = fs.readlinkSync(link);
  const [from, to] = target === NATIVE ? ['bin/tokend', 'build/tokend'] : ['build/tokend', 'bin/tokend'];
  if (was.endsWith(from) && real(path.resolve(path.dirname(link), `${was.slice(0, -from.length)}${to}`)) === real(target)) {
    return `${was.slice(0, -from.length)}${to}`;
  }
  return target;
}

export const setupCli: Command = async (args, io) => {
  const { values } = parseOptions(
    'setup cli',
    args,
    { undo: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } },
    0,
  );
  if (values.help) {
    io.stdout(SETUP_CLI_HELP);
    return EXIT.ok;
  }
  const found = findCommand(io.env);
  const target = values.undo ? SCRIPT : NATIVE;
  if ('why' in found) {
    throw new CommandError('not_found', `${found.why}; to link one yourself: ln -sf ${target} DIR/tokend`, 'setup cli');
  }
  if (!values.undo && !nativeRunsHere()) {
    throw new CommandError(
      'failed',
      `${NATIVE} is not built or does not run on this machine (no C compiler at install?); \`tokend\` stays the sh script. Rebuild it: node ${path.join(ROOT, 'scripts', 'build-native.mjs')}`,
      'setup cli',
    );
  }
  const { link } = found;
  const changed = real(link) !== real(target);
  const text = changed ? linkText(link, target) : fs.readlinkSync(link);
  if (changed && !values['dry-run']) replaceLink(link, text);
  report(io, { link, target: text, changed, dry_run: values['dry-run'] === true }, values.json === true);
  return EXIT.ok;
};

/** Swap the symlink in one step (a new link beside it, renamed over it): `tokend` never goes missing. */
function replaceLink(link: string, text: string): void {
  const tmp = `${link}.${process.pid}.tmp`;
  try {
    fs.symlinkSync(text, tmp);
    fs.renameSync(tmp, link);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new CommandError('failed', `cannot change ${link}: ${(err as Error).message}`, 'setup cli');
  }
}

function report(io: Io, r: { link: string; target: string; changed: boolean; dry_run: boolean }, json: boolean): void {
  if (json) io.stdout(`${JSON.stringify(r, null, 2)}\n`);
  else if (!r.changed) io.stdout(`${r.link} already runs ${r.target}\n`);
  else if (r.dry_run) io.stdout(`ln -sf ${r.target} ${r.link}\n`);
  else io.stdout(`${r.link} -> ${r.target}\n`);
}
