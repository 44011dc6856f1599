import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DaemonUnreachableError, TokendClient } from './socket-client.js';

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

const TOOLS = new Set(['git', 'docker', 'kubectl', 'bazel', 'cli']);

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

/** Run one helper call; returns the exit status. */
export async function runHelper(tool: string, args: string[], io: HelperIo, extraEnvBody?: Record<string, string>): Promise<number> {
  if (!TOOLS.has(tool)) {
    io.stderr(`tokend: unknown helper "${tool.slice(0, 40)}"\n`);
    return 2;
  }
  const { socket, action } = parseHelperArgs(args);
  if (!/^[a-z-]{1,32}$/.test(action)) {
    // git: an action we do not know is silently ignored (gitcredentials: CUSTOM HELPERS).
    if (tool === 'git') return 0;
    io.stderr(`tokend: usage: ${tool}-credential-tokend ACTION\n`);
    return 1;
  }
  const stdin = await io.stdin();
  const client = new TokendClient({ env: io.env, socket, userAgent: `tokend-helper/${tool}` });
  const path = `/v1/helpers/${tool}/${action}`;
  let res;
  try {
    const headers = extraEnvBody ? { 'x-tokend-env': JSON.stringify(extraEnvBody) } : undefined;
    res = await client.raw('POST', path, stdin, 'application/octet-stream', headers);
  } catch (err) {
    const msg = err instanceof DaemonUnreachableError ? err.message : `cannot reach tokend: ${(err as Error).message}`;
    return unreachable(tool, msg, io);
  }
  if (res.status !== 200 && res.status !== 422) {
    let msg = `the daemon answered ${res.status}`;
    try {
      msg = (JSON.parse(res.body.toString('utf8')) as { error: { message: string } }).error.message;
    } catch {
      /* keep the status */
    }
    return unreachable(tool, msg, io);
  }
  io.stdout(res.body);
  const line = res.headers['x-tokend-stderr'];
  if (typeof line === 'string' && line) io.stderr(`${decodeURIComponent(line)}\n`);
  const exit = Number(res.headers['x-tokend-exit']);
  return Number.isInteger(exit) ? exit : res.status === 200 ? 0 : 1;
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
