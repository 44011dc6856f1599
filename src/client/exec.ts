/**
 * `tokend exec NAME [--env VAR] -- COMMAND [ARG]...`: run COMMAND with a fresh token in
 * VAR (default TOKEN). The token travels in the environment only, never in argv where
 * `ps` shows it. COMMAND's exit status is ours (128+N when it dies of signal N).
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { TokenResponse } from '../protocol/api.js';
import { ROUTES } from '../protocol/routes.js';
import { parseOptions, requireName } from './args.js';
import { EXIT, UsageError, type Command } from './io.js';
import { clampNote, TOKEN_REQUEST_OPTIONS, tokenRequest } from './token-command.js';

export const EXEC_HELP = `usage: tokend exec NAME [--env VAR] [--min-ttl S] [--scope S] [--audience A] -- COMMAND [ARG]...

Runs COMMAND with a valid access token of account NAME in the environment variable
VAR. The token never appears in argv, where \`ps\` would show it to everyone.

  --env VAR      the variable that holds the token (default TOKEN)
  --min-ttl S    the token must stay valid for S more seconds (clamped to half the
                 token's lifetime, as with \`tokend token\`)
  --scope S      a token with a narrower scope
  --audience A   a token for another resource (RFC 8707)

Exit status: COMMAND's own (128+N when signal N ends it; 127 when it cannot start);
before COMMAND runs: 1 error, 2 bad usage, 3 the account needs a login.
`;

export const execWithToken: Command = async (args, io, client) => {
  const dash = args.indexOf('--');
  const own = dash < 0 ? args : args.slice(0, dash);
  const command = dash < 0 ? [] : args.slice(dash + 1);
  const { values, positionals } = parseOptions('exec', own, { ...TOKEN_REQUEST_OPTIONS, env: { type: 'string' } });
  if (values.help) {
    io.stdout(EXEC_HELP);
    return EXIT.ok;
  }
  const name = requireName(positionals[0], 'exec');
  if (command.length === 0) throw new UsageError('needs a command after --', 'exec');
  const varName = values.env ?? 'TOKEN';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(varName))
    throw new UsageError(`--env: "${varName.slice(0, 40)}" is not an environment variable name`, 'exec');
  const body = tokenRequest({ account: name }, values, 'exec');
  const tok = await client().json<TokenResponse>('POST', ROUTES.token, body);
  const note = clampNote(tok, body.min_ttl);
  if (note) io.stderr(note);
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
};
