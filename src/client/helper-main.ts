import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HELPER_HELP, helperInfo, type HelperTool } from './helper-help.js';
import {
  CLI_TOKEN,
  decodeStderrHeader,
  HELPER_ACTION_RE,
  HELPER_ENV_HEADER,
  HELPER_STDERR_HEADER,
  HELPER_EXIT_HEADER,
  HELPER_TOOLS,
  helperExitStatus,
  type HelperEnv,
} from '../protocol/helper-http.js';
import { ROUTES } from '../protocol/routes.js';
import { errorFromAnswer, TokendError } from '../sdk/errors.js';
import { TokendClient } from './socket-client.js';

/**
 * The node side of every credential helper: a byte pipe to the daemon's
 * `POST /v1/helpers/:tool/:action`, used when the fast path (build/tokend-fast or curl)
 * cannot answer. It autostarts the daemon; when even that fails it says so in the
 * tool's own way (git: a hint on stderr and exit 0 so git moves on; docker: the error
 * on stdout, exit 1; kubectl and Bazel: stderr, exit 1).
 */
export interface HelperIo {
  stdin: () => Promise<Buffer>;
  stdout: (b: Buffer | string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
}

const TOOLS = new Set<string>([...HELPER_TOOLS, CLI_TOKEN.tool]);

/** Parse `[--socket=PATH | --socket PATH] ACTION` as git and docker pass them. */
export function parseHelperArgs(args: string[]): { socket?: string; action: string } {
  let socket: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a.startsWith('--socket=')) socket = a.slice('--socket='.length);
    else if (a === '--socket') socket = args[++i];
    else rest.push(a);
  }
  return { socket, action: rest.at(-1) ?? '' };
}

function unreachable(tool: string, message: string, io: HelperIo): number {
  if (tool === 'docker') {
    io.stdout(`${message}\n`);
    return 1;
  }
  io.stderr(`tokend: ${message}\n`);
  return tool === 'git' ? 0 : 1;
}

/**
 * No action, or not one a tool sends: a person at a terminal (no tool does it). One line
 * and exit 2, as every tokend command says a usage mistake; the word is not echoed (it
 * may be a secret typed in the wrong place).
 */
function usageMistake(tool: string, io: HelperIo): number {
  const name = `${tool}-credential-tokend`;
  const usage = Object.hasOwn(HELPER_HELP, tool) ? HELPER_HELP[tool as HelperTool].split('\n', 1)[0] : '';
  const actions = usage.split(' ').at(-1) || 'ACTION';
  io.stderr(`${name}: expects one action, ${actions} (see \`${name} --help\`)\n`);
  return 2;
}

/** Run one helper call; returns the exit status. */
export async function runHelper(tool: string, args: string[], io: HelperIo, forwardEnv?: HelperEnv): Promise<number> {
  if (!TOOLS.has(tool)) {
    io.stderr(`tokend: unknown helper "${tool.slice(0, 40)}"\n`);
    return 2;
  }
  // A person asking (--help, docker's --version); no tool ever does.
  const info = helperInfo(tool, args);
  if (info !== undefined) {
    io.stdout(info);
    return 0;
  }
  const { socket, action } = parseHelperArgs(args);
  if (!HELPER_ACTION_RE.test(action)) {
    // git: an action we do not know is silently ignored (gitcredentials: CUSTOM HELPERS).
    if (tool === 'git') return 0;
    return usageMistake(tool, io);
  }
  const stdin = await io.stdin();
  const client = new TokendClient({ env: io.env, socket, userAgent: `tokend-helper/${tool}` });
  let res: Awaited<ReturnType<TokendClient['raw']>>;
  try {
    const headers = forwardEnv ? { [HELPER_ENV_HEADER]: JSON.stringify(forwardEnv) } : undefined;
    res = await client.raw('POST', ROUTES.helper(tool, action), stdin, 'application/octet-stream', headers);
  } catch (err) {
    const msg = err instanceof TokendError ? err.message : `cannot reach tokend: ${(err as Error).message}`;
    return unreachable(tool, msg, io);
  }
  const exit = helperExitStatus(res.status, res.headers[HELPER_EXIT_HEADER]);
  if (exit === undefined) {
    return unreachable(tool, errorFromAnswer(res.status, res.body.toString('utf8')).message, io);
  }
  io.stdout(res.body);
  const line = res.headers[HELPER_STDERR_HEADER];
  if (typeof line === 'string' && line) io.stderr(`${decodeStderrHeader(line)}\n`);
  return exit;
}

function readStdin(max = 1024 * 1024 + 1): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (process.stdin.isTTY) return resolve(Buffer.alloc(0));
    const chunks: Buffer[] = [];
    let size = 0;
    process.stdin.on('data', (c: Buffer) => {
      // Past the limit the daemon answers 413 anyway: stop buffering, keep draining.
      if (size < max) chunks.push(c);
      size += c.length;
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks)));
    process.stdin.on('error', reject);
  });
}

export function processIo(): HelperIo {
  return {
    stdin: () => readStdin(),
    stdout: (b) => process.stdout.write(b),
    stderr: (s) => process.stderr.write(s),
    env: process.env,
  };
}

/** `node dist/client/helper-main.js TOOL [ARGS]` (the shims' fallback). */
async function main(): Promise<void> {
  const [tool = '', ...args] = process.argv.slice(2);
  process.exitCode = await runHelper(tool, args, processIo());
}

function isEntryPoint(): boolean {
  try {
    return Boolean(process.argv[1]) && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}
if (isEntryPoint()) void main();
