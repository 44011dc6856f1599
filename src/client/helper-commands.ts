import { spawn, spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { TokenResponse } from '../protocol/api.js';
import { EXIT } from '../protocol/errors.js';
import { isAccountName } from '../protocol/names.js';
import { ROUTES } from '../protocol/routes.js';
import type { Io } from './cli.js';
import { processIo, runHelper } from './helper-main.js';
import type { TokendClient } from './socket-client.js';

const BIN_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin');

/** Bad usage (exit 2); cli.ts reports it like its own usage errors. */
class HelperUsage extends Error {
  override name = 'UsageError';
}

/** `tokend git-credential get|store|erase` (the same as bin/git-credential-tokend). */
export function gitCredential(args: string[]): Promise<number> {
  return runHelper('git', args, processIo());
}

/** `tokend docker-credential get|store|erase|list` (the same as bin/docker-credential-tokend). */
export function dockerCredential(args: string[]): Promise<number> {
  return runHelper('docker', args, processIo());
}

/**
 * `tokend kubectl-credential [NAME]`: a client-go exec plugin (PROTOCOLS.md §3). Its
 * input is the KUBERNETES_EXEC_INFO variable, not stdin; an account NAME skips host matching.
 */
export function kubectlCredential(args: string[], io: Io): Promise<number> {
  const name = args.find((a) => !a.startsWith('-'));
  if (name !== undefined && !isAccountName(name)) {
    io.stderr(`tokend kubectl-credential: "${name.slice(0, 80)}" is not a valid account name\n`);
    return Promise.resolve(EXIT.usage);
  }
  const env: Record<string, string> = {};
  if (io.env.KUBERNETES_EXEC_INFO) env.KUBERNETES_EXEC_INFO = io.env.KUBERNETES_EXEC_INFO;
  if (name) env.TOKEND_ACCOUNT = name;
  return runHelper('kubectl', ['get'], { ...processIo(), stdin: async () => Buffer.alloc(0) }, env);
}

/** `tokend bazel-credential [--account NAME] get`: the EngFlow credential-helper spec (PROTOCOLS.md §4). */
export function bazelCredential(args: string[]): Promise<number> {
  const env: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--account') env.TOKEND_ACCOUNT = args[++i] ?? '';
    else if (args[i].startsWith('--account=')) env.TOKEND_ACCOUNT = args[i].slice('--account='.length);
    else rest.push(args[i]);
  }
  return runHelper('bazel', rest.length ? rest : ['get'], processIo(), Object.keys(env).length ? env : undefined);
}

/**
 * `tokend exec NAME [--env VAR] -- COMMAND [ARG]...`: run COMMAND with a fresh token in
 * VAR (default TOKEN). The token travels in the environment only, never in argv where
 * `ps` shows it. COMMAND's exit status is ours (128+N when it dies of signal N).
 */
export async function execWithToken(args: string[], io: Io, client: () => TokendClient): Promise<number> {
  const dash = args.indexOf('--');
  const own = dash < 0 ? args : args.slice(0, dash);
  const command = dash < 0 ? [] : args.slice(dash + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own,
      options: { env: { type: 'string' }, 'min-ttl': { type: 'string' }, scope: { type: 'string' }, audience: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    });
  } catch (err) {
    throw new HelperUsage((err as Error).message);
  }
  if (parsed.values.help) {
    io.stdout('usage: tokend exec NAME [--env VAR] [--min-ttl S] [--scope S] [--audience A] -- COMMAND [ARG]...\n\nRuns COMMAND with a valid token in $VAR (default TOKEN).\n');
    return EXIT.ok;
  }
  const name = parsed.positionals[0];
  if (!name || !isAccountName(name)) throw new HelperUsage('exec needs an account NAME');
  if (command.length === 0) throw new HelperUsage('exec needs a command after --');
  const varName = parsed.values.env ?? 'TOKEN';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(varName)) throw new HelperUsage(`--env: "${varName.slice(0, 40)}" is not an environment variable name`);
  const body: Record<string, unknown> = { account: name };
  if (parsed.values['min-ttl'] !== undefined) body.min_ttl = Number(parsed.values['min-ttl']);
  if (parsed.values.scope) body.scope = parsed.values.scope;
  if (parsed.values.audience) body.audience = parsed.values.audience;
  const tok = await client().json<TokenResponse>('POST', ROUTES.token, body);
  return new Promise((resolve) => {
    const child = spawn(command[0], command.slice(1), { stdio: 'inherit', env: { ...io.env, [varName]: tok.access_token } });
    // Signals meant for the command reach it through the terminal's process group; don't die before it.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    process.on('SIGTERM', ignore);
    child.on('error', (err) => {
      io.stderr(`tokend exec: cannot run ${command[0]}: ${(err as NodeJS.ErrnoException).code ?? err.message}\n`);
      resolve(127);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', ignore);
      if (signal) {
        const n = (constants.signals as Record<string, number>)[signal] ?? 1;
        resolve(128 + n);
      } else resolve(code ?? 1);
    });
  });
}


/**
 * `tokend setup git [--global]`: put git-credential-tokend first in git's helper list
 * and keep the others after it, so hosts tokend does not serve fall through to them
 * (a miss prints nothing: PROTOCOLS.md §1.5). Idempotent.
 */
export function setupGit(args: string[], io: Io): number {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { global: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    throw new HelperUsage((err as Error).message);
  }
  if (parsed.values.help) {
    io.stdout('usage: tokend setup git [--global] [--dry-run]\n\nMakes git ask tokend first for credentials (credential.helper), keeping your other helpers after it.\n');
    return EXIT.ok;
  }
  const scope = parsed.values.global ? ['--global'] : [];
  const helper = path.join(BIN_DIR, 'git-credential-tokend');
  const git = (...a: string[]) => spawnSync('git', ['config', ...scope, ...a], { encoding: 'utf8', env: io.env });
  const current = git('--get-all', 'credential.helper');
  if (current.error) {
    io.stderr(`tokend setup git: cannot run git: ${current.error.message}\n`);
    return EXIT.error;
  }
  if (current.status !== 0 && current.status !== 1) {
    io.stderr(`tokend setup git: ${current.stderr.trim() || 'git config failed'}\n`);
    return EXIT.error;
  }
  const existing = current.stdout.split('\n').filter((l) => l !== '');
  const ours = (h: string) => h === helper || /(^|\/)git-credential-tokend$|^tokend$/.test(h.trim());
  if (existing.length > 0 && ours(existing[0])) {
    io.stderr(`tokend: git already asks tokend first (${scope.length ? 'global' : 'repository'} config)\n`);
    return EXIT.ok;
  }
  const wanted = [helper, ...existing.filter((h) => !ours(h))];
  if (parsed.values['dry-run']) {
    io.stdout(wanted.map((h) => `git config ${[...scope, '--add', 'credential.helper', JSON.stringify(h)].join(' ')}`).join('\n') + '\n');
    return EXIT.ok;
  }
  if (existing.length) git('--unset-all', 'credential.helper');
  for (const h of wanted) {
    const r = git('--add', 'credential.helper', h);
    if (r.status !== 0) {
      io.stderr(`tokend setup git: ${r.stderr.trim()}\n`);
      return EXIT.error;
    }
  }
  io.stderr(`tokend: git now asks ${helper} first${existing.length ? `, then ${existing.join(', ')}` : ''}\n`);
  return EXIT.ok;
}

export { HelperUsage };
